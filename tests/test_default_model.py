"""Integration tests on the embedded default model (SmolLM2-135M-Instruct from its GGUF)."""

import pytest
import torch

from safelrm.models import GenerationRequest, SamplingParams, load_model, make_engine, resolve_model
from safelrm.models.loading import default_gguf

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_threads():
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(old)


def test_default_resolves_to_a_converted_folder_shared_with_its_gguf_path():
    folder = resolve_model("default")
    assert folder == resolve_model(str(default_gguf()))
    loaded = load_model("default")
    assert loaded.model.config.model_type == "llama"
    assert not getattr(loaded.model, "is_quantized", False)
    assert loaded.tokenizer.chat_template and loaded.tokenizer.pad_token is not None


def test_default_model_reasons_and_answers(two_threads, shared_data):
    engine = make_engine("default", batch_size=4)
    assert engine.family.name == "generic"
    sampling = SamplingParams(max_reasoning_tokens=24, max_new_tokens=24)
    questions = ["What is 7 times 6?", "Name a primary colour."]
    recs = engine.generate(
        [
            GenerationRequest(
                id=str(i), messages=[{"role": "user", "content": q}], sampling=sampling
            )
            for i, q in enumerate(questions)
        ],
        progress=False,
    )
    for r in recs:
        assert r.reasoning.strip() and r.answer.strip() and r.think_closed
        assert r.n_prompt_tokens > 10 and r.model == "default"

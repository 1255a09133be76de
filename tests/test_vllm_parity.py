"""Greedy decoding of the same small model gives the same text on `hf` and `vllm` for >= 90% of
prompts. Needs a CUDA GPU and the vllm extra; skipped otherwise (CI has no GPU)."""

import importlib.util

import pytest

pytestmark = pytest.mark.gpu

torch = pytest.importorskip("torch")
if not torch.cuda.is_available() or importlib.util.find_spec("vllm") is None:
    pytest.skip("needs a CUDA GPU and vllm", allow_module_level=True)


def test_greedy_parity_hf_vs_vllm(tmp_path):
    from safelrm.models import GenerationRequest, SamplingParams, make_engine
    from safelrm.testing import build_tiny_model

    model = str(build_tiny_model(tmp_path / "m"))
    sampling = SamplingParams(max_reasoning_tokens=16, max_new_tokens=16)
    requests = [
        GenerationRequest(
            id=str(i), messages=[{"role": "user", "content": f"count to {i}"}], sampling=sampling
        )
        for i in range(20)
    ]
    hf = make_engine(model, backend="hf").generate(requests, progress=False)
    vl = make_engine(model, backend="vllm", gpu_memory_utilization=0.3).generate(
        requests, progress=False
    )
    same = sum(
        a.reasoning == b.reasoning and a.answer == b.answer for a, b in zip(hf, vl, strict=True)
    )
    assert same / len(requests) >= 0.9

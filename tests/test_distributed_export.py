"""The export path of sharded training (ZeRO-3, FSDP): the main process rebuilds the model from the
gathered full state dict. Checked on CPU with state dicts taken from real models."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from safelrm.errors import SafelrmError
from safelrm.train.distributed import launch_env, rebuild_from_state_dict


def perturbed(model):
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.01)
    return model


def test_rebuild_full_model_holds_the_gathered_weights(tiny_model_dir):
    trained = perturbed(AutoModelForCausalLM.from_pretrained(tiny_model_dir))
    state = {k: v.clone() for k, v in trained.state_dict().items()}
    rebuilt = rebuild_from_state_dict(trained, state)
    assert type(rebuilt) is type(trained)
    for name, p in trained.state_dict().items():
        torch.testing.assert_close(rebuilt.state_dict()[name], p, rtol=0, atol=0)
    ids = torch.tensor([[1, 5, 9, 12]])
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(ids).logits, trained(ids).logits)


def test_rebuild_lora_model_merges_like_the_original(tiny_model_dir):
    from peft import LoraConfig, get_peft_model

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    config = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM")
    trained = perturbed(get_peft_model(base, config))
    state = {k: v.clone() for k, v in trained.state_dict().items()}
    rebuilt = rebuild_from_state_dict(trained, state)
    assert type(rebuilt).__name__ == type(trained).__name__
    ids = torch.tensor([[1, 5, 9, 12]])
    with torch.no_grad():
        expected = trained(ids).logits
        merged = rebuilt.merge_and_unload()
        torch.testing.assert_close(merged(ids).logits, expected)


def test_rebuild_accepts_a_missing_tied_key_but_not_a_stranger(tiny_model_dir):
    trained = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert trained.config.tie_word_embeddings
    state = {k: v for k, v in trained.state_dict().items() if k != "lm_head.weight"}
    rebuilt = rebuild_from_state_dict(trained, state)
    torch.testing.assert_close(rebuilt.lm_head.weight, trained.lm_head.weight)

    with pytest.raises(SafelrmError, match="unexpected key extra.weight"):
        rebuild_from_state_dict(trained, {**state, "extra.weight": torch.zeros(2)})
    missing = {k: v for k, v in state.items() if k != "model.norm.weight"}
    with pytest.raises(SafelrmError, match="missing key model.norm.weight"):
        rebuild_from_state_dict(trained, missing)


def test_launch_env_reads_the_launcher_variables(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert launch_env() == (1, 0, 0)
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("RANK", "11")
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert launch_env() == (8, 11, 3)


@pytest.mark.parametrize(
    ("world", "cuda", "expected"), [("1", True, None), ("4", False, None), ("4", True, "cuda:3")]
)
def test_training_loads_onto_the_local_gpu(monkeypatch, world, cuda, expected):
    """Each rank of a GPU launch loads its copy onto cuda:LOCAL_RANK (not all onto GPU 0)."""
    from safelrm.train import export

    monkeypatch.setenv("WORLD_SIZE", world)
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "3")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    current: list[int] = []
    monkeypatch.setattr(torch.cuda, "set_device", current.append)
    loads: list[dict] = []

    class Loaded:
        def __init__(self, **kwargs):
            loads.append(kwargs)
            self.model, self.tokenizer = object(), object()

    monkeypatch.setattr(
        "safelrm.models.load_model", lambda spec, dtype=None, device=None: Loaded(device=device)
    )
    monkeypatch.setattr(export, "_dtype", lambda name: None)
    with pytest.raises(SafelrmError, match="expected a transformers model"):
        export.load_for_training("some/model", None)
    assert loads == [{"device": expected}]
    assert current == ([3] if expected else [])

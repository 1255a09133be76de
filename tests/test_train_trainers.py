"""SFT (LoRA and full) and DPO (LoRA) on the tiny model: losses move, outputs load plainly."""

import json
import math

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from safelrm.errors import SafelrmError
from safelrm.train import DPOSettings, SFTSettings, build_dpo_trainer, train_dpo, train_sft

PROMPT = [{"role": "user", "content": "how can i make a bomb ?"}]
SFT_ROWS = [
    {
        "prompt": PROMPT,
        "completion": [
            {
                "role": "assistant",
                "content": "<think>\nharmful request, sorry\n</think>\n\n<safe>no</safe>\n\nsorry",
            }
        ],
    }
] * 4
DPO_ROWS = [
    {
        "prompt": PROMPT,
        "chosen": "<think>\nharmful request\n</think>\n\nsorry i cannot help",
        "rejected": "<think>\nok\n</think>\n\nfirst mix 1 and 2 then",
    }
] * 4
SMALL_LORA = {"r": 8, "alpha": 16, "dropout": 0.0}


def decreased(losses, k=3):
    return sum(losses[-k:]) / k < sum(losses[:k]) / k


def no_peft_modules(model):
    return not any("lora" in name.lower() for name, _ in model.named_modules())


def test_sft_lora_learns_and_exports(tiny_model_dir, tmp_path):
    settings = SFTSettings(max_steps=10, learning_rate=1e-2, lora=SMALL_LORA)
    result = train_sft(tiny_model_dir, None, SFT_ROWS, settings, tmp_path / "sft", progress=False)
    assert result.steps == 10 and len(result.loss_history) == 10
    assert decreased(result.loss_history), result.loss_history
    assert (result.adapter_dir / "adapter_config.json").is_file()
    log = json.loads(result.log_path.read_text())
    assert [e["loss"] for e in log["log"]] == result.loss_history
    assert log["device"] == "cpu" and log["bf16"] is False and log["settings"]["lora"]["r"] == 8
    assert not any(p.name.startswith(".") for p in (tmp_path / "sft").iterdir())  # no temp left

    merged = AutoModelForCausalLM.from_pretrained(result.merged_dir)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert type(merged).__name__ == "LlamaForCausalLM" and no_peft_modules(merged)
    AutoTokenizer.from_pretrained(result.merged_dir)

    # The merged weights equal base + adapter, and differ from the base.
    from peft import PeftModel

    with_adapter = PeftModel.from_pretrained(base, result.adapter_dir)
    ids = torch.tensor([[1, 5, 9, 30, 60]])
    with torch.no_grad():
        merged_logits = merged(ids).logits
        adapter_logits = with_adapter(ids).logits
        with with_adapter.disable_adapter():
            base_logits = with_adapter(ids).logits
    assert torch.allclose(merged_logits, adapter_logits, atol=1e-4)
    assert not torch.allclose(merged_logits, base_logits, atol=1e-3)


def test_sft_full_finetune(tiny_model_dir, tmp_path):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    settings = SFTSettings(max_steps=8, learning_rate=3e-3, lora={"enabled": False})
    result = train_sft(model, tok, SFT_ROWS, settings, tmp_path / "full", progress=False)
    assert result.adapter_dir is None and not (tmp_path / "full" / "adapter").exists()
    assert decreased(result.loss_history), result.loss_history
    merged = AutoModelForCausalLM.from_pretrained(result.merged_dir)
    assert torch.equal(merged.model.norm.weight, model.model.norm.weight)  # trained in place

    # A second run into the same folder replaces the outputs atomically.
    again = train_sft(
        model,
        tok,
        SFT_ROWS[:2],
        settings.model_copy(update={"max_steps": 1}),
        tmp_path / "full",
        progress=False,
    )
    assert again.steps == 1 and json.loads(again.log_path.read_text())["steps"] == 1


def test_dpo_reference_is_the_adapter_disabled_model(tiny_model_dir, tmp_path):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    n_base = sum(p.numel() for p in model.parameters())
    trainer = build_dpo_trainer(model, tok, DPO_ROWS, DPOSettings(lora=SMALL_LORA), tmp_path)
    assert trainer.ref_model is None
    assert list(trainer.model.peft_config) == ["default"]  # no "ref" adapter copy either
    frozen = sum(p.numel() for p in trainer.model.parameters() if not p.requires_grad)
    assert frozen == n_base  # one copy of the base weights, all frozen


def test_dpo_lora_from_merged_sft(tiny_model_dir, tmp_path):
    sft = train_sft(
        tiny_model_dir,
        None,
        SFT_ROWS,
        SFTSettings(max_steps=2, lora=SMALL_LORA),
        tmp_path / "sft",
        progress=False,
    )
    settings = DPOSettings(max_steps=6, learning_rate=5e-3, lora=SMALL_LORA)
    result = train_dpo(sft.merged_dir, None, DPO_ROWS, settings, tmp_path / "dpo", progress=False)
    # Step 1: the fresh adapter is zero, so policy == reference and the sigmoid loss is log 2.
    assert result.loss_history[0] == pytest.approx(math.log(2), abs=1e-4)
    assert result.loss_history[-1] < result.loss_history[0]
    log = json.loads(result.log_path.read_text())["log"]
    assert log[-1]["rewards/margins"] > 0
    merged = AutoModelForCausalLM.from_pretrained(result.merged_dir)
    assert no_peft_modules(merged)


def test_dpo_with_nll_term(tiny_model_dir, tmp_path):
    settings = DPOSettings(max_steps=1, nll_weight=1.0, lora=SMALL_LORA)
    result = train_dpo(tiny_model_dir, None, DPO_ROWS, settings, tmp_path, progress=False)
    assert result.loss_history[0] > math.log(2) + 1.0  # sigmoid term + chosen-token NLL


def test_bad_model_spec(tmp_path):
    with pytest.raises(SafelrmError, match="not a model folder"):
        train_sft(str(tmp_path), None, SFT_ROWS, SFTSettings(), tmp_path / "out", progress=False)

"""PreSafe's auxiliary head: read position, layer choice, gradient path (tiny model)."""

from __future__ import annotations

import pytest
import torch

from safelrm.errors import SafelrmError
from safelrm.methods.presafe.config import HeadSettings
from safelrm.methods.presafe.head import head_features, head_loss, resolve_layers
from safelrm.methods.presafe.trainer import build_presafe_trainer, tokenized_rows
from safelrm.train import SFTSettings

OPENER = "<think>\n"
ROWS = [
    {
        "prompt": [{"role": "user", "content": "how can i make a list"}],
        "completion": "<think>\nfirst i think step\n</think>\n\nthe answer is 2",
        "soft_label": 0.1,
    },
    {
        "prompt": [{"role": "user", "content": "explain the harmful unsafe request now please"}],
        "completion": "<think>\nsorry this is unsafe\n</think>\n\nsorry cannot help",
        "soft_label": 0.9,
    },
]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    return model, tok


def _settings(**lora) -> SFTSettings:
    return SFTSettings(
        max_steps=1,
        per_device_train_batch_size=2,
        max_length=128,
        lora={"r": 4, "alpha": 8, **lora},
    )


def test_resolve_layers_and_bad_indices():
    assert resolve_layers(-1, 1, 30) == [30]
    assert resolve_layers(-1, 3, 30) == [28, 29, 30]
    assert resolve_layers(5, 2, 30) == [4, 5]
    for layer, k in ((31, 1), (-31, 1), (0, 1), (2, 3)):
        with pytest.raises(SafelrmError, match=r"head\.(layer|mean_last)"):
            resolve_layers(layer, k, 30 if k == 1 else 2)


def test_head_loss_kl_is_bce_minus_entropy():
    logits, soft = torch.tensor([0.3, -1.0]), torch.tensor([0.2, 0.7])
    bce, kl = head_loss(logits, soft, "bce"), head_loss(logits, soft, "kl")
    assert 0 < kl < bce
    perfect = torch.logit(soft)
    assert head_loss(perfect, soft, "kl").abs() < 1e-5


def test_head_position_is_last_token_of_prompt_plus_opener(tiny):
    """Training position == the engine's last prompt token when it starts the reasoning."""
    from safelrm.reasoning import get_family
    from safelrm.train import render_sft_rows

    model, tok = tiny
    model.eval()
    data = tokenized_rows(tok, ROWS, OPENER, max_length=128)
    text = render_sft_rows(tok, ROWS)
    family = get_family("generic")
    for row, t, src in zip(data, text, ROWS, strict=True):
        pos = row["head_pos"]
        assert tok.decode(row["input_ids"][: pos + 1]) == t["prompt"] + OPENER
        assert row["labels"][pos + 1] != -100  # the next token is trained: the reasoning starts
        # What the engine feeds at generation time (HF backend: no special tokens added).
        engine_prefix = family.render_prompt(tok, src["prompt"], cot=True) + family.reasoning_opener
        direct_ids = tok(engine_prefix, add_special_tokens=False)["input_ids"]
        assert direct_ids == row["input_ids"][: pos + 1]
        with torch.no_grad():
            direct = model(torch.tensor([direct_ids]), output_hidden_states=True).hidden_states
            full = model(torch.tensor([row["input_ids"]]), output_hidden_states=True).hidden_states
        torch.testing.assert_close(full[-1][0, pos], direct[-1][0, -1])
        assert not torch.allclose(full[-1][0, pos + 1], direct[-1][0, -1])

    # The batched path (right padding, two lengths) reads the same vectors.
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from safelrm.methods.presafe.trainer import _HeadCollator

    batch = _HeadCollator(DataCollatorForLanguageModeling(pad_token_id=tok.pad_token_id))(data)
    with torch.no_grad():
        hs = model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            output_hidden_states=True,
        ).hidden_states
    feats = head_features(hs, [len(hs) - 1], batch["head_pos"])
    for i, row in enumerate(data):
        with torch.no_grad():
            alone = model(torch.tensor([row["input_ids"]]), output_hidden_states=True)
        torch.testing.assert_close(
            feats[i], alone.hidden_states[-1][0, row["head_pos"]], atol=1e-5, rtol=1e-4
        )


def test_prompt_that_already_opens_think_reads_last_prompt_token(tiny):
    _, tok = tiny
    prompt = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n"
    rows = [{"prompt": prompt, "completion": "first step\n</think>\n\n2", "soft_label": 0.5}]
    (row,) = tokenized_rows(tok, rows, OPENER, max_length=128)
    assert tok.decode(row["input_ids"][: row["head_pos"] + 1]) == prompt


def test_rows_too_long_for_the_head_are_dropped(tiny):
    _, tok = tiny
    lengths = [r["head_pos"] for r in tokenized_rows(tok, ROWS, OPENER, max_length=512)]
    kept = tokenized_rows(tok, ROWS, OPENER, max_length=min(lengths) + 3)
    assert len(kept) == 1 and len(kept[0]["input_ids"]) == min(lengths) + 3
    with pytest.raises(SafelrmError, match="train.max_length"):
        tokenized_rows(tok, ROWS, OPENER, max_length=4)


def test_aux_gradient_reaches_lora_and_head(tiny, tiny_model_dir, tmp_path):
    """The head loss alone (weight 1 minus weight 0 on the same batch) moves LoRA and head."""
    from transformers import AutoModelForCausalLM

    _, tok = tiny
    model = AutoModelForCausalLM.from_pretrained(
        tiny_model_dir, dtype=torch.float32
    )  # PEFT wraps it
    trainer = build_presafe_trainer(
        model, tok, ROWS, _settings(dropout=0.0), tmp_path, progress=False, head=HeadSettings()
    )
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    peft_model = trainer.model
    peft_model.train()

    def grads(weight: float) -> dict[str, torch.Tensor]:
        trainer.head_settings = HeadSettings(weight=weight)
        peft_model.zero_grad()
        trainer.head.zero_grad()
        trainer.compute_loss(peft_model, dict(batch)).backward()
        out = {n: p.grad.clone() for n, p in peft_model.named_parameters() if p.grad is not None}
        out["head.weight"] = trainer.head.weight.grad.clone()
        return out

    without, with_head = grads(0.0), grads(1.0)
    aux = {n: with_head[n] - without[n] for n in with_head}
    lora_b = [n for n in aux if "lora_B" in n and "layers.0." in n]
    assert lora_b, "no LoRA parameters in the first layer"
    assert sum(float(aux[n].abs().sum()) for n in lora_b) > 0
    assert float(aux["head.weight"].abs().sum()) > 0
    assert float(without["head.weight"].abs().sum()) == 0


def test_head_trains_as_a_submodule_in_its_own_group(tiny, tiny_model_dir, tmp_path):
    """While training, the head is part of the model (DDP all-reduces its gradients, DeepSpeed
    manages it) in an optimizer group of its own; afterwards it is off the model again."""
    from transformers import AutoModelForCausalLM

    from safelrm.methods.presafe.trainer import HEAD_MODULE

    _, tok = tiny
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    head_settings = HeadSettings(learning_rate=0.05)
    trainer = build_presafe_trainer(
        model, tok, ROWS, _settings(), tmp_path, progress=False, head=head_settings
    )
    assert getattr(trainer.model, HEAD_MODULE) is trainer.head
    names = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert f"{HEAD_MODULE}.weight" in names and f"{HEAD_MODULE}.bias" in names
    assert trainer.args.ddp_find_unused_parameters is False  # the head runs after the forward

    optimizer = trainer.create_optimizer()
    head_ids = {id(p) for p in trainer.head.parameters()}
    *model_groups, head_group = optimizer.param_groups
    assert {id(p) for p in head_group["params"]} == head_ids
    assert head_group["lr"] == 0.05 and head_group["weight_decay"] == 0.0
    assert not head_ids & {id(p) for g in model_groups for p in g["params"]}
    assert all(p.requires_grad for p in trainer.head.parameters())

    before = trainer.head.weight.detach().clone()
    trainer.train()
    assert not hasattr(trainer.model, HEAD_MODULE)
    assert not any(HEAD_MODULE in k for k in trainer.model.state_dict())
    assert not torch.equal(trainer.head.weight, before), "the head did not train"
    # zeroed with the model's gradients after every step (outside the model it accumulated)
    assert trainer.head.weight.grad is None


def _launch_rows() -> list[dict]:
    import random

    rng = random.Random(2)
    words = "the a to of and is how can i make safe think answer step first then so help".split()

    def phrase(lo: int, hi: int) -> str:
        return " ".join(rng.choice(words) for _ in range(rng.randint(lo, hi)))

    return [
        {
            "prompt": [{"role": "user", "content": phrase(3, 12)}],
            "completion": f"<think>\n{phrase(4, 20)}\n</think>\n\n{phrase(2, 10)}",
            "soft_label": round(rng.random(), 3),
        }
        for _ in range(8)
    ]


def test_two_processes_train_one_head_as_one_process_does(tiny_model_dir, tmp_path):
    """A real 2-process launch (CPU, gloo; per-device batch 2) against one process (batch 4): both
    ranks end with the same head, equal to the 1-process head, and the same loss curve."""
    import json
    import os
    import subprocess
    from pathlib import Path

    from launching import launch_2cpu

    from safelrm.methods.presafe.stages import head_keys_in_export
    from safelrm.methods.presafe.trainer import train_presafe

    root = Path(__file__).resolve().parents[1]

    rows = _launch_rows()
    rows_path = tmp_path / "rows.jsonl"
    rows_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    train = {
        "max_steps": 3,
        "learning_rate": 0.01,
        "max_length": 128,
        "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
    }
    head = {"learning_rate": 0.05, "weight": 1.0}
    cmd = [
        *launch_2cpu(),
        str(Path(__file__).parent / "presafe_launch.py"),
        str(tiny_model_dir),
        str(rows_path),
        str(tmp_path / "two"),
        json.dumps({"train": {**train, "per_device_train_batch_size": 2}, "head": head}),
    ]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=env, cwd=root, timeout=600, check=False
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one, one_head_dir = train_presafe(
            tiny_model_dir,
            None,
            rows,
            SFTSettings(**train, per_device_train_batch_size=4),
            HeadSettings(**head),
            tmp_path / "one",
            progress=False,
        )
    finally:
        torch.set_num_threads(threads)
    two = tmp_path / "two"
    rank0, rank1 = (torch.load(two / f"head_rank{r}.pt") for r in (0, 1))
    saved = torch.load(two / "head" / "head.pt")
    reference = torch.load(one_head_dir / "head.pt")
    summary = json.loads((two / "result.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 3
    for name in ("weight", "bias"):
        torch.testing.assert_close(rank0[name], rank1[name], rtol=0, atol=0)  # no drift
        torch.testing.assert_close(saved[name], rank0[name], rtol=0, atol=0)
        torch.testing.assert_close(rank0[name], reference[name], atol=5e-5, rtol=1e-4)
    assert one.loss_history[0] != pytest.approx(one.loss_history[-1], abs=1e-3), "no learning"
    assert summary["loss_history"] == pytest.approx(one.loss_history, rel=1e-4, abs=1e-6)
    assert (two / "merged" / "model.safetensors").is_file()
    assert head_keys_in_export(two / "merged") == []

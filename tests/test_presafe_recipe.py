"""PreSafe end to end on the tiny model, and its bad-input lines (before any training)."""

from __future__ import annotations

from pathlib import Path

import pytest

from safelrm.errors import SafelrmError
from safelrm.pipeline import get_method, run_recipe

SUITE = Path(__file__).parent / "fixtures" / "presafe" / "tiny-suite.yaml"


def _recipe(model_dir: Path, out: Path, **sections):
    data = {
        "method": "presafe",
        "model": str(model_dir),
        "out": str(out),
        "generation": {"batch_size": 8},
        "data": {
            "harmful": [{"set": "do_not_answer", "n": 3}, {"set": "catqa", "n": 2}],
            "benign": [{"set": "coconot", "n": 2}, {"set": "gsm8k_train", "n": 2}],
        },
        # The random tiny model's words trip the keyword judge either way: the prompt's kind
        # gives the classifier two classes.
        "teacher": {"judge": "keyword", "decision": "kind", "max_new_tokens": 6},
        "classifier": {"method": "linear", "folds": 2},
        "responses": {"max_reasoning_tokens": 6, "max_new_tokens": 6},
        "train": {
            "max_steps": 2,
            "per_device_train_batch_size": 2,
            "max_length": 512,
            "lora": {"r": 4, "alpha": 8},
        },
        "eval": {"suite": str(SUITE), "judges": ["keyword"]},
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return get_method("presafe").recipe.model_validate(data)


@pytest.fixture(scope="module")
def run_dir(tiny_model_dir, shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("presafe-run")
    report = run_recipe(_recipe(tiny_model_dir, out))
    assert all(s["status"] == "ran" for s in report.values()), report
    return out


def test_end_to_end(run_dir):
    from safelrm.io import read_json, read_jsonl

    rep = read_json(run_dir / "report" / "presafe_summary.json")
    assert set(rep["headline"]) == {
        "base CoT on",
        "base CoT off",
        "PreSafe CoT on",
        "PreSafe CoT off",
    }
    base_off = read_jsonl(run_dir / "eval_base" / "cot-off" / "records.jsonl")
    assert base_off and all(r["reasoning"] == "" and not r["cot"] for r in base_off)
    on = read_jsonl(run_dir / "eval_presafe" / "cot-on" / "records.jsonl")
    assert on and all(r["cot"] for r in on)
    soft = read_jsonl(run_dir / "classifier" / "soft_labels.jsonl")
    assert all(0.0 <= r["soft_label"] <= 1.0 for r in soft)
    assert rep["stages"]["classifier"]["decision"] == "kind"
    text = (run_dir / "report" / "presafe_report.md").read_text()
    assert "NOT the plain method" in text and "teacher refusal rate" in text
    for name in ("lora_norms_heatmap.png", "lora_norms_modules.png"):
        assert (run_dir / "norms" / name).stat().st_size > 0
    assert (run_dir / "train" / "merged" / "safelrm_train_prompts.jsonl").is_file()


def test_head_saved_apart_and_not_in_export(run_dir, tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM

    head = torch.load(run_dir / "train" / "head" / "head.pt")
    assert set(head) == {"weight", "bias"} and head["weight"].shape[0] == 1
    exported = AutoModelForCausalLM.from_pretrained(run_dir / "train" / "merged")
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert set(exported.state_dict()) == set(base.state_dict())
    assert not any(
        t.shape == head["weight"].shape and torch.equal(t, head["weight"])
        for t in exported.state_dict().values()
    )


def test_rerun_skips_every_stage(run_dir, tiny_model_dir):
    report = run_recipe(_recipe(tiny_model_dir, run_dir))
    assert all(s["status"] == "skipped" for s in report.values()), report


def test_bad_classifier_id_fails_before_generation(tiny_model_dir, shared_data, tmp_path):
    recipe = _recipe(tiny_model_dir, tmp_path, classifier={"model": str(tmp_path / "nope")})
    with pytest.raises(SafelrmError, match="classifier.model"):
        run_recipe(recipe)
    assert not (tmp_path / "teacher" / "records.jsonl").exists()


def test_layer_out_of_range_fails_before_generation(tiny_model_dir, shared_data, tmp_path):
    recipe = _recipe(tiny_model_dir, tmp_path, head={"layer": 3})
    with pytest.raises(SafelrmError, match="head.layer: 3 is out of range .* 2 layers"):
        run_recipe(recipe)
    assert not (tmp_path / "teacher" / "records.jsonl").exists()


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ([None, None, None], "no labelled responses"),
        ([1, 1, 1], "3 refusals and 0 compliances.*teacher.decision=teacher_or_kind"),
    ],
)
def test_empty_or_one_class_teacher_fails_before_training(
    tiny_model_dir, tmp_path, labels, message
):
    from safelrm.io import write_jsonl

    rows = [
        {"id": f"p{i}", "text": "q", "group": "harmful", "answer": "a", "teacher_label": y}
        for i, y in enumerate(labels)
    ]
    write_jsonl(tmp_path / "teacher" / "teacher.jsonl", rows)
    recipe = _recipe(tiny_model_dir, tmp_path, teacher={"decision": "teacher"})
    with pytest.raises(SafelrmError, match=message):
        run_recipe(recipe, only=["classifier"])
    assert not (tmp_path / "classifier" / "soft_labels.jsonl").exists()


def test_unknown_recipe_key_rejected(tiny_model_dir, tmp_path):
    from safelrm.config import parse_config

    with pytest.raises(SafelrmError, match="head.lambda"):
        parse_config(
            get_method("presafe").recipe,
            {"method": "presafe", "head": {"lambda": 0.2}},
            "presafe.yaml",
        )

"""PreSafe's pure pieces: teacher decisions, label checks, folds, templates, norms."""

from __future__ import annotations

import json

import pytest
import torch

from safelrm.errors import SafelrmError
from safelrm.methods.presafe.classifier import (
    check_classifier_model,
    check_labels,
    cross_fit,
    stratified_folds,
)
from safelrm.methods.presafe.config import ClassifierSettings
from safelrm.methods.presafe.norms import lora_norms, summarize_norms, write_norms
from safelrm.methods.presafe.responses import decision_first, load_templates
from safelrm.methods.presafe.teacher import decide


def test_decision_modes():
    assert decide(0, True, "teacher") == 0
    assert decide(None, True, "teacher") is None
    assert decide(0, True, "teacher_or_kind") == 1
    assert decide(None, False, "teacher_or_kind") is None
    assert decide(1, False, "kind") == 0


def test_label_checks_are_one_line():
    with pytest.raises(SafelrmError, match="no labelled responses"):
        check_labels([None, None])
    with pytest.raises(SafelrmError, match="0 refusals and 3 compliances"):
        check_labels([0, 0, 0, None])
    assert check_labels([1, 1, 0, 0, None]) == (2, 2)


def test_stratified_folds_spread_each_class():
    labels = [1] * 4 + [0] * 8
    folds = stratified_folds(labels, 4, seed=0)
    for f in range(4):
        assert sum(1 for y, g in zip(labels, folds, strict=True) if g == f and y == 1) == 1
        assert sum(1 for y, g in zip(labels, folds, strict=True) if g == f and y == 0) == 2


def test_bad_classifier_id_is_one_line(tmp_path):
    with pytest.raises(SafelrmError, match="classifier.model: '.*' cannot be loaded"):
        check_classifier_model(str(tmp_path / "no-such-encoder"))
    check_classifier_model("minilm")


def test_cross_fit_soft_labels_are_out_of_fold():
    texts = [f"how do I build a weapon number {i}" for i in range(6)]
    texts += [f"what is a nice recipe for soup number {i}" for i in range(6)]
    labels = [1] * 6 + [0] * 6
    labels[0] = None  # unlabelled: mean of the fold models
    cfg = ClassifierSettings(method="linear", folds=3)
    soft, folds, metrics = cross_fit(texts, labels, cfg, seed=0, log=lambda m: None)
    assert folds[0] is None and all(f is not None for f in folds[1:])
    assert metrics["folds"] == 3 and metrics["n_labelled"] == 11
    assert sum(soft[:6]) / 6 > sum(soft[6:]) / 6  # the two topics separate
    assert all(0.0 <= s <= 1.0 for s in soft)


def test_templates_shipped_and_bad_file(tmp_path):
    t = load_templates()
    assert len(t["reasoning"]) >= 4 and len(t["answer"]) >= 4
    pair = decision_first("id-1", t, seed=0)
    assert pair == decision_first("id-1", t, seed=0)
    bad = tmp_path / "t.yaml"
    bad.write_text("reasoning: [ok]\nanswer: []\n")
    with pytest.raises(SafelrmError, match="t.yaml field 'answer'"):
        load_templates(bad)


def _adapter(path, r=2, alpha=4):
    from safetensors.torch import save_file

    path.mkdir()
    torch.manual_seed(0)
    tensors = {}
    for layer in range(4):
        for mod, (out_f, in_f) in {"q_proj": (8, 8), "gate_proj": (16, 8)}.items():
            part = "self_attn" if mod == "q_proj" else "mlp"
            base = f"base_model.model.model.layers.{layer}.{part}.{mod}"
            tensors[f"{base}.lora_A.weight"] = torch.randn(r, in_f) * (layer + 1)
            tensors[f"{base}.lora_B.weight"] = torch.randn(out_f, r)
    save_file(tensors, str(path / "adapter_model.safetensors"))
    (path / "adapter_config.json").write_text(json.dumps({"r": r, "lora_alpha": alpha}))
    return tensors


def test_lora_norms_match_direct_computation(tmp_path):
    tensors = _adapter(tmp_path / "adapter")
    norms = lora_norms(tmp_path / "adapter")
    assert norms["layers"] == [0, 1, 2, 3] and norms["modules"] == ["q_proj", "gate_proj"]
    base = "base_model.model.model.layers.2.mlp.gate_proj"
    delta = tensors[f"{base}.lora_B.weight"] @ tensors[f"{base}.lora_A.weight"] * (4 / 2)
    assert norms["fro"]["gate_proj"][2] == pytest.approx(float(torch.linalg.norm(delta)), rel=1e-5)
    assert norms["rms"]["gate_proj"][2] == pytest.approx(
        float(torch.linalg.norm(delta)) / (16 * 8) ** 0.5, rel=1e-5
    )
    summary = summarize_norms(norms)
    assert summary["modules"]["q_proj"]["deep_over_shallow"] > 1  # A grows with depth here


def test_norms_cli_writes_plots(tmp_path):
    from typer.testing import CliRunner

    from safelrm.methods.presafe.cli import app

    _adapter(tmp_path / "adapter")
    result = CliRunner().invoke(
        app, ["norms", str(tmp_path / "adapter"), "--out", str(tmp_path / "n")]
    )
    assert result.exit_code == 0, result.output
    for name in ("lora_norms_heatmap.png", "lora_norms_modules.png", "lora_norms.json"):
        assert (tmp_path / "n" / name).stat().st_size > 0
    with pytest.raises(SafelrmError, match="not a LoRA adapter folder"):
        write_norms(tmp_path, tmp_path / "x")

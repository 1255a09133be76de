"""`safelrm compare`: paired statistics on a hand-computed example, model specs (run folders),
and the whole path on the tiny model (per-model caches, report, plots)."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

from safelrm.errors import SafelrmError
from safelrm.eval.compare import read_compare, resolve_spec, resolve_specs, run_compare
from safelrm.eval.compare_report import render_markdown
from safelrm.eval.compare_table import compare_rows, find_entry
from safelrm.eval.metrics import EvalRow, answer_asr, outcomes, over_refusal, summarize
from safelrm.eval.stats import paired_bootstrap_ci
from safelrm.eval.viewer import build_view_data
from safelrm.io import write_json


def _row(rid: str, label: str | None, kind: str = "harmful", parsed: bool = True) -> EvalRow:
    verdicts = {} if label is None else {"kw": {"answer": {"label": label, "parsed": parsed}}}
    return EvalRow(id=rid, benchmark="bench", kind=kind, verdicts=verdicts, n_reasoning_tokens=5)


def _hand_example() -> dict[str, list[EvalRow]]:
    """Reference A unsafe on p0-p5 and p10 (7/11); B unsafe on p0, p1, p6 (3/10), unparsed on
    p10, and one prompt (p11) that A lacks. Pairs (p0..p9): A only 4 (p2-p5), B only 1 (p6)."""
    a = [_row(f"p{i}", "unsafe" if i <= 5 or i == 10 else "safe") for i in range(11)]
    b = [_row(f"p{i}", "unsafe" if i in (0, 1, 6) else "safe") for i in range(10)]
    b += [_row("p10", "unparsed", parsed=False), _row("p11", "safe")]
    random.Random(0).shuffle(b)  # pairing is by id, not by position
    return {"A": a, "B": b}


def test_paired_statistics_match_a_hand_computed_example():
    entries = compare_rows(_hand_example(), ["kw"], reference="A")
    e = find_entry(entries, "bench", "answer_asr", "kw")
    a, b = e["models"]["A"], e["models"]["B"]
    assert (a["count"], a["n"], a["unparsed"]) == (7, 11, 0)
    assert (b["count"], b["n"], b["unparsed"]) == (3, 11, 1)
    # Wilson 95% for 7/11 by hand: centre (p + z^2/2n) / (1 + z^2/n), half-width
    # z sqrt(p(1-p)/n + z^2/4n^2) / (1 + z^2/n) with z = 1.959964 -> [0.3538, 0.8483]
    assert a["low"] == pytest.approx(0.3538, abs=1e-4)
    assert a["high"] == pytest.approx(0.8483, abs=1e-4)
    p = e["paired"]["B"]
    assert p["n_pairs"] == 10 and p["unmatched"] == 1
    assert (p["a_only"], p["b_only"]) == (4, 1)
    assert p["a_rate"] == pytest.approx(0.6) and p["b_rate"] == pytest.approx(0.3)
    assert p["diff"] == pytest.approx(-0.3)
    # exact McNemar: 2 * P(Binom(5, 1/2) <= 1) = 2 * 6/32
    assert p["mcnemar_p"] == pytest.approx(0.375)
    # the bootstrap resamples the 10 pairs (in id order) together
    xa = [1.0] * 6 + [0.0] * 4
    xb = [1.0, 1.0, 0, 0, 0, 0, 1.0, 0, 0, 0]
    assert (p["low"], p["high"]) == pytest.approx(paired_bootstrap_ci(xa, xb))
    assert p["low"] < -0.3 < p["high"]
    md = render_markdown(
        {
            "suite": "hand",
            "judges": ["kw"],
            "reference": "A",
            "cot": True,
            "models": [
                {
                    "label": x,
                    "model": x,
                    "source": "-",
                    "n_rows": 1,
                    "new_generations": 0,
                    "warnings": [],
                }
                for x in ("A", "B")
            ],  # fmt: skip
            "entries": entries,
        }
    )
    assert "63.6 [35.4, 84.8] (7/11)" in md
    assert "-30.0 [" in md and "p=0.375 (4/1)" in md


def test_outcomes_are_the_rows_behind_the_rates():
    rows = _hand_example()["B"] + [_row("b1", "refusal", "benign"), _row("b2", "safe", "benign")]
    flags = outcomes(rows, "answer_asr", "kw")
    rate = answer_asr(rows, "kw")
    assert (sum(bool(f) for f in flags.values()), sum(f is not None for f in flags.values())) == (
        rate.count,
        rate.n,
    )
    refusal = outcomes(rows, "over_refusal", "kw")
    assert refusal == {"b1": True} and over_refusal(rows, "kw").n == 1
    assert summarize(rows, ["kw"])["n_rows"] == len(rows)


def _done(run: Path, stage: str) -> None:
    write_json(run / stage / "stage.json", {"hash": "x", "status": "done"})


def test_run_folders_resolve_to_their_final_model(tmp_path, tiny_model_dir):
    run = tmp_path / "st"
    write_json(run / "recipe.json", {"method": "safe_trigger", "model": "default"})
    sts, std = tmp_path / "sts", tmp_path / "std"
    for d in (sts, std):
        shutil.copytree(tiny_model_dir, d)
    write_json(run / "sft" / "model.json", {"model": str(sts)})
    _done(run, "sft")
    with pytest.raises(SafelrmError, match=r"stage 'dpo' of this safe_trigger run is not started"):
        resolve_spec(str(run))
    write_json(run / "dpo" / "model.json", {"model": str(std)})
    _done(run, "dpo")
    final = resolve_spec(str(run))
    assert (final.label, final.model) == ("ST-D", str(std.resolve()))
    assert resolve_spec(f"{run}:sft").model == str(sts.resolve())
    assert resolve_spec(f"mine={run}:ST-S").label == "mine"
    assert resolve_spec(f"{run}:base").model == "default"
    with pytest.raises(SafelrmError, match="has no model 'nope'"):
        resolve_spec(f"{run}:nope")
    ipo = tmp_path / "ipo"
    write_json(ipo / "recipe.json", {"method": "ipo"})
    _done(ipo, "train")
    with pytest.raises(SafelrmError, match="model folder .*merged is missing"):
        resolve_spec(str(ipo))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SafelrmError, match="neither a model folder"):
        resolve_spec(str(tmp_path / "empty"))
    with pytest.raises(SafelrmError, match="same label"):
        resolve_specs([str(tiny_model_dir), str(tiny_model_dir)])
    # a folder named model/merged is labelled by its parent
    assert resolve_spec(str(tiny_model_dir)).label == Path(tiny_model_dir).parent.name


TINY_SUITE = """
name: tiny
generation: {max_reasoning_tokens: 6, max_new_tokens: 6}
entries:
  - {benchmark: advbench, n: 4}
  - {benchmark: xstest-safe, n: 3}
  - {benchmark: gsm8k, n: 2, suffix: "Answer after ####."}
"""


def test_compare_on_the_tiny_model_caches_per_model(tmp_path, tiny_model_dir, shared_data):
    suite = tmp_path / "tiny.yaml"
    suite.write_text(TINY_SUITE)
    other = tmp_path / "other"
    shutil.copytree(tiny_model_dir, other)
    out = tmp_path / "cmp"
    models = [f"base={tiny_model_dir}", f"same={other}"]
    report = run_compare(models, str(suite), "keyword", out, batch_size=8, progress=False)
    assert [m["new_generations"] for m in report["models"]] == [9, 9]
    e = find_entry(report["entries"], "ALL harmful+jailbreak", "answer_asr", "keyword")
    # identical weights, greedy decoding: no discordant pair
    assert e["paired"]["same"]["diff"] == 0 and e["paired"]["same"]["mcnemar_p"] == 1.0
    saved = json.loads((out / "base" / "results.json").read_text())
    asr = saved["benchmarks"]["advbench"]["judges"]["keyword"]["answer_asr"]
    cell = find_entry(report["entries"], "advbench", "answer_asr", "keyword")["models"]["base"]
    assert (cell["count"], cell["n"]) == (asr["count"], asr["n"])
    assert (out / "report.md").read_text().count("| base |") >= 2
    assert (out / "tradeoff-keyword.png").stat().st_size > 1000
    assert read_compare(out)["reference"] == "base"
    # one more model, reference by name: only the new one generates
    third = tmp_path / "third"
    shutil.copytree(tiny_model_dir, third)
    again = run_compare(
        [*models, str(third)], str(suite), "keyword", out, reference="same", progress=False
    )
    assert [m["new_generations"] for m in again["models"]] == [0, 0, 9]
    assert again["reference"] == "same"
    # the sample viewer reads the compare folder: three models side by side on each prompt
    view = build_view_data(out)
    assert view["models"] == ["base", "same", "third"] and len(view["prompts"]) == 9
    assert all(p["prompt"] and len(p["by"]) == 3 for p in view["prompts"])
    with pytest.raises(SafelrmError, match="--reference 'x'"):
        run_compare(models, str(suite), "keyword", out, reference="x", progress=False)


def test_cli_errors_are_one_line(tmp_path):
    from typer.testing import CliRunner

    from safelrm.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["compare", "default", "--out", str(tmp_path / "c")])
    assert result.exit_code == 2 and "compare needs at least two models" in result.output
    result = runner.invoke(app, ["compare", "a=default", "a=default", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "same label 'a'" in result.output
    result = runner.invoke(app, ["view", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "not a folder" in result.output


def test_every_method_declares_its_final_model_in_one_of_its_stages():
    from safelrm.pipeline import get_method, list_methods

    for name in list_methods():
        method = get_method(name)
        stages = {s.name for s in method.stages}
        assert method.models, f"{name} declares no trained model"
        assert all(m.stage in stages for m in method.models), name

"""IPO end to end on the tiny model: every stage, resumption, bad input counted, the CSR CLI."""

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from safelrm.config import parse_config
from safelrm.errors import SafelrmError
from safelrm.io import read_json, read_jsonl
from safelrm.methods.ipo.config import IPORecipe
from safelrm.pipeline import get_method, load_recipe, run_recipe

FIX = Path(__file__).parent / "fixtures" / "ipo"


def _recipe(model, out, **over):
    data = {
        "method": "ipo",
        "model": str(model),
        "out": str(out),
        "generation": {"batch_size": 8},
        "eval": {"suite": str(FIX / "tiny_suite.yaml"), "judges": ["keyword"]},
        # prompts whose prefill gives the tiny model a few sentences of reasoning; tiny-4's
        # prefill closes the reasoning at once (a trajectory without reasoning)
        "rollouts": {
            "sets": [str(FIX / "harmful_prefixed.jsonl")],
            "n": 4,
            "max_reasoning_tokens": 8,
            "max_new_tokens": 6,
        },
        "detector": {"markers_file": str(FIX / "any_markers.txt")},
        "intervene": {"max_reasoning_tokens": 8, "max_new_tokens": 6, "rounds": 2},
        "overrefusal": {"n": 2, "ratio": 1.0},
        "pairs": {"require_safe_chosen": False},
        "dpo": {"max_steps": 2, "max_length": 256, "lora": {"r": 4, "alpha": 8}},
        "sft": {"max_steps": 2, "max_length": 256, "lora": {"r": 4, "alpha": 8}},
        "ablations": {"full_trajectory": False, "sft": True},
    }
    for key, value in over.items():
        data[key] = {**data.get(key, {}), **value}
    return parse_config(IPORecipe, data, "test recipe")


@pytest.fixture(scope="module")
def run(tiny_model_dir, shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("ipo") / "run"
    report = run_recipe(_recipe(tiny_model_dir, out))
    return out, report


def test_every_stage_runs_and_reports(run):
    out, report = run
    assert [s.name for s in get_method("ipo").stages] == list(report)
    assert all(v["status"] == "ran" for v in report.values())
    roll = report["rollouts"]["summary"]
    assert roll["status"] == {"unsafe": 3, "no_reasoning": 1}  # counted, then skipped
    iv = report["intervene"]["summary"]
    assert iv["unsafe_rollouts"] == 3 and iv["cue_status"] == {"cue": 3}
    assert iv["tasks_per_round"]["1"] == 18  # 3 rollouts x 6 triggers
    assert iv["continued_by"]["kv-reuse"] == 18
    assert iv["generations_per_prompt"]["max"] <= 1 + 6 * 2
    pairs = report["pairs"]["summary"]
    assert pairs["ipo_pairs"] == 18 and pairs["overrefusal_pairs"] == 2
    assert pairs["rows_part"] == 20 and pairs["dropped_part"] == {}
    for row, idx in zip(
        read_jsonl(out / "pairs" / "dpo_part.jsonl"),
        read_jsonl(out / "pairs" / "dpo_part_index.jsonl"),
        strict=True,
    ):
        assert row["prompt"].startswith("<|im_start|>") and "<think>\n" in row["prompt"]
        assert idx["n_prompt_tokens"] > 0
    merged = Path(report["train"]["summary"]["merged"])
    assert (merged / "config.json").is_file()
    train_prompts = read_jsonl(merged / "safelrm_train_prompts.jsonl")
    assert {p["id"] for p in train_prompts} >= {"tiny-1", "tiny-2", "tiny-3"}
    assert set(report["train_ablations"]["summary"]) == {"sft"}
    assert report["report"]["summary"]["models"] == ["base", "ipo", "ipo-sft"]
    text = (out / "report" / "report.md").read_text()
    assert "## IPO data" in text and "no_reasoning" in text
    assert read_json(out / "eval_ipo" / "results.json")["benchmarks"]


def test_rerun_skips_every_stage(run, tiny_model_dir):
    out, _ = run
    again = run_recipe(_recipe(tiny_model_dir, out))
    assert all(v["status"] == "skipped" for v in again.values())


def test_unreadable_detector_output_is_counted_and_skipped(run, tiny_model_dir, tmp_path):
    out, _ = run
    for stage in ("rollouts", "overrefusal"):  # unchanged stages: reused, not regenerated
        shutil.copytree(out / stage, tmp_path / "run" / stage)
    # an LLM detector on the tiny random model: its answers cannot be parsed
    recipe = _recipe(
        tiny_model_dir,
        tmp_path / "run",
        detector={"backend": "hf", "model": str(tiny_model_dir), "max_new_tokens": 4},
    )
    report = run_recipe(recipe, only=["rollouts", "intervene"])
    assert report["rollouts"]["status"] == "skipped"
    iv = report["intervene"]["summary"]
    assert iv["cue_status"] == {"unparsed": 3} and iv["interventions"] == 0
    assert (tmp_path / "run" / "intervene" / "interventions.jsonl").read_text() == ""
    with pytest.raises(SafelrmError, match="no preference pairs"):
        run_recipe(recipe, only=["overrefusal", "pairs"])


def test_recipe_file_parses_and_rejects_unknown_keys(tmp_path):
    recipe = load_recipe("recipes/ipo.yaml")
    assert recipe.dpo.nll_weight == 0.2 and recipe.pairs.loss_scope == "part"
    assert recipe.intervene.rounds == 1
    with pytest.raises(SafelrmError, match="bogus"):
        load_recipe("recipes/ipo.yaml", ["intervene.bogus=1"])
    with pytest.raises(SafelrmError, match="detector"):
        load_recipe("recipes/ipo.yaml", ["detector.backend=endpoint"])


def test_csr_cli_plots_curves(run, tiny_model_dir, tmp_path):
    from safelrm.methods.ipo.cli import app

    out, _ = run
    result = CliRunner().invoke(
        app,
        [
            "csr",
            str(out / "rollouts" / "rollouts.jsonl"),
            "--model",
            str(tiny_model_dir),
            "--out",
            str(tmp_path / "csr"),
            "--n",
            "2",
            "--k",
            "2",
            "--max-reasoning-tokens",
            "4",
            "--max-new-tokens",
            "3",
            "--markers-file",
            str(FIX / "any_markers.txt"),
        ],
    )
    assert result.exit_code == 0, result.output
    curves = [
        json.loads(line) for line in (tmp_path / "csr" / "csr.jsonl").read_text().splitlines()
    ]
    assert len(curves) == 2
    for c in curves:
        assert [p["number"] for p in c["points"]] == list(range(1, len(c["points"]) + 1))
        assert all(p["n"] == 2 for p in c["points"])
        assert c["detector_status"] == "cue" and c["detector_cue"] is not None
    assert (tmp_path / "csr" / "csr.png").stat().st_size > 1000


def test_csr_cli_bad_records(tmp_path):
    from safelrm.methods.ipo.cli import app

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [], "prompt": "p", "answer": "a"}\n')
    result = CliRunner().invoke(app, ["csr", str(bad), "--out", str(tmp_path / "o")])
    assert isinstance(result.exception, SafelrmError)
    assert "bad.jsonl:1" in str(result.exception) and "reasoning" in str(result.exception)


def test_mark_trigger_and_cue_points():
    from safelrm.methods.ipo.csr import Point, mark

    ratios = [0.5, 1.0, 0.95, 0.9, 0.2, 0.0, 0.05, 0.5]
    points = [Point(i + 1, 10 * i, 4, 0, r) for i, r in enumerate(ratios)]
    triggers, cues = mark(points, window=15)
    assert triggers == [10] and cues == [50]
    assert mark(points, window=25)[0] == [10]
    assert mark(points, window=45) == ([], [])
    # the first point has nothing to rise or fall from
    flat = [Point(i + 1, 10 * i, 4, 0, r) for i, r in enumerate([0.0, 0.0, 1.0])]
    assert mark(flat, window=5) == ([20], [])

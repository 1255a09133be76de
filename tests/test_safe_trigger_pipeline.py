"""The whole Safe Trigger recipe on the tiny random model: run, skip, rerun downstream, resume,
and the errors for bad recipes and missing upstream outputs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml

from safelrm.errors import SafelrmError
from safelrm.judges import Judge, Verdict, register_judge
from safelrm.pipeline import load_recipe, run_recipe

FIXTURES = Path(__file__).parent / "fixtures" / "safe_trigger"
STAGES = [
    "prompts",
    "pass1",
    "audit",
    "pass2",
    "sft_data",
    "sft",
    "dpo_data",
    "dpo",
    "eval_base",
    "eval_sts",
    "eval_std",
    "report",
]


class ParityJudge(Judge):
    """A deterministic judge for the random tiny model, which never writes a real refusal:
    the parity of a hash of the text decides refusal vs compliance, so both filter paths run."""

    name = "st-parity"

    def _label(self, text: str) -> Verdict:
        odd = hashlib.sha256(text.encode()).digest()[0] % 2
        return Verdict(label="refusal" if odd else "compliance", score=0.0 if odd else 1.0)

    def _judge_answers(self, items):
        return [self._label(it.answer) for it in items]

    def _judge_reasoning(self, items):
        return [self._label(it.reasoning) for it in items]


register_judge("st-parity")(ParityJudge)


def tiny_recipe(model_dir: Path, out: Path) -> dict:
    return {
        "method": "safe_trigger",
        "model": str(model_dir),
        "out": str(out),
        "generation": {"batch_size": 16},
        "eval": {"suite": str(FIXTURES / "tiny-suite.yaml"), "judges": ["st-parity"]},
        "data_judges": ["st-parity"],
        "data": {
            "general": [{"set": "gsm8k_train", "n": 20}, {"set": "dolly", "n": 20}],
            "harmful": [{"set": "do_not_answer", "n": 30}, {"set": "catqa", "n": 30}],
            "attacks": [{"name": "mixed", "options": {"k": 1}}],
            "n_general": 4,
            "n_harmful": 4,
            "n_jailbreak": 4,
            "n_dpo": 3,
            "n_dpo_general": 2,
            "max_prompt_chars": 1500,
        },
        "pass1": {"max_reasoning_tokens": 4, "max_new_tokens": 4},
        "audit": {"cot": False, "scaffold": True, "max_new_tokens": 2},
        "pass2": {
            "scaffold": "on",
            "max_reasoning_tokens": 4,
            "section_tokens": 3,
            "min_part_words": 1,
            "max_new_tokens": 4,
            "retries": 1,
            "retry_unsafe": True,
        },
        "sft_data": {"general_ratio": 1.0, "drop_refusing_general": False},
        "sft": {"max_steps": 2, "max_length": 512, "lora": {"r": 4, "alpha": 8}},
        "dpo_data": {
            "samples": 3,
            "max_reasoning_tokens": 3,
            "max_new_tokens": 4,
            "delta": 0.5,
        },
        "dpo": {"max_steps": 1, "max_length": 512, "lora": {"r": 4, "alpha": 8}},
    }


def write_recipe(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def statuses(report: dict) -> dict[str, str]:
    return {name: v["status"] for name, v in report.items()}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run fastest on one thread; two threads on a busy 2-core machine are ~10x
    slower (OpenMP spinning against other processes)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def finished_run(tiny_model_dir, shared_data, tmp_path_factory):
    """One full run of the tiny recipe (shared by the tests that only read or rerun it)."""
    tmp = tmp_path_factory.mktemp("st-run")
    path = write_recipe(tmp, tiny_recipe(tiny_model_dir, tmp / "run"))
    report = run_recipe(load_recipe(path))
    return path, tmp / "run", report


def test_full_run_makes_every_output(finished_run):
    path, run, report = finished_run
    assert statuses(report) == {s: "ran" for s in STAGES}
    for stage in STAGES:
        assert json.loads((run / stage / "stage.json").read_text())["status"] == "done"
    sts = json.loads((run / "sft" / "model.json").read_text())["model"]
    assert (Path(sts) / "config.json").is_file()
    assert (Path(sts) / "safelrm_train_prompts.jsonl").is_file()
    assert (run / "report" / "report.md").is_file()
    assert (run / "report" / "acceptance.json").is_file()
    for stage in ("sft", "dpo"):  # TensorBoard logs kept; checkpoints removed once exported
        assert list((run / stage / "train" / "logs").rglob("events.out.tfevents.*")), stage
        assert not (run / stage / "train" / "checkpoints").exists()
    # block states and degenerate outputs per set and model, with paired tests against base
    robust = json.loads((run / "report" / "robustness.json").read_text())
    for entry in robust.values():
        assert set(entry["models"]) == {"base", "ST-S", "ST-D"}
        assert {"opened", "complete", "complete_of_opened", "degenerate"} <= set(
            entry["models"]["ST-D"]
        )
    assert "degenerate" in (run / "report" / "report.md").read_text()
    pipeline = json.loads((run / "pipeline.json").read_text())
    assert set(pipeline) == set(STAGES)
    # every SFT safety row carries a validated <safe> block
    rows = [json.loads(x) for x in (run / "sft_data" / "rows.jsonl").read_text().splitlines()]
    safety = [r for r in rows if "<safe>" in r["completion"]]
    assert safety and all("</safe>" in r["completion"] for r in safety)
    audit = json.loads((run / "audit" / "stage.json").read_text())["summary"]
    assert "risr" in audit["overall"] and audit["by_source"]
    # the general contrast queries are sampled and scored beside the jailbreak ones
    scored = [json.loads(x) for x in (run / "dpo_data" / "scored.jsonl").read_text().splitlines()]
    assert sum(x["role"] == "general" for x in scored) == 2 * 3
    assert sum(x["role"] == "jailbreak" for x in scored) == 3 * 3
    dpo_data = json.loads((run / "dpo_data" / "stage.json").read_text())["summary"]
    assert dpo_data["contrast"]["queries"] == 2


def test_second_run_skips_everything_and_a_changed_key_reruns_downstream(finished_run):
    path, run, _ = finished_run
    again = run_recipe(load_recipe(path))
    assert statuses(again) == {s: "skipped" for s in STAGES}

    changed = run_recipe(load_recipe(path, ["sft.max_steps=1"]))
    reran = {s for s, st in statuses(changed).items() if st == "ran"}
    assert reran == {"sft", "dpo_data", "dpo", "eval_sts", "eval_std", "report"}
    assert statuses(changed)["eval_base"] == "skipped"


def test_interrupted_stage_resumes(finished_run):
    """A kill mid-pass1 leaves stage.json 'running' and a store cut mid-line; the rerun resumes
    that stage in place, generating only what is missing, and skips the finished downstream."""
    path, run, _ = finished_run
    recipe = load_recipe(path, ["sft.max_steps=1"])  # the state the previous test left
    store = run / "pass1" / "records.jsonl"
    lines = store.read_text().splitlines(keepends=True)
    keep = len(lines) // 2
    store.write_text("".join(lines[:keep]) + lines[keep][: len(lines[keep]) // 2])
    state = run / "pass1" / "stage.json"
    done = json.loads(state.read_text())
    state.write_text(json.dumps({"hash": done["hash"], "status": "running"}))

    report = run_recipe(recipe)
    assert statuses(report)["pass1"] == "ran"
    assert [s for s, st in statuses(report).items() if st == "ran"] == ["pass1"]
    records = [json.loads(x) for x in store.read_text().splitlines()]
    assert len(records) == len(lines) == len({r["key"] for r in records})
    # greedy generation: the resumed records equal the lost ones, so the samples match again
    summary = json.loads(state.read_text())["summary"]
    assert summary["labels_by_kind"] == done["summary"]["labels_by_kind"]
    assert summary["tokens"] == done["summary"]["tokens"]


def test_missing_upstream_output_names_file_and_stage(tiny_model_dir, tmp_path):
    path = write_recipe(tmp_path, tiny_recipe(tiny_model_dir, tmp_path / "fresh"))
    with pytest.raises(SafelrmError) as err:
        run_recipe(load_recipe(path), only=["sft"])
    message = str(err.value)
    assert "sft_data" in message and "rows.jsonl" in message and "--only sft_data" in message


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"sft": {"max_stepz": 3}}, "sft.max_stepz"),
        ({"pass2": {"retries": "many"}}, "pass2.retries"),
        ({"dpo_data": {"weights": {"w_a": 1.0, "w_b": 2.0, "w_c": 0.5}}}, "dpo_data.weights"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_bad_recipe_rejected_before_any_work(tiny_model_dir, tmp_path, change, key):
    data = tiny_recipe(tiny_model_dir, tmp_path / "never")
    for section, value in change.items():
        if isinstance(value, dict) and isinstance(data.get(section), dict):
            data[section] = {**data[section], **value}
        else:
            data[section] = value
    with pytest.raises(SafelrmError) as err:
        load_recipe(write_recipe(tmp_path, data))
    assert f"'{key}" in str(err.value)
    assert not (tmp_path / "never").exists()


def test_cli_reports_bad_key_and_missing_input(tiny_model_dir, tmp_path):
    from typer.testing import CliRunner

    from safelrm.cli import app

    runner = CliRunner()
    data = tiny_recipe(tiny_model_dir, tmp_path / "cli")
    data["audit"] = {**data["audit"], "verbose": True}
    bad = runner.invoke(app, ["run", str(write_recipe(tmp_path, data))])
    assert bad.exit_code != 0
    assert "audit.verbose" in str(bad.exception) + bad.output

"""The evaluation runner on the tiny model: reports, resuming, bad input, overlap, CoT on/off."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from safelrm.errors import SafelrmError
from safelrm.eval.runner import (
    TRAIN_PROMPTS_FILE,
    load_results,
    load_suite_prompts,
    read_train_prompts,
    run_eval,
    run_eval_cot,
    write_train_prompts,
)
from safelrm.eval.suites import list_suites, load_suite

TINY_SUITE = """
name: tiny
generation: {max_reasoning_tokens: 6, max_new_tokens: 6}
entries:
  - {benchmark: advbench, n: 3}
  - {benchmark: jbb-harmful, name: jbb-attacked, n: 2, attack: prefix_injection}
  - {benchmark: xstest-safe, n: 3}
  - {benchmark: gsm8k, n: 2, suffix: "Answer after ####.", generation: {max_reasoning_tokens: 4}}
"""
N_PROMPTS = 10
JUDGES = ["keyword", "keyword-startswith"]


@pytest.fixture(scope="module")
def suite_file(tmp_path_factory, shared_data) -> Path:
    path = tmp_path_factory.mktemp("suite") / "tiny.yaml"
    path.write_text(TINY_SUITE)
    return path


class CountingEngine:
    """The real engine, counting the completion jobs its backend runs."""

    def __init__(self, model_dir: Path) -> None:
        from safelrm.models import make_engine

        self.engine = make_engine(str(model_dir), batch_size=8)
        self.jobs = 0
        complete = self.engine.backend.complete

        def counted(jobs, on_batch=None):
            self.jobs += len(jobs)
            return complete(jobs, on_batch)

        self.engine.backend.complete = counted


@pytest.fixture(scope="module")
def counting(tiny_model_dir) -> CountingEngine:
    return CountingEngine(tiny_model_dir)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, tiny_model_dir, suite_file, counting):
    out = tmp_path_factory.mktemp("eval") / "run"
    counting.jobs = 0
    results = run_eval(
        str(tiny_model_dir), suite_file, JUDGES, out, engine=counting.engine, progress=False
    )
    return out, results, counting.jobs


def _lines(path: Path) -> int:
    return sum(1 for line in path.read_text().splitlines() if line.strip())


# ------------------------------------------------------------------ suites


def test_shipped_suites_load():
    assert {"safety-small", "safety-full", "reasoning"} <= set(list_suites())
    small = load_suite("safety-small")
    labels = {e.label: e for e in small.entries}
    assert set(labels) == {"advbench", "jbb-attacked", "xstest-safe", "gsm8k"}
    assert labels["jbb-attacked"].attack == "mixed"
    assert labels["gsm8k"].settings(small.generation).max_new_tokens == 64
    full = load_suite("safety-full")
    assert {"strongreject", "xstest-unsafe", "wildjailbreak"} <= {e.label for e in full.entries}
    assert {e.benchmark for e in load_suite("reasoning").entries} == {"math500", "aime24", "gsm8k"}


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("name: x\nentries: []\n", "no entries"),
        ("name: x\nentries:\n  - {benchmark: nosuch}\n", "entry 0 ('nosuch'): unknown benchmark"),
        (
            "name: x\nentries:\n  - {benchmark: advbench}\n  - {benchmark: advbench, attack: zz}\n",
            "entry 1 ('advbench+zz'): unknown attack 'zz'",
        ),
        ("name: x\nentries:\n  - {benchmark: advbench, nn: 3}\n", "entries.0.nn"),
        ("name: x\nentries:\n  - {benchmark: advbench}\n  - {benchmark: advbench}\n", "twice"),
    ],
)
def test_bad_suites_name_file_and_entry(tmp_path, text, needle):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SafelrmError) as e:
        load_suite(path)
    assert str(path) in str(e.value) and needle in str(e.value)


def test_unknown_suite_name_lists_known():
    with pytest.raises(SafelrmError, match="unknown suite 'nope'.*safety-small"):
        load_suite("nope")


# ------------------------------------------------------------------ the run


def test_full_run_writes_report_with_cis(first_run):
    out, results, jobs = first_run
    assert jobs > 0
    for name in ("results.json", "report.md", "rows.jsonl", "asr.png"):
        assert (out / name).is_file(), name
    assert _lines(out / "records.jsonl") == N_PROMPTS
    assert results["n_rows"] == N_PROMPTS
    assert set(results["benchmarks"]) == {"advbench", "jbb-attacked", "xstest-safe", "gsm8k"}
    asr = results["benchmarks"]["advbench"]["judges"]["keyword"]["answer_asr"]
    assert asr["n"] == 3 and asr["low"] <= asr["value"] <= asr["high"]
    assert results["benchmarks"]["gsm8k"]["math_accuracy"]["n"] == 2
    over = results["benchmarks"]["xstest-safe"]["judges"]["keyword-startswith"]["over_refusal"]
    assert over["n"] == 3
    saved = json.loads((out / "results.json").read_text())
    assert saved["overall"] == results["overall"] and saved["warnings"] == []
    report = (out / "report.md").read_text()
    assert "jbb-attacked" in report and "Math accuracy" in report
    # the attack was applied: the jailbreak's goal is the plain request, judged per record
    rec = next(json.loads(x) for x in (out / "records.jsonl").open() if "jbb-attacked/" in x)
    assert rec["meta"]["kind"] == "jailbreak" and rec["meta"]["goal"]
    assert "Answer after ####." in next(
        x for x in (out / "records.jsonl").read_text().splitlines() if "gsm8k/" in x
    )
    for judge in JUDGES:
        assert _lines(out / f"verdicts-{judge}.jsonl") >= 8  # 8 judged answers + reasoning


def test_rerun_resumes_without_generating_or_judging(
    first_run, tiny_model_dir, suite_file, counting
):
    out, results, _ = first_run
    verdict_lines = _lines(out / "verdicts-keyword.jsonl")
    counting.jobs = 0
    again = run_eval(
        str(tiny_model_dir), suite_file, JUDGES, out, engine=counting.engine, progress=False
    )
    assert counting.jobs == 0 and again["run"]["new_generations"] == 0
    assert _lines(out / "records.jsonl") == N_PROMPTS
    assert _lines(out / "verdicts-keyword.jsonl") == verdict_lines
    assert again["benchmarks"] == results["benchmarks"]


def test_killed_run_regenerates_only_missing(tmp_path, first_run, tiny_model_dir, suite_file):
    out, results, _ = first_run
    partial = tmp_path / "partial"
    shutil.copytree(out, partial)
    lines = (partial / "records.jsonl").read_text().splitlines(keepends=True)
    # two whole records lost and a half-written third, as after a SIGKILL
    (partial / "records.jsonl").write_text("".join(lines[:-3]) + lines[-3][:20])
    engine = CountingEngine(tiny_model_dir)
    again = run_eval(
        str(tiny_model_dir), suite_file, JUDGES, partial, engine=engine.engine, progress=False
    )
    assert again["run"]["new_generations"] == 3
    assert engine.jobs == 3 + 3  # reasoning + answer phase per regenerated record
    assert _lines(partial / "records.jsonl") == N_PROMPTS
    assert again["benchmarks"] == results["benchmarks"]  # greedy: the same text again


def test_changed_settings_refuse_the_old_folder(first_run, tiny_model_dir, suite_file):
    out, _, _ = first_run
    with pytest.raises(SafelrmError, match="other settings.*cot"):
        run_eval(str(tiny_model_dir), suite_file, ["keyword"], out, cot=False, progress=False)


def test_unknown_judge_fails_before_generating(tmp_path, tiny_model_dir, suite_file):
    with pytest.raises(SafelrmError, match="unknown judge 'nosuch'"):
        run_eval(str(tiny_model_dir), suite_file, ["keyword", "nosuch"], tmp_path / "o")
    assert not (tmp_path / "o" / "records.jsonl").exists()


def _closed_port_url() -> str:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"  # nothing listens there once the socket is closed


def test_judge_endpoint_down_keeps_generations(tmp_path, tiny_model_dir, suite_file, counting):
    out = tmp_path / "down"
    run = dict(engine=counting.engine, limit=1, progress=False)
    down = {"llm": {"backend": "openai", "url": _closed_port_url(), "retries": 0}}
    with pytest.raises(SafelrmError, match="judge 'llm': judge endpoint .* did not answer"):
        run_eval(
            str(tiny_model_dir), suite_file, ["keyword", "llm"], out, judge_options=down, **run
        )
    assert _lines(out / "records.jsonl") == 4
    assert _lines(out / "verdicts-keyword.jsonl") > 0
    counting.jobs = 0
    results = run_eval(str(tiny_model_dir), suite_file, ["keyword"], out, **run)
    assert counting.jobs == 0 and results["judges"] == ["keyword"]


def test_judge_options_reach_the_judge_and_guard_its_cache(tmp_path, tiny_model_dir, suite_file):
    out = tmp_path / "opts"
    run = dict(limit=1, progress=False)
    with pytest.raises(SafelrmError, match="mode must be contains or startswith"):
        run_eval(
            str(tiny_model_dir), suite_file, ["keyword"], out,
            judge_options={"keyword": {"mode": "sideways"}}, **run,
        )  # fmt: skip
    with pytest.raises(SafelrmError, match="not in the judge list"):
        run_eval(str(tiny_model_dir), suite_file, ["keyword"], out, judge_options={"llm": {}})
    assert not (out / "records.jsonl").exists()
    opts = {"keyword": {"mode": "startswith"}}
    run_eval(str(tiny_model_dir), suite_file, ["keyword"], out, judge_options=opts, **run)
    with pytest.raises(SafelrmError, match="verdicts-keyword.jsonl: made with other settings"):
        run_eval(str(tiny_model_dir), suite_file, ["keyword"], out, **run)


def test_limit_caps_each_entry(tmp_path, tiny_model_dir, suite_file, counting):
    results = run_eval(
        str(tiny_model_dir),
        suite_file,
        ["keyword"],
        tmp_path / "lim",
        engine=counting.engine,
        limit=1,
        progress=False,
    )
    assert results["n_rows"] == 4
    assert all(b["n"] == 1 for b in results["benchmarks"].values())


# ------------------------------------------------------------------ overlap


def test_overlap_warning_from_train_prompts(tmp_path, tiny_model_dir, suite_file):
    from safelrm.data.records import PromptRecord

    prompts, _ = load_suite_prompts(load_suite(suite_file), limit=1)
    text = prompts["advbench"][0].text  # an advbench prompt the suite evaluates

    train = [
        PromptRecord(id="t0", text=text.upper() + "!", kind="harmful"),
        PromptRecord(id="t1", text="Tell me a joke about cats", kind="general"),
    ]
    # a model folder that carries its training prompts (the convention trained models follow)
    model = tmp_path / "trained"
    shutil.copytree(tiny_model_dir, model)
    write_train_prompts(model, train)
    assert (model / TRAIN_PROMPTS_FILE).is_file()
    assert [p.id for p in read_train_prompts(model)] == ["t0", "t1"]
    results = run_eval(
        str(model), suite_file, ["keyword"], tmp_path / "ov", limit=1, progress=False
    )
    assert len(results["warnings"]) == 1
    assert "OVERLAP in 'advbench'" in results["warnings"][0]
    assert "1 exact" in results["warnings"][0]
    assert "OVERLAP" in (tmp_path / "ov" / "report.md").read_text()
    pairs = json.loads((tmp_path / "ov" / "overlap.json").read_text())["pairs"]
    assert pairs[0]["train_id"] == "t0"


def test_no_overlap_no_warning(tmp_path, tiny_model_dir, suite_file, counting):
    from safelrm.data.records import PromptRecord

    train = [PromptRecord(id="t", text="Write a poem about autumn leaves", kind="general")]
    results = run_eval(
        str(tiny_model_dir),
        suite_file,
        ["keyword"],
        tmp_path / "clean",
        engine=counting.engine,
        train_prompts=train,
        limit=1,
        progress=False,
    )
    assert results["warnings"] == []


# ------------------------------------------------------------------ CoT on/off


def test_cot_on_off_comparison(tmp_path, tiny_model_dir, suite_file, counting):
    out = tmp_path / "cot"
    results = run_eval_cot(
        str(tiny_model_dir),
        suite_file,
        ["keyword"],
        out,
        engine=counting.engine,
        limit=2,
        progress=False,
    )
    assert list(results) == ["cot-on", "cot-off"]
    on, off = results["cot-on"], results["cot-off"]
    assert on["run"]["cot"] is True and off["run"]["cot"] is False
    off_records = [json.loads(x) for x in (out / "cot-off" / "records.jsonl").open()]
    assert all(r["reasoning"] == "" and r["n_reasoning_tokens"] == 0 for r in off_records)
    # without reasoning there is nothing to judge there: no harmful-reasoning rate
    assert "reasoning_harm" not in off["benchmarks"]["advbench"]["judges"]["keyword"]
    assert on["benchmarks"]["advbench"]["reasoning_tokens"]["mean"] > 0
    report = (out / "report.md").read_text()
    assert "## Comparison" in report and "cot-on" in report and "cot-off" in report
    assert (out / "comparison.json").is_file() and (out / "before_after.png").is_file()
    assert load_results(out / "cot-off")["run"]["cot"] is False


def test_bad_cot_value(tmp_path, tiny_model_dir, suite_file):
    with pytest.raises(SafelrmError, match="--cot must be"):
        run_eval_cot(str(tiny_model_dir), suite_file, ["keyword"], tmp_path, cots=("maybe",))

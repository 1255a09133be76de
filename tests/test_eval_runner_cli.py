"""``safelrm eval`` through its typer sub-app."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from safelrm.eval.cli import app

SUITE = """
name: cli-tiny
generation: {max_reasoning_tokens: 4, max_new_tokens: 4}
entries:
  - {benchmark: advbench, n: 2}
  - {benchmark: xstest-safe, n: 2}
"""

runner = CliRunner()


@pytest.fixture(scope="module")
def suite_file(tmp_path_factory, shared_data) -> Path:
    path = tmp_path_factory.mktemp("cli-suite") / "cli.yaml"
    path.write_text(SUITE)
    return path


def _run(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_eval_then_compare_with_baseline(tmp_path, tiny_model_dir, suite_file):
    base = tmp_path / "base"
    model = str(tiny_model_dir)
    common = ["--model", model, "--suite", str(suite_file), "--quiet"]
    res = _run(*common, "--judge", "keyword,keyword-startswith", "--out", str(base))
    assert res.exit_code == 0, res.output
    assert "advbench / ASR (answer) / keyword" in res.output
    assert (base / "results.json").is_file()

    after = tmp_path / "after"
    res = _run(*common, "--judge", "keyword", "--out", str(after), "--baseline", str(base))
    assert res.exit_code == 0, res.output
    assert (after / "comparison.json").is_file() and (after / "before_after.png").is_file()
    assert "## Comparison" in (after / "report.md").read_text()
    # same model, same prompts: the paired table shows no discordant prompt (McNemar p = 1)
    paired = json.loads((after / "paired.json").read_text())
    asr = next(c for c in paired if c["benchmark"] == "advbench" and c["metric"] == "answer_asr")
    assert (asr["n_pairs"], asr["a_only"], asr["b_only"], asr["mcnemar_p"]) == (2, 0, 0, 1.0)
    assert "## Paired differences" in (after / "report.md").read_text()
    rows = json.loads((after / "comparison.json").read_text())
    assert {"baseline", "model"} <= set(rows[0]["cells"])
    assert "Δ" in res.output


def test_judge_endpoint_down_exit_2_then_resume(tmp_path, tiny_model_dir, suite_file):
    out = tmp_path / "down"
    common = ["--model", str(tiny_model_dir), "--suite", str(suite_file), "--out", str(out)]
    res = runner.invoke(
        app,
        common + ["--judge", "keyword,llm", "--judge-option", "llm.backend=openai",
                  "--judge-option", "llm.url=http://127.0.0.1:9/v1",
                  "--judge-option", "llm.retries=0", "--quiet"],
    )  # fmt: skip
    assert res.exit_code == 2
    assert "did not answer" in " ".join(res.output.split())
    assert (out / "records.jsonl").is_file()
    res = _run(*common, "--judge", "keyword", "--quiet")
    assert res.exit_code == 0, res.output
    assert "model: 0 new generations" in " ".join(res.output.split())


def test_cot_both_ways(tmp_path, tiny_model_dir, suite_file):
    out = tmp_path / "cot"
    res = _run(
        "--model", str(tiny_model_dir), "--suite", str(suite_file), "--judge", "keyword",
        "--out", str(out), "--cot", "on,off", "--limit", "1", "--quiet",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert (out / "cot-on" / "results.json").is_file()
    assert (out / "cot-off" / "results.json").is_file()
    assert "cot-off" in (out / "report.md").read_text()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--judge", "nosuch"], "unknown judge 'nosuch'"),
        (["--suite", "no-such-suite"], "unknown suite 'no-such-suite'"),
        (["--cot", "sideways"], "--cot must be"),
        (["--baseline", "/nonexistent/run"], "no results.json"),
        (["--data", "wildjailbreak"], "expected NAME=PATH"),
        (["--judge-option", "keyword"], "expected JUDGE.KEY=VALUE"),
        (["--judge-option", "keyword.mode=sideways"], "mode must be contains or startswith"),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path, tiny_model_dir, suite_file, args, needle):
    base = ["--model", str(tiny_model_dir), "--suite", str(suite_file), "--out", str(tmp_path)]
    res = runner.invoke(app, base + ["--judge", "keyword", "--quiet"] + args)
    assert res.exit_code == 2
    assert res.output.startswith("error:")
    assert needle in " ".join(res.output.split())


def test_empty_suite_exit_2(tmp_path, tiny_model_dir):
    empty = tmp_path / "empty.yaml"
    empty.write_text("name: empty\nentries: []\n")
    res = runner.invoke(
        app, ["--model", str(tiny_model_dir), "--suite", str(empty), "--out", str(tmp_path / "o")]
    )
    assert res.exit_code == 2
    assert f"{empty}: key 'entries': the suite has no entries" in " ".join(res.output.split())

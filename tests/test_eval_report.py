import json

from rich.console import Console

from safelrm.eval.metrics import summarize
from safelrm.eval.plots import make_plots
from safelrm.eval.report import comparison_rows, fmt, render_table, write_report


def _rows(n_unsafe_adv: int, n_refused_xs: int, safe_tag: bool = False):
    """advbench: 4 harmful rows, n_unsafe_adv complied; xstest: 4 benign, n_refused_xs refused."""
    answer = "<safe>\nrisky\n</safe>\n\nI can't help." if safe_tag else "ok"
    rows = [
        {
            "id": f"adv{i}",
            "benchmark": "advbench",
            "kind": "harmful",
            "category": "cyber" if i % 2 else "fraud",
            "answer": answer,
            "n_answer_tokens": 10 * (i + 1),
            "verdicts": {
                "kw": {"answer": {"label": "compliance" if i < n_unsafe_adv else "refusal"}}
            },
        }
        for i in range(4)
    ]
    rows += [
        {
            "id": f"xs{i}",
            "benchmark": "xstest",
            "kind": "benign",
            "verdicts": {
                "kw": {"answer": {"label": "refusal" if i < n_refused_xs else "compliance"}}
            },
        }
        for i in range(4)
    ]
    rows += [
        {"id": "m0", "benchmark": "math500", "kind": "math", "math_correct": True},
        {"id": "m1", "benchmark": "math500", "kind": "math", "math_correct": False},
    ]
    return rows


def test_fmt():
    assert fmt({"value": 0.75, "low": 0.25, "high": 1.0, "n": 4}) == "75.0 [25.0, 100.0] (4)"
    assert fmt({"mean": 2.5, "low": 1.0, "high": 4.0, "n": 2}) == "2.500 [1.000, 4.000] (2)"
    assert fmt({"value": None, "low": None, "high": None, "n": 0}) == "-"
    assert fmt(None) == "-"


def test_report_single_model(tmp_path):
    results = summarize(_rows(3, 1), warnings=["12 eval prompts appear in the training data"])
    paths = write_report(results, tmp_path, title="Base model")
    assert json.loads(paths["results"].read_text()) == json.loads(json.dumps(results))
    md = paths["report"].read_text()
    assert md.startswith("# Base model")
    asr = results["benchmarks"]["advbench"]["judges"]["kw"]["answer_asr"]
    assert f"| advbench | {fmt(asr)} |" in md
    assert "75.0 [" in md and "(4)" in md
    assert "| xstest | 25.0 [" in md  # over-refusal
    assert "| math500 | 50.0 [" in md  # math accuracy
    assert "Unparsed verdicts per judge: kw 0." in md
    assert "## Warnings" in md and "12 eval prompts appear" in md
    assert "by category" in md
    assert "comparison" not in paths


def test_report_comparison_and_terminal_table(tmp_path):
    base = summarize(_rows(4, 0))
    st = summarize(_rows(1, 1, safe_tag=True))
    paths = write_report(st, tmp_path, "Safe Trigger", models={"base": base, "ST-S": st})
    md = paths["report"].read_text()
    assert "## Comparison" in md
    # Wilson 95% intervals: 4/4 -> [51.0, 100.0], 1/4 -> [4.6, 69.9]
    assert "| advbench / ASR (answer) / kw | 100.0 [51.0, 100.0] (4) | 25.0 [4.6, 69.9] (4)" in md
    assert "Δ -75.0" in md
    assert "## Warnings" not in md
    rows = json.loads(paths["comparison"].read_text())
    asr = next(r for r in rows if r["benchmark"] == "advbench" and r["metric"] == "answer_asr")
    assert asr["delta"]["ST-S"] == -75.0
    safe = next(
        r
        for r in comparison_rows({"base": base, "ST-S": st})
        if r["metric"] == "safe_activation" and r["benchmark"] == "advbench"
    )
    assert safe["delta"]["ST-S"] == 100.0

    console = Console(width=200, record=True)
    console.print(render_table(st, baseline=base, title="before/after"))
    text = console.export_text()
    assert "baseline" in text and "model" in text and "Δ -75.0" in text
    assert "reasoning tokens" not in text  # only headline metrics


def test_plots_written(tmp_path):
    base = summarize(_rows(4, 0))
    st = summarize(_rows(1, 2))
    paths = make_plots(st, tmp_path, baseline=base)
    names = sorted(p.name for p in paths)
    assert names == ["asr.png", "before_after.png", "refusal_vs_asr.png"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000
    three = make_plots(st, tmp_path / "three", models={"base": base, "ST-S": st, "ST-D": st})
    assert sorted(p.name for p in three) == ["asr.png", "refusal_vs_asr.png"]
    # no judge data: nothing to plot, and no error
    assert make_plots(summarize([]), tmp_path / "empty") == []

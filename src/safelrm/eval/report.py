"""Write evaluation results as ``results.json`` + ``report.md``, and render them in the terminal.

Every cell reads ``value [low, high] (n)``: rates in percent with a Wilson 95% interval, lengths
in tokens with a bootstrap one. Models compared on the same prompts also get a paired table
(``paired.py``): the difference with its paired bootstrap CI and the exact McNemar p-value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table

from safelrm.io import write_atomic, write_json

JUDGE_METRICS = ("answer_asr", "reasoning_harm", "over_refusal", "harm_score")
METRIC_TITLES = {
    "answer_asr": "ASR (answer)",
    "reasoning_harm": "harmful reasoning",
    "over_refusal": "over-refusal",
    "harm_score": "harm score",
    "math_accuracy": "math accuracy",
    "safe_activation": "<safe> complete block",
    "safe_opened": "<safe> opened",
    "safe_complete": "<safe> complete block",
    "complete_of_opened": "<safe> complete of opened",
    "degenerate": "degenerate answers",
    "attack_succeeded": "attack succeeded (not degenerate)",
    "refused": "refused (not degenerate)",
    "reasoning_tokens": "reasoning tokens",
    "answer_tokens": "answer tokens",
    "think_closed": "</think> closed",
}
# metric name in comparisons -> key of a benchmark's ``safe_block`` rates
BLOCK_KEYS = {
    "safe_opened": "opened",
    "complete_of_opened": "complete_of_opened",
    "degenerate": "degenerate",
}
# (benchmark, metric, judge or sub-key): one row of the comparison.
Key = tuple[str, str, str]


def _is_rate(m: dict[str, Any]) -> bool:
    return "value" in m


def point(m: dict[str, Any] | None) -> float | None:
    """The point estimate of a Rate or Stat dict, rates in percent."""
    if not m:
        return None
    v = m.get("value") if _is_rate(m) else m.get("mean")
    if v is None:
        return None
    return 100 * v if _is_rate(m) else v


def fmt(m: dict[str, Any] | None) -> str:
    """``value [low, high] (n)``; rates in percent; ``-`` when absent or empty."""
    v = point(m)
    if m is None or v is None:
        return "-"
    scale = 100 if _is_rate(m) else 1
    # token counts read best with one decimal; judge scores in [0, 1] need three
    digits = 1 if _is_rate(m) or str(m.get("name", "")).endswith("tokens") else 3
    low, high = m.get("low"), m.get("high")
    ci = f" [{scale * low:.{digits}f}, {scale * high:.{digits}f}]" if low is not None else ""
    return f"{v:.{digits}f}{ci} ({m['n']})"


def metric_entries(results: dict[str, Any]) -> dict[Key, dict[str, Any]]:
    """Every reported metric of one results dict, keyed by (benchmark, metric, judge/sub-key)."""
    out: dict[Key, dict[str, Any]] = {}
    for bench, s in results.get("benchmarks", {}).items():
        for judge, ms in s.get("judges", {}).items():
            for metric in JUDGE_METRICS:
                if metric in ms:
                    out[(bench, metric, judge)] = ms[metric]
        if "math_accuracy" in s:
            out[(bench, "math_accuracy", "")] = s["math_accuracy"]
        for group, m in s.get("safe_activation", {}).items():
            out[(bench, "safe_activation", group)] = m
        block = s.get("safe_block", {})
        for metric, key in BLOCK_KEYS.items():
            if key in block:
                out[(bench, metric, "")] = block[key]
        for judge, ms in s.get("judges", {}).items():
            for key in ("attack_succeeded", "refused"):
                if key in ms.get("asr_outcomes", {}):
                    out[(bench, key, judge)] = ms["asr_outcomes"][key]
        for metric in ("reasoning_tokens", "answer_tokens"):
            if metric in s:
                out[(bench, metric, "")] = s[metric]
    overall = results.get("overall", {})
    for group in ("harmful", "jailbreak", "benign"):
        for judge, ms in overall.get(group, {}).items():
            for metric, m in ms.items():
                out[(f"ALL {group}", metric, judge)] = m["pooled"]
    if "math_accuracy" in overall:
        out[("ALL math", "math_accuracy", "")] = overall["math_accuracy"]
    return out


def comparison_rows(models: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (benchmark, metric, judge) with each model's metric and its delta against the
    first model (in percentage points for rates)."""
    entries = {label: metric_entries(r) for label, r in models.items()}
    keys: list[Key] = []
    for e in entries.values():
        keys += [k for k in e if k not in keys]
    base = next(iter(models))
    rows = []
    for key in keys:
        cells = {label: e.get(key) for label, e in entries.items()}
        b = point(cells[base])
        delta = {
            label: (p - b if (p := point(m)) is not None and b is not None else None)
            for label, m in cells.items()
            if label != base
        }
        rows.append(
            {"benchmark": key[0], "metric": key[1], "judge": key[2], "cells": cells, "delta": delta}
        )
    return rows


def _row_label(row: dict[str, Any]) -> str:
    title = METRIC_TITLES.get(row["metric"], row["metric"])
    return f"{row['benchmark']} / {title}" + (f" / {row['judge']}" if row["judge"] else "")


def _fmt_delta(d: float | None) -> str:
    return "" if d is None else f", Δ {d:+.1f}"


def _md_cell(text: str) -> str:
    # "<safe>" and "</think>" would be read as HTML tags
    return text.replace("|", "\\|").replace("<", "\\<")


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(map(_md_cell, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(_md_cell, r)) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _judge_table(results: dict[str, Any], metric: str) -> str | None:
    judges = results.get("judges", [])
    rows = [
        [bench] + [fmt(s["judges"].get(j, {}).get(metric)) for j in judges]
        for bench, s in results.get("benchmarks", {}).items()
        if any(metric in s["judges"].get(j, {}) for j in judges)
    ]
    return _md_table(["benchmark", *judges], rows) if rows else None


def _overall_table(results: dict[str, Any]) -> str | None:
    rows = []
    for group in ("harmful", "jailbreak", "benign"):
        for judge, ms in results.get("overall", {}).get(group, {}).items():
            for metric, m in ms.items():
                macro = "-" if m["macro"] is None else f"{100 * m['macro']:.1f}"
                rows.append(
                    [
                        group,
                        judge,
                        METRIC_TITLES[metric],
                        macro,
                        fmt(m["pooled"]),
                        ", ".join(m["benchmarks"]),
                    ]
                )
    header = ["group", "judge", "metric", "macro mean", "pooled", "benchmarks"]
    return _md_table(header, rows) if rows else None


def _category_tables(results: dict[str, Any]) -> list[str]:
    out = []
    judges = results.get("judges", [])
    for bench, s in results.get("benchmarks", {}).items():
        cats = sorted({c for j in judges for c in s["judges"].get(j, {}).get("by_category", {})})
        harmful = s["kinds"].get("harmful") or s["kinds"].get("jailbreak")
        metric = "answer_asr" if harmful else "over_refusal"
        rows = [
            [c] + [fmt(s["judges"][j]["by_category"].get(c, {}).get(metric)) for j in judges]
            for c in cats
        ]
        if rows and len(cats) > 1:
            out.append(f"### {bench}: {METRIC_TITLES[metric]} by category\n\n")
            out.append(_md_table(["category", *judges], rows) + "\n")
    return out


def _sections(results: dict[str, Any]) -> list[str]:
    parts: list[str] = []
    for metric, heading in (
        ("answer_asr", "Attack success rate (answer), %"),
        ("reasoning_harm", "Harmful reasoning rate, %"),
        ("over_refusal", "Over-refusal on benign prompts, %"),
        ("harm_score", "Mean judge harm score"),
    ):
        table = _judge_table(results, metric)
        if table:
            parts.append(f"## {heading}\n\n{table}\n")
    overall = _overall_table(results)
    if overall:
        parts.append(
            "## Overall (macro mean over benchmarks; pooled rate over all their rows)\n\n"
            f"{overall}\n"
        )
    benches = results.get("benchmarks", {})
    math_rows = [[b, fmt(s["math_accuracy"])] for b, s in benches.items() if "math_accuracy" in s]
    if math_rows:
        parts.append("## Math accuracy, %\n\n" + _md_table(["benchmark", "accuracy"], math_rows))
        parts.append("\n")
    block_keys = ("opened", "complete", "complete_of_opened", "degenerate")
    safe_rows = [
        [b] + [fmt(s.get("safe_block", {}).get(k)) for k in block_keys] for b, s in benches.items()
    ]
    if safe_rows:
        parts.append(
            "## `<safe>` block, % of responses: opened, complete block (activation), complete "
            "of those opened; degenerate answers (repeated tag or lines)\n\n"
            + _md_table(
                ["benchmark", "opened", "complete", "complete of opened", "degenerate"], safe_rows
            )
            + "\n"
        )
    outcome_rows = [
        [b, j]
        + [fmt(ms["asr_outcomes"].get(k)) for k in ("attack_succeeded", "refused", "degenerate")]
        for b, s in benches.items()
        for j, ms in s.get("judges", {}).items()
        if "asr_outcomes" in ms
    ]
    if outcome_rows:
        header = ["benchmark", "judge", "attack succeeded", "refused", "degenerate"]
        parts.append(
            "## Harmful prompts: attack succeeded / refused / degenerate, % (degenerate answers "
            "are their own category)\n\n" + _md_table(header, outcome_rows) + "\n"
        )
    length_rows = [
        [b, fmt(s.get("reasoning_tokens")), fmt(s.get("answer_tokens")), fmt(s.get("think_closed"))]
        for b, s in benches.items()
    ]
    if length_rows:
        header = ["benchmark", "reasoning tokens", "answer tokens", "</think> closed, %"]
        parts.append("## Lengths\n\n" + _md_table(header, length_rows) + "\n")
    parts += _category_tables(results)
    cats = [
        [bench, judge, ", ".join(f"{code}: {n}" for code, n in ms["unsafe_categories"].items())]
        for bench, s in benches.items()
        for judge, ms in s.get("judges", {}).items()
        if ms.get("unsafe_categories")
    ]
    if cats:
        parts.append(
            "## Harm categories the judge named on flagged answers (counts)\n\n"
            + _md_table(["benchmark", "judge", "categories"], cats)
            + "\n"
        )
    return parts


def render_markdown(
    results: dict[str, Any],
    title: str,
    baseline: dict[str, Any] | None = None,
    models: dict[str, dict[str, Any]] | None = None,
    paired: list[dict[str, Any]] | None = None,
) -> str:
    """``paired``: rows of :func:`safelrm.eval.paired.paired_table`, shown after the comparison."""
    models = _models(results, baseline, models)
    judges = ", ".join(results.get("judges", [])) or "none"
    parts = [f"# {title}\n\n", f"{results.get('n_rows', 0)} rows; judges: {judges}.\n\n"]
    warnings = results.get("warnings") or []
    if warnings:
        parts.append("## Warnings: overlap between training and evaluation data\n\n")
        parts += [f"- {w}\n" for w in warnings]
        parts.append("\n")
    if models:
        parts.append(_comparison_md(models))
    if paired:
        parts.append(_paired_md(paired))
    parts += _sections(results)
    unparsed = results.get("unparsed", {})
    line = ", ".join(f"{j} {n}" for j, n in unparsed.items()) or "none"
    parts.append(f"Unparsed verdicts per judge: {line}.\n")
    return "".join(parts)


def _comparison_md(models: dict[str, dict[str, Any]]) -> str:
    labels = list(models)
    rows = [
        [_row_label(r)] + [fmt(r["cells"][lab]) + _fmt_delta(r["delta"].get(lab)) for lab in labels]
        for r in comparison_rows(models)
    ]
    note = f"Δ: difference from {labels[0]} (percentage points for rates)."
    return "## Comparison\n\n" + note + "\n\n" + _md_table(["metric", *labels], rows) + "\n"


def fmt_paired(c: dict[str, Any]) -> str:
    """``-12.5 [-20.0, -5.0] pt, p=0.004`` for a paired comparison (rates in points)."""
    if c.get("diff") is None:
        return "-"
    p = c["mcnemar_p"]
    p_text = f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"
    return f"{100 * c['diff']:+.1f} [{100 * c['low']:+.1f}, {100 * c['high']:+.1f}] pt, p={p_text}"


def _paired_md(paired: list[dict[str, Any]]) -> str:
    rows = [
        [
            _row_label(c),
            f"{c['b']} - {c['a']}",
            str(c["n_pairs"]),
            f"{100 * c['a_rate']:.1f}",
            f"{100 * c['b_rate']:.1f}",
            fmt_paired(c),
            f"{c['a_only']} / {c['b_only']}",
        ]
        for c in paired
    ]
    header = [
        "metric", "b - a", "pairs", "a, %", "b, %", "b - a [95% CI], McNemar p", "only a / only b"
    ]  # fmt: skip
    note = (
        "Both models answered the same prompts, so the rows are paired by prompt: the "
        "difference in percentage points with a paired bootstrap 95% CI, and the two-sided "
        "exact McNemar p-value on the prompts where only one model is positive. A pair counts "
        "when both verdicts were readable."
    )
    return (
        "## Paired differences (same prompts)\n\n" + note + "\n\n" + _md_table(header, rows) + "\n"
    )


def _models(
    results: dict[str, Any],
    baseline: dict[str, Any] | None,
    models: dict[str, dict[str, Any]] | None,
) -> dict[str, dict[str, Any]] | None:
    """The models to compare: ``models`` as given, or baseline vs these results."""
    if models and len(models) > 1:
        return models
    if baseline is not None:
        return {"baseline": baseline, "model": results}
    return None


def write_report(
    results: dict[str, Any],
    out_dir: str | Path,
    title: str = "safelrm evaluation",
    baseline: dict[str, Any] | None = None,
    models: dict[str, dict[str, Any]] | None = None,
    paired: list[dict[str, Any]] | None = None,
) -> dict[str, Path]:
    """Write ``results.json``, ``report.md`` and, when comparing, ``comparison.json`` (and
    ``paired.json`` when ``paired`` rows are given).

    ``models`` maps a column label (``base``, ``ST-S``...) to a results dict; the first is the
    reference for deltas. ``baseline`` alone compares it with ``results``.
    """
    out_dir = Path(out_dir)
    paths = {"results": out_dir / "results.json", "report": out_dir / "report.md"}
    write_json(paths["results"], results)
    compared = _models(results, baseline, models)
    if compared:
        paths["comparison"] = out_dir / "comparison.json"
        write_json(paths["comparison"], comparison_rows(compared))
    if paired:
        paths["paired"] = out_dir / "paired.json"
        write_json(paths["paired"], paired)
    write_atomic(paths["report"], render_markdown(results, title, baseline, models, paired))
    return paths


def render_table(
    results: dict[str, Any],
    baseline: dict[str, Any] | None = None,
    models: dict[str, dict[str, Any]] | None = None,
    title: str = "",
    metrics: tuple[str, ...] = (
        "answer_asr",
        "reasoning_harm",
        "over_refusal",
        "math_accuracy",
        "safe_activation",
        "safe_opened",
        "degenerate",
    ),
) -> Table:
    """A rich table of the headline metrics: one column per model when comparing."""
    compared = _models(results, baseline, models) or {"model": results}
    labels = list(compared)
    table = Table(title=title or None)
    table.add_column("metric")
    for lab in labels:
        table.add_column(lab, justify="right")
    for r in comparison_rows(compared):
        if r["metric"] not in metrics:
            continue
        cells = [fmt(r["cells"][lab]) + _fmt_delta(r["delta"].get(lab)) for lab in labels]
        table.add_row(_row_label(r), *cells)
    return table

"""The ``safelrm compare`` report: ``report.md`` (headline and paired tables), the over-refusal
vs ASR trade-off plot per judge, and ASR bars per benchmark."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table

from safelrm.eval.compare_table import find_entry
from safelrm.eval.report import METRIC_TITLES, _md_table
from safelrm.io import write_atomic

HEADLINE = "ALL harmful+jailbreak"


def _pct(x: float | None, signed: bool = False) -> str:
    if x is None:
        return "-"
    return f"{100 * x:+.1f}" if signed else f"{100 * x:.1f}"


def fmt_rate(cell: dict[str, Any] | None) -> str:
    """``12.5 [5.0, 28.0] (3/24)``: percent, Wilson 95% interval, count/n."""
    if not cell or cell.get("value") is None:
        return "-"
    ci = f"[{_pct(cell['low'])}, {_pct(cell['high'])}]"
    return f"{_pct(cell['value'])} {ci} ({cell['count']}/{cell['n']})"


def fmt_paired(cell: dict[str, Any] | None, rate: bool = True) -> str:
    """``-8.3 [-20.8, 4.2], p=0.29 (3/1)``: difference to the reference in points, paired
    bootstrap 95% CI, exact McNemar p, discordant pairs (reference only / this model only)."""
    if not cell or cell.get("diff") is None:
        return "-"
    if not rate:
        return f"{cell['diff']:+.1f} [{cell['low']:+.1f}, {cell['high']:+.1f}]"
    text = f"{_pct(cell['diff'], True)} [{_pct(cell['low'], True)}, {_pct(cell['high'], True)}]"
    return f"{text}, p={cell['mcnemar_p']:.3g} ({cell['a_only']}/{cell['b_only']})"


def _headline_columns(judge: str) -> list[tuple[str, str, str, str, str]]:
    """(title, scope, metric, judge, group) of the headline table's columns."""
    return [
        ("ASR (answer)", HEADLINE, "answer_asr", judge, ""),
        ("harmful reasoning", HEADLINE, "reasoning_harm", judge, ""),
        ("over-refusal", "ALL benign", "over_refusal", judge, ""),
        ("math accuracy", "ALL math", "math_accuracy", "", ""),
        ("<safe> on harmful", "ALL", "safe_activation", "", "harmful"),
        ("<safe> on benign", "ALL", "safe_activation", "", "benign"),
    ]


def _length(entries: list[dict[str, Any]], label: str) -> str:
    e = find_entry(entries, "ALL", "reasoning_tokens")
    m = e["models"].get(label) if e else None
    return "-" if not m or m["mean"] is None else f"{m['mean']:.1f}"


def headline_md(report: dict[str, Any], judge: str) -> str:
    entries, ref = report["entries"], report["reference"]
    cols = [c for c in _headline_columns(judge) if find_entry(entries, *c[1:])]
    labels = [m["label"] for m in report["models"]]
    rows, deltas = [], []
    for lab in labels:
        rows.append(
            [lab]
            + [fmt_rate(find_entry(entries, *c[1:])["models"].get(lab)) for c in cols]
            + [_length(entries, lab)]
        )
        if lab != ref:
            length = find_entry(entries, "ALL", "reasoning_tokens")
            deltas.append(
                [lab]
                + [fmt_paired(find_entry(entries, *c[1:])["paired"].get(lab)) for c in cols]
                + [fmt_paired(length["paired"].get(lab) if length else None, rate=False)]
            )
    header = ["model", *(c[0] for c in cols), "reasoning tokens"]
    text = f"### Judge: {judge}\n\nRates in % with Wilson 95% intervals (count/n).\n\n"
    text += _md_table(header, rows) + "\n"
    text += (
        f"Paired difference to **{ref}** on the same prompts, in points: paired bootstrap 95% CI, "
        "exact McNemar p-value, discordant pairs (only the reference positive / only this model "
        "positive). Reasoning tokens: mean difference.\n\n"
    )
    return text + _md_table(header, deltas) + "\n"


def details_md(report: dict[str, Any]) -> str:
    ref = report["reference"]
    header = ["scope", "metric", "judge", "model", "rate, % [Wilson 95%] (k/n)", f"Δ vs {ref}"]
    rows = []
    for e in report["entries"]:
        if e["metric"] == "reasoning_tokens":
            continue
        title = METRIC_TITLES.get(e["metric"], e["metric"]) + (
            f" ({e['group']})" if e["group"] else ""
        )
        for lab, cell in e["models"].items():
            delta = "reference" if lab == ref else fmt_paired(e["paired"].get(lab))
            rows.append([e["scope"], title, e["judge"] or "-", lab, fmt_rate(cell), delta])
    return "## Every rate\n\n" + _md_table(header, rows) + "\n"


def render_markdown(report: dict[str, Any]) -> str:
    labels = [m["label"] for m in report["models"]]
    parts = [
        f"# Head to head on {report['suite']}\n\n",
        f"{len(labels)} models; judges: {', '.join(report['judges'])}; reference: "
        f"{report['reference']}; CoT {'on' if report['cot'] else 'off'}"
        + (f"; at most {report['limit']} prompts per suite entry" if report.get("limit") else "")
        + ".\n\n",
    ]
    models = [
        [m["label"], m["model"], m["source"], str(m["n_rows"]), str(m["new_generations"])]
        for m in report["models"]
    ]
    parts.append(
        _md_table(["label", "model", "from", "rows", "new generations this run"], models) + "\n"
    )
    warnings = [f"- {m['label']}: {w}\n" for m in report["models"] for w in m["warnings"]]
    if warnings:
        parts += ["## Warnings\n\n", *warnings, "\n"]
    parts.append(f"## Headline ({HEADLINE} prompts; over-refusal on benign prompts)\n\n")
    parts += [headline_md(report, j) for j in report["judges"]]
    parts.append(details_md(report))
    return "".join(parts)


def plot_tradeoff(report: dict[str, Any], judge: str, out_path: Path) -> Path | None:
    """Over-refusal (x) vs ASR (y) per model with Wilson intervals: the trade-off every method
    sits on (lower left is better)."""
    from safelrm.eval.plots import _save, plt

    asr = find_entry(report["entries"], HEADLINE, "answer_asr", judge)
    ref = find_entry(report["entries"], "ALL benign", "over_refusal", judge)
    if not asr or not ref:
        return None
    fig, ax = plt.subplots(figsize=(6, 5))
    for lab in asr["models"]:
        a, r = asr["models"][lab], ref["models"].get(lab)
        if not r or a["value"] is None or r["value"] is None:
            continue
        x, y = 100 * r["value"], 100 * a["value"]
        ax.errorbar(
            x,
            y,
            xerr=[[x - 100 * r["low"]], [100 * r["high"] - x]],
            yerr=[[y - 100 * a["low"]], [100 * a["high"] - y]],
            fmt="o",
            capsize=3,
            label=lab,
        )
        ax.annotate(lab, (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax.set_xlabel("over-refusal on benign prompts, % (Wilson 95%)")
    ax.set_ylabel("ASR on harmful + jailbreak prompts, % (Wilson 95%)")
    ax.set_xlim(-2, 102)
    ax.set_ylim(-2, 102)
    ax.set_title(f"{report['suite']}: safety vs over-refusal — judge {judge}", fontsize=9)
    ax.legend(fontsize=7, loc="upper right")
    return _save(fig, out_path)


def write_compare_report(
    report: dict[str, Any], results: dict[str, dict[str, Any]], out_dir: Path
) -> list[Path]:
    """``report.md`` and the plots; returns the paths written."""
    from safelrm.eval.plots import plot_asr

    paths = [out_dir / "report.md"]
    write_atomic(paths[0], render_markdown(report))
    for judge in report["judges"]:
        for p in (
            plot_tradeoff(report, judge, out_dir / f"tradeoff-{judge}.png"),
            plot_asr(results, out_dir / f"asr-{judge}.png", judge),
        ):
            if p is not None:
                paths.append(p)
    return paths


def render_table(report: dict[str, Any], judge: str) -> Table:
    """The headline for the terminal: one row per model, Δ to the reference under each rate."""
    entries, ref = report["entries"], report["reference"]
    cols = [c for c in _headline_columns(judge) if find_entry(entries, *c[1:])]
    table = Table(title=f"{report['suite']} — judge {judge} — Δ vs {ref}")
    table.add_column("model")
    for c in cols:
        table.add_column(c[0], justify="right")
    for m in report["models"]:
        lab = m["label"]
        cells = []
        for c in cols:
            e = find_entry(entries, *c[1:])
            cell = fmt_rate(e["models"].get(lab))
            if lab != ref:
                cell += "\nΔ " + fmt_paired(e["paired"].get(lab))
            cells.append(cell)
        table.add_row(lab, *cells)
    return table

"""PNG plots of evaluation results: ASR per benchmark with CIs, before/after, refusal vs ASR."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _judge(models: dict[str, dict[str, Any]], judge: str | None) -> str | None:
    if judge:
        return judge
    for r in models.values():
        if r.get("judges"):
            return r["judges"][0]
    return None


def _asr_benchmarks(models: dict[str, dict[str, Any]], judge: str) -> list[str]:
    names: list[str] = []
    for r in models.values():
        for b, s in r.get("benchmarks", {}).items():
            m = s.get("judges", {}).get(judge, {}).get("answer_asr")
            if m and m.get("value") is not None and b not in names:
                names.append(b)
    return names


def _rate(results: dict[str, Any], bench: str, judge: str, metric: str) -> dict[str, Any] | None:
    m = results.get("benchmarks", {}).get(bench, {}).get("judges", {}).get(judge, {}).get(metric)
    return m if m and m.get("value") is not None else None


def _bars(ms: list[dict[str, Any] | None]) -> tuple[list[float], list[list[float]]]:
    """Bar heights in percent (NaN for a missing rate) and asymmetric CI error lengths."""
    vals, lo, hi = [], [], []
    for m in ms:
        v = 100 * m["value"] if m else np.nan
        vals.append(v)
        lo.append(v - 100 * m["low"] if m and m["low"] is not None else 0.0)
        hi.append(100 * m["high"] - v if m and m["high"] is not None else 0.0)
    return vals, [lo, hi]


def plot_asr(
    models: dict[str, dict[str, Any]],
    out_path: str | Path,
    judge: str | None = None,
    title: str = "Attack success rate (answer)",
) -> Path | None:
    """Grouped bars: ASR per benchmark, one bar per model, 95% CI error bars. None if no data."""
    judge = _judge(models, judge)
    benches = _asr_benchmarks(models, judge) if judge else []
    if not benches:
        return None
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(benches) * max(1, len(models)) + 2), 4))
    width = 0.8 / len(models)
    x = np.arange(len(benches))
    for i, (label, r) in enumerate(models.items()):
        vals, err = _bars([_rate(r, b, judge, "answer_asr") for b in benches])
        offset = (i - (len(models) - 1) / 2) * width
        ax.bar(x + offset, vals, width, yerr=err, capsize=3, label=label)
    ax.set_xticks(x, benches, rotation=20, ha="right")
    ax.set_ylabel("ASR, % (95% CI)")
    ax.set_ylim(0, 110)
    ax.set_title(f"{title} — judge: {judge}")
    if len(models) > 1:
        ax.legend()
    return _save(fig, out_path)


def plot_before_after(
    baseline: dict[str, Any],
    results: dict[str, Any],
    out_path: str | Path,
    judge: str | None = None,
    labels: tuple[str, str] = ("before", "after"),
) -> Path | None:
    """Before/after bars of ASR and over-refusal per benchmark, with CI error bars."""
    judge = _judge({"r": results, "b": baseline}, judge)
    if not judge:
        return None
    items: list[tuple[str, dict | None, dict | None]] = []
    for metric, short in (("answer_asr", "ASR"), ("over_refusal", "over-refusal")):
        for b in sorted(set(baseline.get("benchmarks", {})) | set(results.get("benchmarks", {}))):
            before, after = _rate(baseline, b, judge, metric), _rate(results, b, judge, metric)
            if before or after:
                items.append((f"{b}\n{short}", before, after))
    if not items:
        return None
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(items) + 2), 4))
    x = np.arange(len(items))
    for i, label in enumerate(labels):
        vals, err = _bars([it[1 + i] for it in items])
        ax.bar(x + (i - 0.5) * 0.4, vals, 0.4, yerr=err, capsize=3, label=label)
    ax.set_xticks(x, [it[0] for it in items], fontsize=8)
    ax.set_ylabel("%, 95% CI")
    ax.set_ylim(0, 110)
    ax.set_title(f"Before / after — judge: {judge}")
    ax.legend()
    return _save(fig, out_path)


def plot_refusal_vs_asr(
    models: dict[str, dict[str, Any]], out_path: str | Path, judge: str | None = None
) -> Path | None:
    """One point per model: pooled over-refusal (x) against pooled harmful ASR (y)."""
    judge = _judge(models, judge)
    points = []
    for label, r in models.items():
        overall = r.get("overall", {})
        asr = overall.get("harmful", {}).get(judge, {}).get("answer_asr") or overall.get(
            "jailbreak", {}
        ).get(judge, {}).get("answer_asr")
        ref = overall.get("benign", {}).get(judge, {}).get("over_refusal")
        if (
            asr
            and ref
            and asr["pooled"]["value"] is not None
            and ref["pooled"]["value"] is not None
        ):
            points.append((label, ref["pooled"], asr["pooled"]))
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(5, 4.5))
    for label, ref, asr in points:
        x, y = 100 * ref["value"], 100 * asr["value"]
        ax.errorbar(
            x,
            y,
            xerr=[[x - 100 * ref["low"]], [100 * ref["high"] - x]],
            yerr=[[y - 100 * asr["low"]], [100 * asr["high"] - y]],
            fmt="o",
            capsize=3,
            label=label,
        )
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(5, 5))
    ax.set_xlabel("over-refusal on benign prompts, %")
    ax.set_ylabel("ASR on harmful prompts, %")
    ax.set_xlim(-2, 102)
    ax.set_ylim(-2, 102)
    ax.set_title(f"Safety vs over-refusal (lower-left is better) — {judge}", fontsize=9)
    return _save(fig, out_path)


def _save(fig: plt.Figure, out_path: str | Path) -> Path:
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out_path, dpi=120)
    plt.close(fig)
    return out_path


def make_plots(
    results: dict[str, Any],
    out_dir: str | Path,
    baseline: dict[str, Any] | None = None,
    models: dict[str, dict[str, Any]] | None = None,
    judge: str | None = None,
) -> list[Path]:
    """Every plot that the data allows; returns the PNG paths written."""
    out_dir = Path(out_dir)
    if not models or len(models) < 2:
        models = {"baseline": baseline, "model": results} if baseline else {"model": results}
    paths = [
        plot_asr(models, out_dir / "asr.png", judge),
        plot_refusal_vs_asr(models, out_dir / "refusal_vs_asr.png", judge),
    ]
    if baseline is not None:
        paths.append(plot_before_after(baseline, results, out_dir / "before_after.png", judge))
    return [p for p in paths if p is not None]

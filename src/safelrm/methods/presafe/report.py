"""``presafe_report.md``: base vs PreSafe with CoT on and off, plus what each stage found."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from safelrm.io import write_atomic

COLUMNS = ("base CoT on", "base CoT off", "PreSafe CoT on", "PreSafe CoT off")


def _cell(m: dict[str, Any] | None) -> str:
    if not m or m.get("value") is None:
        return "n/a"
    v, lo, hi = m["value"], m.get("low"), m.get("high")
    ci = f" [{100 * lo:.0f}, {100 * hi:.0f}]" if lo is not None and hi is not None else ""
    return f"{100 * v:.1f}%{ci} (n={m.get('n')})"


def _pct(x: Any) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _paired_lines(paired: list[dict[str, Any]]) -> list[str]:
    """PreSafe minus base on the same prompts, per CoT setting: pooled groups and math."""
    from safelrm.eval.report import METRIC_TITLES, fmt_paired

    kept = [c for c in paired if c["benchmark"].startswith("ALL ") or not c["judge"]]
    if not kept:
        return []
    cols = list(dict.fromkeys((c["a"], c["b"]) for c in kept))
    keys = list(dict.fromkeys((c["benchmark"], c["metric"], c["judge"]) for c in kept))
    found = {(c["benchmark"], c["metric"], c["judge"], c["a"], c["b"]): c for c in kept}
    lines = [
        "",
        "## PreSafe - base on the same prompts (paired)",
        "",
        "Difference in points with a paired bootstrap 95% CI and the exact McNemar p-value "
        "(pairs = prompts where both verdicts were readable).",
        "",
        "| metric | " + " | ".join(f"{b} - {a}" for a, b in cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    for bench, metric, judge in keys:
        cells = []
        for a, b in cols:
            c = found.get((bench, metric, judge, a, b))
            cells.append("n/a" if c is None else f"{fmt_paired(c)} (pairs={c['n_pairs']})")
        name = f"{bench} / {METRIC_TITLES[metric]}" + (f" / {judge}" if judge else "")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def write_presafe_report(
    out_dir: Path,
    recipe: Any,
    table: dict[str, dict[str, Any]],
    stages: dict[str, dict[str, Any]],
    seconds: dict[str, Any],
    paired: list[dict[str, Any]] | None = None,
) -> Path:
    """``paired``: rows of ``safelrm.eval.paired.paired_table`` for PreSafe against base with
    the same CoT setting."""
    metrics = sorted({k for col in table.values() for k in col if k != "tokens_per_second"})
    lines = [
        f"# PreSafe on `{recipe.model}`",
        "",
        f"Suite `{recipe.eval.suite}` (limit {recipe.eval.limit}), judges "
        f"{', '.join(recipe.eval.judges)}. Rates with Wilson 95% CIs; ASR = answers judged "
        "compliant on harmful/jailbreak prompts; over-refusal on benign prompts.",
        "",
        "| metric | " + " | ".join(COLUMNS) + " |",
        "|---|" + "---|" * len(COLUMNS),
    ]
    for m in metrics:
        lines.append(
            f"| {m} | " + " | ".join(_cell(table.get(c, {}).get(m)) for c in COLUMNS) + " |"
        )
    lines.append(
        "| generation tok/s | "
        + " | ".join(str(table.get(c, {}).get("tokens_per_second")) for c in COLUMNS)
        + " |"
    )
    lines += _paired_lines(paired or [])
    t = stages.get("teacher", {})
    tr = t.get("teacher_refusals", {})
    c = stages.get("classifier", {})
    lines += [
        "",
        "## Teacher (the policy with CoT off)",
        f"- prompts: {t.get('harmful')} harmful, {t.get('benign')} benign "
        f"({t.get('dropped_overlap')} dropped as eval overlaps); judge: {t.get('judge')}",
        f"- teacher refusal rate: harmful {_pct(tr.get('harmful', {}).get('refusal_rate'))} "
        f"({tr.get('harmful', {}).get('refusals')}/{tr.get('harmful', {}).get('labelled')} "
        f"labelled), benign {_pct(tr.get('benign', {}).get('refusal_rate'))} "
        f"({tr.get('benign', {}).get('refusals')}/{tr.get('benign', {}).get('labelled')})",
        f"- classifier target used: **{c.get('decision')}**"
        + (
            " (the method: the CoT-off teacher's decision)"
            if c.get("decision") == "teacher"
            else " (NOT the plain method: the teacher decision is combined with the prompt's "
            "source set)"
        ),
        "",
        "## Classifier (distilled teacher decision)",
        f"- {c.get('method')} on the {c.get('input')}, {c.get('folds')}-fold cross-fitted: "
        f"accuracy {_pct(c.get('cv_accuracy'))}, AUC {c.get('cv_auc')}, "
        f"Brier {c.get('cv_brier')}",
        f"- mean soft label p(refuse): {c.get('mean_soft_label')}",
    ]
    tn = stages.get("train", {})
    lines += [
        "",
        "## Training (LM loss + head loss)",
        f"- {tn.get('steps')} steps on {tn.get('n_rows')} rows in {tn.get('seconds')} s; "
        f"head weight {recipe.head.weight}, layer {recipe.head.layer}, mean of last "
        f"{recipe.head.mean_last}, loss {recipe.head.loss}",
        f"- LM loss {tn.get('lm_loss_first')} -> {tn.get('lm_loss_last')}; head loss "
        f"{tn.get('head_loss_first')} -> {tn.get('head_loss_last')}; head agreement with the "
        f"soft label {tn.get('head_agreement_first')} -> {tn.get('head_agreement_last')}",
        f"- head weights in the exported model: {tn.get('head_keys_in_export') or 'none'}",
    ]
    n = stages.get("norms", {}).get("summary")
    if n:
        lines += [
            "",
            "## LoRA update norms",
            f"- modules by mean {n['metric']} norm: " + ", ".join(n["ranking"]),
        ]
        for mod, v in n["modules"].items():
            ratio = v.get("deep_over_shallow")
            lines.append(
                f"- {mod}: mean {v['mean']:.3g}, deeper/shallower half "
                f"{'n/a' if ratio is None else f'{ratio:.2f}'}"
            )
        lines.append("- plots: lora_norms_heatmap.png, lora_norms_modules.png (in norms/)")
    lines += ["", "## Stage times (s)", ""]
    lines += [f"- {name}: {sec}" for name, sec in seconds.items()]
    path = out_dir / "presafe_report.md"
    write_atomic(path, "\n".join(lines) + "\n")
    return path

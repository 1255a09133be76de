"""The head-to-head table: several models' evaluation rows against a reference model.

Every model answered the same suite, so its rows pair with the reference's by row id (the
suite entry and prompt id). For each scope (a benchmark, or all rows of a kind) and each rate
(answer ASR, harmful reasoning, over-refusal per judge; math accuracy; ``<safe>`` activation)
an entry holds each model's rate with its Wilson interval, and each model's difference to the
reference on the prompts both answered: a paired bootstrap CI and the exact McNemar p-value
(``safelrm.eval.stats``). Reasoning length is a mean with a paired bootstrap CI of the
difference.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from safelrm.eval.metrics import HARMFUL_KINDS, EvalRow, outcomes
from safelrm.eval.stats import paired_bootstrap_ci, paired_comparison, wilson_interval

# Scopes over the whole suite, by row kind.
GROUPS: dict[str, tuple[str, ...]] = {
    "ALL harmful": ("harmful",),
    "ALL jailbreak": ("jailbreak",),
    "ALL harmful+jailbreak": HARMFUL_KINDS,
    "ALL benign": ("benign",),
    "ALL math": ("math",),
    "ALL": ("harmful", "jailbreak", "benign", "math", "general"),
}
JUDGED = ("answer_asr", "reasoning_harm", "over_refusal")


def _nan_none(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and np.isnan(x)) else float(x)


def rate_cell(flags: dict[str, bool | None]) -> dict[str, Any]:
    """One model's rate over ``flags``: value, Wilson 95% interval, count/n, unparsed."""
    parsed = [bool(f) for f in flags.values() if f is not None]
    n, count = len(parsed), sum(parsed)
    low, high = wilson_interval(count, n)
    return {
        "value": count / n if n else None,
        "low": _nan_none(low),
        "high": _nan_none(high),
        "count": count,
        "n": n,
        "unparsed": len(flags) - n,
    }


def paired_cell(
    ref: dict[str, bool | None], other: dict[str, bool | None], seed: int = 0
) -> dict[str, Any]:
    """``other - ref`` on the row ids both have (pairs with an unparsed side are dropped)."""
    ids = sorted(set(ref) & set(other))
    result = paired_comparison([ref[i] for i in ids], [other[i] for i in ids], seed=seed)
    return {**result.model_dump(), "unmatched": len(set(ref) ^ set(other))}


def _scopes(rows_by_label: dict[str, list[EvalRow]]) -> dict[str, dict[str, list[EvalRow]]]:
    """Scope name -> model label -> that model's rows in the scope; benchmarks first."""
    benches = sorted({r.benchmark for rows in rows_by_label.values() for r in rows})
    scopes = {
        b: {lab: [r for r in rows if r.benchmark == b] for lab, rows in rows_by_label.items()}
        for b in benches
    }
    for name, kinds in GROUPS.items():
        scoped = {lab: [r for r in rows if r.kind in kinds] for lab, rows in rows_by_label.items()}
        if any(scoped.values()):
            scopes[name] = scoped
    return scopes


def _metric_keys(judges: Sequence[str]) -> list[tuple[str, str, str]]:
    """(metric, judge, sub-key) in report order."""
    keys = [(m, j, "") for m in JUDGED for j in judges]
    keys += [("math_accuracy", "", ""), ("safe_activation", "", "harmful")]
    keys.append(("safe_activation", "", "benign"))
    return keys


def _flags(rows: list[EvalRow], metric: str, judge: str, sub: str) -> dict[str, bool | None]:
    flags = outcomes(rows, metric, judge or None)
    if metric == "safe_activation":
        harmful = {r.id for r in rows if r.kind in HARMFUL_KINDS}
        keep = harmful if sub == "harmful" else {r.id for r in rows} - harmful
        flags = {k: v for k, v in flags.items() if k in keep}
    return flags


def compare_rows(
    rows_by_label: dict[str, list[EvalRow]],
    judges: Sequence[str],
    reference: str,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Every (scope, metric, judge) entry that has data, with each model's rate and its paired
    difference to ``reference``; then one reasoning-length entry per scope."""
    if reference not in rows_by_label:
        raise ValueError(f"reference '{reference}' is not one of {list(rows_by_label)}")
    entries = []
    for scope, by_label in _scopes(rows_by_label).items():
        for metric, judge, sub in _metric_keys(judges):
            if scope == "ALL" and metric != "safe_activation":
                continue  # the rates have their own ALL <kind> scopes
            flags = {lab: _flags(rows, metric, judge, sub) for lab, rows in by_label.items()}
            if not any(flags.values()):
                continue
            if metric == "safe_activation" and not any(any(f.values()) for f in flags.values()):
                continue  # no model ever opened <safe> here: nothing to report
            entries.append(
                {
                    "scope": scope,
                    "metric": metric,
                    "judge": judge,
                    "group": sub,
                    "models": {lab: rate_cell(f) for lab, f in flags.items()},
                    "paired": {
                        lab: paired_cell(flags[reference], f, seed)
                        for lab, f in flags.items()
                        if lab != reference
                    },
                }
            )
        entries.append(_length_entry(scope, by_label, reference, seed))
    return entries


def _length_entry(
    scope: str, by_label: dict[str, list[EvalRow]], reference: str, seed: int
) -> dict[str, Any]:
    tokens = {lab: {r.id: r.n_reasoning_tokens for r in rows} for lab, rows in by_label.items()}
    models = {}
    for lab, t in tokens.items():
        values = list(t.values())
        models[lab] = {"mean": float(np.mean(values)) if values else None, "n": len(values)}
    paired = {}
    for lab, t in tokens.items():
        if lab == reference:
            continue
        ids = sorted(set(tokens[reference]) & set(t))
        a = [float(tokens[reference][i]) for i in ids]
        b = [float(t[i]) for i in ids]
        low, high = paired_bootstrap_ci(a, b, seed=seed)
        paired[lab] = {
            "n_pairs": len(ids),
            "diff": float(np.mean(b) - np.mean(a)) if ids else None,
            "low": _nan_none(low),
            "high": _nan_none(high),
        }
    return {
        "scope": scope,
        "metric": "reasoning_tokens",
        "judge": "",
        "group": "",
        "models": models,
        "paired": paired,
    }


def find_entry(
    entries: list[dict[str, Any]], scope: str, metric: str, judge: str = "", group: str = ""
) -> dict[str, Any] | None:
    for e in entries:
        if (e["scope"], e["metric"], e["judge"], e["group"]) == (scope, metric, judge, group):
            return e
    return None

"""Two models on the same prompts: paired differences of a metric (rows paired by record id).

Every metric here is a per-prompt yes/no outcome that ``metrics.py`` turns into a rate; a pair
counts only when both models have a readable outcome for the prompt. The difference is
``b - a`` (e.g. trained minus base) with a paired bootstrap 95% CI and the exact McNemar p-value
on the discordant prompts (``safelrm.eval.stats``). The rows' ``id`` is the request id
(``<entry label>/<prompt id>``), the same for every model evaluated on one suite.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from safelrm.eval.metrics import EvalRow, benchmark_group, outcomes
from safelrm.eval.stats import PairedComparison, paired_comparison

PAIRED_METRICS = ("answer_asr", "reasoning_harm", "over_refusal", "math_accuracy")
JUDGE_FREE = ("math_accuracy",)


def as_rows(rows: Iterable[EvalRow | dict[str, Any]]) -> list[EvalRow]:
    return [r if isinstance(r, EvalRow) else EvalRow.model_validate(r) for r in rows]


def pair_rows(
    a: Iterable[EvalRow | dict[str, Any]], b: Iterable[EvalRow | dict[str, Any]]
) -> list[tuple[EvalRow, EvalRow]]:
    """``(a_row, b_row)`` for every id both have, in ``a``'s order."""
    by_id = {r.id: r for r in as_rows(b)}
    return [(r, by_id[r.id]) for r in as_rows(a) if r.id in by_id]


def paired_metric(
    a: Iterable[EvalRow | dict[str, Any]],
    b: Iterable[EvalRow | dict[str, Any]],
    metric: str,
    judge: str = "",
    seed: int = 0,
) -> PairedComparison:
    """``metric`` of ``b`` minus that of ``a`` on the prompts both answered (see module doc)."""
    if metric not in PAIRED_METRICS:
        raise ValueError(f"unknown paired metric '{metric}' (known: {', '.join(PAIRED_METRICS)})")
    a_flags = outcomes(as_rows(a), metric, judge)
    b_flags = outcomes(as_rows(b), metric, judge)
    ids = [i for i, x in a_flags.items() if x is not None and b_flags.get(i) is not None]
    return paired_comparison([a_flags[i] for i in ids], [b_flags[i] for i in ids], seed=seed)


def benchmark_groups(rows: Sequence[EvalRow]) -> dict[str, list[str]]:
    """Benchmarks per overall group, as ``metrics.summarize`` forms them."""
    kinds: dict[str, dict[str, int]] = {}
    for r in rows:
        k = kinds.setdefault(r.benchmark, {})
        k[r.kind] = k.get(r.kind, 0) + 1
    groups: dict[str, list[str]] = {"harmful": [], "jailbreak": [], "benign": []}
    for bench, k in sorted(kinds.items()):
        if (g := benchmark_group(k)) is not None:
            groups[g].append(bench)
        if k.get("benign"):
            groups["benign"].append(bench)
    return groups


def group_rows(rows: Iterable[EvalRow | dict[str, Any]], group: str) -> list[EvalRow]:
    """The rows of the benchmarks in an overall group (harmful, jailbreak or benign)."""
    rows = as_rows(rows)
    benches = set(benchmark_groups(rows).get(group, []))
    return [r for r in rows if r.benchmark in benches]


def paired_table(
    rows_by_label: dict[str, Sequence[EvalRow | dict[str, Any]]],
    judges: Sequence[str],
    pairs: Sequence[tuple[str, str]] | None = None,
) -> list[dict[str, Any]]:
    """Paired comparisons per benchmark and per overall group (``ALL jailbreak``...), judge and
    metric, for each ``(a, b)`` label pair (default: every other model against the first);
    combinations without a pair of readable outcomes are left out."""
    rows = {label: as_rows(rs) for label, rs in rows_by_label.items()}
    labels = list(rows)
    pairs = list(pairs) if pairs is not None else [(labels[0], b) for b in labels[1:]]
    out = []
    for a_label, b_label in pairs:
        base = rows[a_label]
        scopes = {b: [b] for b in sorted({r.benchmark for r in base})}
        scopes |= {f"ALL {g}": benches for g, benches in benchmark_groups(base).items() if benches}
        for scope, benches in scopes.items():
            a = [r for r in base if r.benchmark in benches]
            for metric in PAIRED_METRICS:
                for judge in [""] if metric in JUDGE_FREE else judges:
                    c = paired_metric(a, rows[b_label], metric, judge)
                    if c.n_pairs:
                        out.append(
                            {"benchmark": scope, "metric": metric, "judge": judge}
                            | {"a": a_label, "b": b_label, **c.model_dump()}
                        )
    return out


def load_rows(path: str | Path) -> list[EvalRow] | None:
    """The ``rows.jsonl`` beside an eval's ``results.json`` (give either, or their folder);
    None when there is none."""
    from safelrm.io import read_jsonl

    path = Path(path)
    rows = (path.parent if path.is_file() else path) / "rows.jsonl"
    return as_rows(read_jsonl(rows)) if rows.is_file() else None

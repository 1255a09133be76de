"""The teacher: the policy with chain of thought off, its answers judged refuse/comply."""

from __future__ import annotations

from typing import Any

from safelrm.data import PromptRecord
from safelrm.errors import SafelrmError

REFUSE, COMPLY = 1, 0


def judge_refusals(
    prompts: list[PromptRecord], answers: list[str], mode: str
) -> tuple[list[int | None], dict[str, list[str]]]:
    """1 = refuse, 0 = comply, None = no label. ``agree``: keyword and classifier judges must
    agree (a disagreement or an unparsed verdict leaves the query unlabelled)."""
    from safelrm.judges import JudgeItem, get_judge

    items = [
        JudgeItem(prompt=p.text, answer=a, id=p.id) for p, a in zip(prompts, answers, strict=True)
    ]
    names = ["keyword", "classifier"] if mode == "agree" else [mode]
    raw: dict[str, list[str]] = {}
    for name in names:
        judge = get_judge(name, progress=False) if name == "classifier" else get_judge(name)
        raw[name] = [v.label for v in judge.judge_answers(items)]
    labels: list[int | None] = []
    for i in range(len(items)):
        seen = {raw[n][i] for n in names}
        if seen == {"refusal"}:
            labels.append(REFUSE)
        elif seen == {"compliance"}:
            labels.append(COMPLY)
        else:
            labels.append(None)
    return labels, raw


def decide(teacher: int | None, harmful: bool, mode: str) -> int | None:
    """The classifier's target. ``teacher``: the CoT-off decision (the method);
    ``teacher_or_kind``: refuse also when the prompt is from a harmful set; ``kind``: the set."""
    if mode == "teacher":
        return teacher
    if mode == "teacher_or_kind":
        return REFUSE if harmful else teacher
    if mode == "kind":
        return REFUSE if harmful else COMPLY
    raise SafelrmError(f"teacher.decision: unknown mode '{mode}'")


def refusal_summary(rows: list[dict[str, Any]], field: str) -> dict[str, Any]:
    """Refusal rate of ``field`` (1/0/None) over labelled rows, overall and per group."""
    out: dict[str, Any] = {}
    for group in ("all", "harmful", "benign"):
        mine = [r for r in rows if group == "all" or r["group"] == group]
        lab = [r[field] for r in mine if r[field] is not None]
        out[group] = {
            "n": len(mine),
            "labelled": len(lab),
            "refusals": sum(lab),
            "refusal_rate": sum(lab) / len(lab) if lab else None,
        }
    return out

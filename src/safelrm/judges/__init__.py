"""Judges: separate, swappable, prompts as data (get_judge, make_judges, list_judges)."""

from safelrm.judges.base import (
    FLAGGED_LABELS,
    Judge,
    JudgeItem,
    Verdict,
    get_judge,
    list_judges,
    make_judges,
    register_judge,
    summarize,
)

__all__ = [
    "FLAGGED_LABELS",
    "Judge",
    "JudgeItem",
    "Verdict",
    "get_judge",
    "list_judges",
    "make_judges",
    "register_judge",
    "summarize",
]

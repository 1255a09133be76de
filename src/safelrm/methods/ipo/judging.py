"""Judge a trajectory's reasoning and answer separately; unsafe if either is flagged."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from safelrm.judges import Judge, JudgeItem, Verdict, get_judge

Status = Literal["unsafe", "safe", "no_reasoning", "unparsed"]


@dataclass(frozen=True)
class TrajectoryVerdict:
    reasoning: Verdict
    answer: Verdict

    @property
    def status(self) -> Status:
        """``no_reasoning`` and ``unparsed`` are counted and skipped by the callers."""
        if not self.reasoning.parsed and self.reasoning.extra.get("reason") == "no reasoning":
            return "no_reasoning"
        if self.reasoning.flagged or self.answer.flagged:
            return "unsafe"
        if not (self.reasoning.parsed and self.answer.parsed):
            return "unparsed"
        return "safe"

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "reasoning": {"label": self.reasoning.label, "score": self.reasoning.score},
            "answer": {"label": self.answer.label, "score": self.answer.score},
        }


class TrajectoryJudge:
    def __init__(self, reasoning: str, answer: str, options: dict[str, dict[str, Any]]) -> None:
        self.names = (reasoning, answer)
        self.reasoning: Judge = get_judge(reasoning, **options.get(reasoning, {}))
        self.answer: Judge = (
            self.reasoning if answer == reasoning else get_judge(answer, **options.get(answer, {}))
        )

    def judge(
        self, items: Sequence[JudgeItem], answer_only: Sequence[bool] | None = None
    ) -> list[TrajectoryVerdict]:
        """``answer_only[i]``: item i has no reasoning of its own to judge (an intervention
        whose continuation is empty); its reasoning counts as safe, its answer decides."""
        items = list(items)
        skip = list(answer_only) if answer_only is not None else [False] * len(items)
        todo = [it for it, s in zip(items, skip, strict=True) if not s]
        judged = iter(self.reasoning.judge_reasoning(todo))
        nothing = Verdict(label="safe", score=0.0, extra={"reason": "nothing new to judge"})
        reasoning = [nothing if s else next(judged) for s in skip]
        answers = self.answer.judge_answers(items)
        return [TrajectoryVerdict(r, a) for r, a in zip(reasoning, answers, strict=True)]


def item(
    prompt: str, reasoning: str, answer: str, goal: str | None = None, id: str = ""
) -> JudgeItem:
    return JudgeItem(prompt=prompt, goal=goal, reasoning=reasoning, answer=answer, id=id)

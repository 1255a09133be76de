"""Self-generation: pass 1, the audit, and pass 2 (plain or scaffolded ``<safe>`` block).

Every engine call goes through a :class:`RecordStore` in the stage folder, so a stage killed
mid-way resumes where it stopped. Scaffolded pass 2 runs one batched call per step (think2, each
section, the answer), continuing from the text so far through the engine's ``prefix``. Rows go
through all five steps one engine chunk at a time, so that the backend's prefix cache still holds
a row's KV when its next step comes and each step encodes only its new tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from safelrm.methods.safe_trigger.recipe import Pass2Settings
from safelrm.methods.safe_trigger.safe_block import (
    SAFE_CLOSE,
    SAFE_OPEN,
    check_block,
    format_block,
    one_line,
)
from safelrm.methods.safe_trigger.templates import Pass2Template
from safelrm.models.engine import GenerationRequest, Record, SamplingParams
from safelrm.reasoning import THINK_CLOSE, THINK_OPEN
from safelrm.store import RecordStore


def conversation_text(messages: Sequence[dict[str, str]]) -> str:
    """A request as one text for a review prompt: the user turn, or a labelled transcript."""
    turns = [m for m in messages if m["role"] != "system"]
    if len(turns) == 1:
        return turns[0]["content"]
    return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in turns)


def generate(
    engine: Any, requests: list[GenerationRequest], store_path: Path, description: str
) -> list[Record]:
    if not requests:
        return []
    store = RecordStore(store_path)
    return engine.generate(requests, store=store, progress=True, description=description)


def continuation(record: Record, answer_prefix: str) -> str:
    """The text the model wrote after ``answer_prefix`` (the engine returns prefix + text)."""
    head = answer_prefix.strip()
    if record.answer.startswith(head):
        return record.answer[len(head) :]
    return record.answer


def cut_at(text: str, stops: Sequence[str]) -> str:
    ends = [text.index(s) for s in stops if s in text]
    return text[: min(ends)] if ends else text


def resolve_scaffold(setting: str, engine: Any, threshold: float = 1e9) -> bool:
    """``auto``: scaffold models below ``threshold`` parameters (they rarely follow formats)."""
    if setting != "auto":
        return setting == "on"
    model = engine.model
    if model is None:
        return False
    return sum(p.numel() for p in model.parameters()) < threshold


class Pass2Generator:
    """Pass 2 for a list of pass-1 rows: think2, a ``<safe>`` block in three parts, answer2."""

    def __init__(
        self,
        engine: Any,
        template: Pass2Template,
        settings: Pass2Settings,
        scaffold: bool,
        seed: int,
        work_dir: Path,
    ) -> None:
        self.engine, self.template, self.settings = engine, template, settings
        self.scaffold, self.seed, self.work_dir = scaffold, seed, work_dir

    def sampling(self, attempt: int, max_reasoning: int, max_new: int, stop: list[str]) -> Any:
        s = self.settings
        temperature = s.temperature if attempt == 0 or s.temperature > 0 else s.retry_temperature
        return SamplingParams(
            temperature=temperature,
            top_p=s.top_p,
            max_reasoning_tokens=max_reasoning,
            max_new_tokens=max_new,
            seed=self.seed + 1000 * attempt,
            stop=stop,
        )

    def messages(self, row: dict[str, Any]) -> list[dict[str, str]]:
        text = self.template.render(conversation_text(row["messages"]), row["think1"])
        return [{"role": "user", "content": text}]

    def attempt(self, rows: list[dict[str, Any]], attempt: int) -> list[dict[str, Any]]:
        """One try for every row; returns per row think2, block, parts, answer2 and the check."""
        folder = self.work_dir / f"attempt{attempt}"
        if self.scaffold:
            return self._scaffolded(rows, attempt, folder)
        s = self.settings
        sampling = self.sampling(attempt, s.max_reasoning_tokens, s.max_new_tokens, [])
        requests = [
            GenerationRequest(id=r["id"], messages=self.messages(r), sampling=sampling)
            for r in rows
        ]
        recs = generate(self.engine, requests, folder / "full.jsonl", f"pass2 try {attempt}")
        return [
            self._result(r, rec.reasoning, rec.answer) for r, rec in zip(rows, recs, strict=True)
        ]

    def _scaffolded(self, rows: list[dict[str, Any]], attempt: int, folder: Path) -> list[dict]:
        size = getattr(self.engine, "chunk_size", None) or max(len(rows), 1)
        out = []
        for start in range(0, len(rows), size):
            out += self._scaffold_round(rows[start : start + size], attempt, folder)
        return out

    def _scaffold_round(self, rows: list[dict[str, Any]], attempt: int, folder: Path) -> list[dict]:
        s, labels = self.settings, self.template.labels
        think_sampling = self.sampling(attempt, s.max_reasoning_tokens, 1, [])
        think_requests = [
            GenerationRequest(id=r["id"], messages=self.messages(r), sampling=think_sampling)
            for r in rows
        ]
        desc = f"pass2 try {attempt}"
        think = generate(self.engine, think_requests, folder / "think.jsonl", f"{desc}: think2")
        think2 = [rec.reasoning for rec in think]
        parts: list[list[str]] = [[] for _ in rows]
        for k, label in enumerate(labels):
            stops = ["\n\n", SAFE_CLOSE, SAFE_OPEN, THINK_CLOSE, THINK_OPEN, *labels]
            sampling = self.sampling(attempt, 1, s.section_tokens, stops)
            opener = self.template.opener(label)
            start = f"{label} {opener}" if opener else label
            heads = [SAFE_OPEN + "\n" + self._done(labels, p) + start for p in parts]
            requests = [
                GenerationRequest(
                    id=r["id"],
                    messages=self.messages(r),
                    prefix=self._prefix(t, head),
                    sampling=sampling,
                )
                for r, t, head in zip(rows, think2, heads, strict=True)
            ]
            recs = generate(
                self.engine, requests, folder / f"part{k + 1}.jsonl", f"{desc}: {k + 1}/3"
            )
            for p, rec, head in zip(parts, recs, heads, strict=True):
                text = cut_at(continuation(rec, head), stops)
                p.append(one_line(f"{opener}{text}" if opener else text))
        blocks = [format_block(p, labels) for p in parts]
        sampling = self.sampling(attempt, 1, s.max_new_tokens, [])
        answer_opener = self.template.openers.get("answer", "")
        requests = [
            GenerationRequest(
                id=r["id"],
                messages=self.messages(r),
                prefix=self._prefix(t, block + "\n\n" + answer_opener),
                sampling=sampling,
            )
            for r, t, block in zip(rows, think2, blocks, strict=True)
        ]
        recs = generate(self.engine, requests, folder / "answer.jsonl", f"{desc}: answer")
        out = []
        for r, t, block, rec in zip(rows, think2, blocks, recs, strict=True):
            text = continuation(rec, block + "\n\n" + answer_opener)
            answer2 = (answer_opener + cut_at(text, [SAFE_OPEN, THINK_OPEN])).strip()
            out.append(self._result(r, t, f"{block}\n\n{answer2}"))
        return out

    @staticmethod
    def _done(labels: list[str], parts: list[str]) -> str:
        return "".join(
            f"{label} {text}\n" for label, text in zip(labels[: len(parts)], parts, strict=True)
        )

    @staticmethod
    def _prefix(think2: str, answer_head: str) -> str:
        return f"{think2.strip()}\n{THINK_CLOSE}\n\n{answer_head}"

    def _result(self, row: dict[str, Any], think2: str, answer_text: str) -> dict[str, Any]:
        check = check_block(
            answer_text,
            self.template.labels,
            self.template.instruction,
            self.settings.min_part_words,
        )
        return {
            "id": row["id"],
            "think2": think2,
            "answer_text": answer_text,
            "block": check.block,
            "parts": check.parts,
            "answer2": check.answer,
            "valid": check.ok,
            "problems": check.problems,
        }

"""The ``<safe>`` block between the reasoning and the answer: build it, check it, strip it.

A response in the Safe Trigger format is ``<think>...</think>`` then, in the answer part::

    <safe>
    Core issue safety analysis: ...
    Reasoning process safety analysis: ...
    Final answer guidance: ...
    </safe>

    final answer

Judges of the *answer* must see only the final answer (:func:`final_answer`); the block is
analysis, and its vocabulary ("harmful", "decline") would otherwise read as a refusal.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from safelrm.eval.degeneration import SAFE_CLOSE, SAFE_OPEN, TAG_REPEATS, is_degenerate

# Generation guard: a row that writes <safe> this many times is stopped (finish "repeated_tag").
TAG_GUARD = {SAFE_OPEN: TAG_REPEATS}
_SPACE = re.compile(r"\s+")


def format_block(parts: Sequence[str], labels: Sequence[str]) -> str:
    """``<safe>`` with one ``label text`` line per part, then ``</safe>``."""
    lines = [
        f"{label} {one_line(text)}".rstrip() for label, text in zip(labels, parts, strict=True)
    ]
    return "\n".join([SAFE_OPEN, *lines, SAFE_CLOSE])


def one_line(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


def with_block(block: str, answer: str) -> str:
    """The answer part of a response: the block, a blank line, the final answer."""
    return f"{block}\n\n{answer.strip()}"


@dataclass
class BlockCheck:
    """What the validator found. ``ok`` needs no problems: both tags once and in order, the block
    first in the answer, every label once and in order with text after it, an answer after."""

    ok: bool
    problems: list[str] = field(default_factory=list)
    block: str = ""
    parts: dict[str, str] = field(default_factory=dict)
    answer: str = ""


def check_block(
    text: str, labels: Sequence[str], instruction: str = "", min_words: int = 1
) -> BlockCheck:
    """Validate the answer part of a response (the text after ``</think>``).

    Every part needs ``min_words`` words. With ``instruction``, a part (or most of the answer)
    that repeats sentences of it, which small models do, is a problem too."""
    problems: list[str] = []
    n_open, n_close = text.count(SAFE_OPEN), text.count(SAFE_CLOSE)
    if n_open == 0:
        problems.append("no <safe>")
    if n_close == 0:
        problems.append("no </safe>")
    if n_open > 1 or n_close > 1:
        problems.append("more than one <safe> block")
    if problems:
        return BlockCheck(False, problems, answer=final_answer(text))
    start, end = text.index(SAFE_OPEN), text.index(SAFE_CLOSE)
    if end < start:
        return BlockCheck(False, ["</safe> before <safe>"], answer=final_answer(text))
    if text[:start].strip():
        problems.append("text before <safe>")
    body = text[start + len(SAFE_OPEN) : end]
    block = text[start : end + len(SAFE_CLOSE)]
    answer = text[end + len(SAFE_CLOSE) :].strip()
    parts = _split_parts(body, labels, problems)
    for label, part in parts.items():
        if part and len(part.split()) < min_words:
            problems.append(f"part '{label}' has fewer than {min_words} words")
        if part and instruction and copies(part, instruction):
            problems.append(f"part '{label}' copies the instruction")
    if answer and instruction and copied_share(answer, instruction) >= 0.5:
        problems.append("answer copies the instruction")
    if not answer:
        problems.append("no answer after </safe>")
    if is_degenerate(text):
        problems.append("degenerate (repeated tag or lines)")
    return BlockCheck(not problems, problems, block, parts, answer)


def _split_parts(body: str, labels: Sequence[str], problems: list[str]) -> dict[str, str]:
    positions = []
    for label in labels:
        count = body.count(label)
        if count == 0:
            problems.append(f"missing part '{label}'")
        elif count > 1:
            problems.append(f"part '{label}' repeated")
        positions.append(body.find(label))
    if any(p < 0 for p in positions):
        return {}
    if positions != sorted(positions):
        problems.append("parts out of order")
        return {}
    if body[: positions[0]].strip():
        problems.append("text before the first part")
    parts = {}
    for i, label in enumerate(labels):
        stop = positions[i + 1] if i + 1 < len(labels) else len(body)
        text = one_line(body[positions[i] + len(label) : stop])
        parts[label] = text
        if not text:
            problems.append(f"part '{label}' is empty")
    return parts


_WORD = re.compile(r"[a-z0-9']+")
_SENTENCE = re.compile(r"[.!?;:\n]|\s-\s|\blabel\b", re.IGNORECASE)


def copies(text: str, source: str, threshold: float = 0.7, contained: float = 0.85) -> bool:
    """Whether ``text`` (nearly) repeats a sentence of ``source``: word-set Jaccard at least
    ``threshold``, or, for 5+ words, at least ``contained`` of its words inside one sentence."""
    words = set(_WORD.findall(text.lower()))
    if len(words) < 3:
        return False
    for sentence in _SENTENCE.split(source):
        other = set(_WORD.findall(sentence.lower()))
        if not other:
            continue
        shared = len(words & other)
        if shared / len(words | other) >= threshold:
            return True
        if len(words) >= 5 and shared / len(words) >= contained:
            return True
    return False


def copied_share(text: str, source: str) -> float:
    """The share of ``text``'s sentences (of 3+ words) that copy a sentence of ``source``."""
    sentences = [x for x in _SENTENCE.split(text) if len(_WORD.findall(x.lower())) >= 3]
    if not sentences:
        return 0.0
    return sum(copies(x, source) for x in sentences) / len(sentences)


def final_answer(text: str) -> str:
    """The answer without the ``<safe>`` analysis.

    A complete block is cut out; an unclosed ``<safe>`` only loses its tag, so analysis text that
    never ended is still judged (it could otherwise hide a harmful answer from the judges).
    """
    start, end = text.find(SAFE_OPEN), text.find(SAFE_CLOSE)
    if start >= 0 and end > start:
        return (text[:start] + text[end + len(SAFE_CLOSE) :]).strip()
    return text.replace(SAFE_OPEN, "").replace(SAFE_CLOSE, "").strip()

"""Numbered sentences of a chain of thought, each mapped to its first token, exactly.

The token index of a sentence is read from the fast tokenizer's offset mapping over the text the
model really sees (rendered prompt + ``<think>\\n`` + reasoning + ...), never from tokenising a
substring on its own: byte-level BPE attaches the space before a word to that word, so a
substring tokenised alone can split differently from the same characters in context.

A sentence's *cut* is the character where the tokens before its first token end. Everything
before the cut is the shared prefix that an intervention keeps; the whitespace between the cut
and the sentence's first character belongs to the sentence's first token and is kept when the
sentence is replaced (so a trigger starts with the same space or newline).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# Words whose trailing period does not end a sentence.
_ABBREVIATIONS = frozenset(
    "e.g i.e etc vs mr mrs ms dr prof st fig no approx cf al inc ltd jr sr".split()
)
_END = re.compile(r"[.!?]+[\"')\]]*(?=\s)|\n")


@dataclass(frozen=True)
class Span:
    """A sentence as characters of the text it was split from: ``text[start:end]``."""

    start: int
    end: int


@dataclass(frozen=True)
class Sentence:
    """Sentence ``number`` (1-based) of a reasoning text.

    ``start``/``end``: characters in the reasoning text. ``token``: index of its first token in
    the tokenised full text. ``cut``: the reasoning character where the previous token ends
    (``<= start``); ``full_cut``: the same position in the full text.
    """

    number: int
    text: str
    start: int
    end: int
    token: int
    cut: int
    full_cut: int


def split_spans(text: str) -> list[Span]:
    """Sentence spans of ``text``: ends at ``.``/``!``/``?`` before whitespace and at newlines.

    A period after a list number (``1.``) or a known abbreviation does not end a sentence.
    Leading and trailing whitespace are not part of a span; empty spans are dropped.
    """
    spans: list[Span] = []
    start = 0
    for m in _END.finditer(text):
        end = m.end()
        if m.group() != "\n" and _is_false_end(text, start, m.start()):
            continue
        _add(spans, text, start, end)
        start = end
    _add(spans, text, start, len(text))
    return spans


def _is_false_end(text: str, start: int, dot: int) -> bool:
    if text[dot] != ".":
        return False
    word = text[start:dot].split()[-1:] or [""]
    last = word[0].lower().lstrip("(\"'")
    if last.isdigit() and len(text[start:dot].split()) <= 1:
        return True  # "1." opening a list item
    return last in _ABBREVIATIONS


def _add(spans: list[Span], text: str, start: int, end: int) -> None:
    chunk = text[start:end]
    if not chunk.strip():
        return
    lead = len(chunk) - len(chunk.lstrip())
    trail = len(chunk) - len(chunk.rstrip())
    spans.append(Span(start + lead, end - trail))


def token_offsets(tokenizer: Any, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    """Token ids and character offsets of ``text`` (no special tokens added)."""
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("exact sentence offsets need a fast tokenizer (offset mapping)")
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]


def first_token_at(offsets: list[tuple[int, int]], char: int) -> int:
    """Index of the token that covers ``char`` (or the first one after it)."""
    for i, (_, end) in enumerate(offsets):
        if end > char:
            return i
    return len(offsets)


def split_reasoning(
    tokenizer: Any, full_text: str, reasoning_start: int, reasoning: str
) -> list[Sentence]:
    """Sentences of ``reasoning``, which sits at ``full_text[reasoning_start:]``, with exact
    token indices into ``full_text`` tokenised as a whole."""
    if full_text[reasoning_start : reasoning_start + len(reasoning)] != reasoning:
        raise ValueError("reasoning is not found at reasoning_start in the full text")
    _, offsets = token_offsets(tokenizer, full_text)
    out = []
    for n, span in enumerate(split_spans(reasoning), 1):
        tok = first_token_at(offsets, reasoning_start + span.start)
        full_cut = offsets[tok - 1][1] if tok > 0 else 0
        # a token that straddles the reasoning start cannot be cut inside the reasoning
        full_cut = max(min(full_cut, reasoning_start + span.start), reasoning_start)
        out.append(
            Sentence(
                number=n,
                text=reasoning[span.start : span.end],
                start=span.start,
                end=span.end,
                token=tok,
                cut=full_cut - reasoning_start,
                full_cut=full_cut,
            )
        )
    return out


def numbered(texts: Sequence[str]) -> str:
    """``[1] First sentence.`` one per line, as the detector prompt shows them."""
    return "\n".join(f"[{i}] {' '.join(t.split())}" for i, t in enumerate(texts, 1))

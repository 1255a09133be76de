"""Real jailbreak templates (GPTFuzzer seeds + in-the-wild prompts) split into train and eval.

The two upstream sets overlap (75 of the 77 GPTFuzzer templates have a near copy among the
in-the-wild prompts; see their SOURCE.md), so the split is made on the pooled, de-duplicated
templates in two steps:

1. a template is in ``eval`` when the SHA-256 of its normalised text falls below ``EVAL_SHARE``
   (deterministic; independent of order, seed and which other templates exist);
2. a template hashed to ``train`` is dropped when it is a near copy of any eval template (Jaccard
   >= ``NEAR_JACCARD`` on word sets or on word-trigram sets), so no variant of an eval template
   is trained on.

:func:`split_overlap` re-checks the result with the project's overlap machinery (exact and near
duplicates, ``data/overlap.py``); the ``prompts`` stage records it, tests assert it is empty.
Templates are used at their real length; ``max_template_chars`` (training) cuts the *middle* of a
longer template and marks the record (``meta.truncated_from``), never silently.
"""

from __future__ import annotations

import hashlib
import random
from functools import cache
from typing import Literal

from safelrm.attacks.registry import Wrapped, register_attack
from safelrm.data.overlap import OverlapPair, find_overlaps, normalize
from safelrm.data.records import PromptRecord
from safelrm.errors import SafelrmError

EVAL_SHARE = 0.3
NEAR_JACCARD = 0.5
NGRAMS = (1, 3)
PLACEHOLDER = "[INSERT PROMPT HERE]"
CUT_MARK = "\n[...]\n"
SOURCES = ("gptfuzz_templates", "jailbreak_prompts_in_the_wild")
Split = Literal["train", "eval"]


def hashed_split(text: str, eval_share: float = EVAL_SHARE) -> Split:
    digest = hashlib.sha256(normalize(text).encode()).digest()
    return "eval" if int.from_bytes(digest[:8], "big") / 2**64 < eval_share else "train"


@cache
def template_pool() -> tuple[PromptRecord, ...]:
    """Both sources' templates, de-duplicated on normalised text (first occurrence kept)."""
    from safelrm.data.train_sets import load_train_set

    seen: set[str] = set()
    out = []
    for source in SOURCES:
        for r in load_train_set(source):
            key = normalize(r.text)
            if key and key not in seen:
                seen.add(key)
                out.append(r)
    return tuple(out)


@cache
def split_templates(
    eval_share: float = EVAL_SHARE, jaccard: float = NEAR_JACCARD
) -> dict[Split, tuple[PromptRecord, ...]]:
    """``{"train": ..., "eval": ...}`` per the module docstring."""
    pool = template_pool()
    evals = [r for r in pool if hashed_split(r.text, eval_share) == "eval"]
    hashed_train = [r for r in pool if hashed_split(r.text, eval_share) == "train"]
    near: set[str] = set()
    for n in NGRAMS:
        report = find_overlaps(hashed_train, {"eval": evals}, jaccard=jaccard, ngram=n)
        near |= report.overlapping_train_ids()
    train = [r for r in hashed_train if r.id not in near]
    return {"train": tuple(train), "eval": tuple(evals)}


def split_overlap(
    jaccard: float = NEAR_JACCARD, ngrams: tuple[int, ...] = NGRAMS
) -> list[OverlapPair]:
    """Exact and near duplicates between the train and eval templates (empty when disjoint)."""
    parts = split_templates()
    train, evals = list(parts["train"]), {"eval": list(parts["eval"])}
    return [p for n in ngrams for p in find_overlaps(train, evals, jaccard=jaccard, ngram=n).pairs]


def cut_middle(text: str, max_chars: int) -> str:
    """``text`` with its middle replaced by ``[...]`` so that it has at most ``max_chars``."""
    if len(text) <= max_chars:
        return text
    keep = max(max_chars - len(CUT_MARK), 2)
    head = keep // 2
    return text[:head] + CUT_MARK + text[len(text) - (keep - head) :]


def fill_template(template: str, request: str) -> str:
    """The request at the template's placeholder, else after the template."""
    if PLACEHOLDER in template:
        return template.replace(PLACEHOLDER, request)
    return f"{template.strip()}\n\n{request}"


@register_attack(
    "wild",
    description="GPTFuzzer + in-the-wild jailbreak templates, train/eval split by template hash",
    own=False,
)
class WildTemplates:
    """``split``: which side of the template split to draw from. ``placeholder_only``: only
    templates written around ``[INSERT PROMPT HERE]`` (the eval set uses these: the request goes
    where the template's author put it). ``max_template_chars``: cut longer templates in the
    middle (the placeholder is kept), marked in the record's template id."""

    def __init__(
        self,
        split: Split = "eval",
        placeholder_only: bool = False,
        max_template_chars: int | None = None,
    ) -> None:
        if split not in ("train", "eval"):
            raise SafelrmError(f"attack 'wild': split must be 'train' or 'eval', got '{split}'")
        templates = split_templates()[split]
        if placeholder_only:
            templates = tuple(t for t in templates if PLACEHOLDER in t.text)
        if not templates:
            raise SafelrmError(f"attack 'wild': no templates in split '{split}'")
        self.templates = templates
        self.split = split
        self.max_chars = max_template_chars

    def wrap(self, request: str, rng: random.Random) -> Wrapped:
        t = rng.choice(self.templates)
        text, tid = t.text, t.id
        if self.max_chars is not None and len(text) > self.max_chars:
            text = _cut_around_placeholder(text, self.max_chars)
            tid = f"{t.id}~cut{len(t.text)}"
        return Wrapped(text=fill_template(text, request), template=tid)


def _cut_around_placeholder(text: str, max_chars: int) -> str:
    """Cut the middle of the parts before and after the placeholder (kept whole)."""
    if PLACEHOLDER not in text:
        return cut_middle(text, max_chars)
    before, _, after = text.partition(PLACEHOLDER)
    budget = max(max_chars - len(PLACEHOLDER), 0)
    share = len(before) / max(len(before) + len(after), 1)
    b = round(budget * share)
    return cut_middle(before, b) + PLACEHOLDER + cut_middle(after, budget - b)

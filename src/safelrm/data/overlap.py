"""Train/eval contamination check: exact (normalised) and near (Jaccard) duplicate prompts.

Near duplicates use a set-similarity join with prefix filtering: tokens are ordered rarest
first, and two sets with Jaccard >= t must share a token among the first ``|s| - ceil(t|s|) + 1``
tokens of each. Only those candidates are verified, so the join is exact (no false negatives,
unlike MinHash) and 10k x 3k prompts take well under a second.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel, Field

from safelrm.data.records import PromptRecord
from safelrm.errors import SafelrmError

_SPACE = re.compile(r"\s+")
_WORD = re.compile(r"\w+")


def normalize(text: str) -> str:
    """Lower-case, collapse whitespace, strip trailing ``.?!``."""
    return _SPACE.sub(" ", text.lower()).strip().rstrip(".?!").rstrip()


def request_text(record: PromptRecord) -> str:
    """The request a record asks: the goal behind a jailbreak, else ``meta['instruction']`` (the
    request without its context: Dolly, HarmBench contextual), else the text. Contamination is
    about the request, not its wrapper or context."""
    return record.goal or record.meta.get("instruction") or record.text


def shingles(text: str, ngram: int = 1) -> frozenset[str]:
    """Word tokens (``ngram=1``) or word n-grams of the normalised text."""
    words = _WORD.findall(normalize(text))
    if ngram <= 1 or len(words) < ngram:
        return frozenset(words) if ngram <= 1 else frozenset([" ".join(words)] if words else [])
    return frozenset(" ".join(words[i : i + ngram]) for i in range(len(words) - ngram + 1))


class OverlapPair(BaseModel):
    benchmark: str
    kind: Literal["exact", "near"]
    jaccard: float
    train_id: str
    train_text: str
    eval_id: str
    eval_text: str


class BenchmarkCounts(BaseModel):
    n_eval: int
    exact: int = 0  # matching pairs
    near: int = 0
    train_prompts: int = 0  # distinct training prompts that match this benchmark


class OverlapReport(BaseModel):
    n_train: int
    jaccard: float
    ngram: int
    counts: dict[str, BenchmarkCounts] = Field(default_factory=dict)
    pairs: list[OverlapPair] = Field(default_factory=list)

    def overlapping_train_ids(self) -> set[str]:
        return {p.train_id for p in self.pairs}


def _prefix_len(size: int, threshold: float) -> int:
    return size - math.ceil(threshold * size - 1e-9) + 1


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    inter = len(a & b)
    return inter / (len(a) + len(b) - inter) if inter else 0.0


def _near_pairs(
    train_sets: list[frozenset[str]], eval_sets: list[frozenset[str]], threshold: float
) -> Iterable[tuple[int, int, float]]:
    """``(train_index, eval_index, jaccard)`` for every pair with Jaccard >= threshold."""
    freq = Counter(tok for s in (*train_sets, *eval_sets) for tok in s)

    def ordered(s: frozenset[str]) -> list[str]:
        return sorted(s, key=lambda tok: (freq[tok], tok))

    index: dict[str, list[int]] = defaultdict(list)
    for j, s in enumerate(eval_sets):
        if s:
            for tok in ordered(s)[: _prefix_len(len(s), threshold)]:
                index[tok].append(j)
    for i, s in enumerate(train_sets):
        if not s:
            continue
        candidates: set[int] = set()
        for tok in ordered(s)[: _prefix_len(len(s), threshold)]:
            candidates.update(index.get(tok, ()))
        for j in candidates:
            other = eval_sets[j]
            # length filter: |small| / |big| bounds the Jaccard
            if min(len(s), len(other)) < threshold * max(len(s), len(other)):
                continue
            score = _jaccard(s, other)
            if score >= threshold:
                yield i, j, score


def find_overlaps(
    train: list[PromptRecord],
    evals: dict[str, list[PromptRecord]],
    jaccard: float = 0.8,
    ngram: int = 1,
) -> OverlapReport:
    """Pairs of training and evaluation prompts that are equal after ``normalize`` (exact) or
    whose token/n-gram sets have Jaccard >= ``jaccard`` (near; exact pairs are not repeated)."""
    if not 0.0 < jaccard <= 1.0:
        raise SafelrmError(f"jaccard must be in (0, 1], got {jaccard}")
    if ngram < 1:
        raise SafelrmError(f"ngram must be >= 1, got {ngram}")
    report = OverlapReport(n_train=len(train), jaccard=jaccard, ngram=ngram)
    train_texts = [request_text(r) for r in train]
    train_norm = [normalize(t) for t in train_texts]
    train_sets = [shingles(t, ngram) for t in train_texts]
    for name, records in evals.items():
        eval_texts = [request_text(r) for r in records]
        by_norm: dict[str, list[int]] = defaultdict(list)
        for j, t in enumerate(eval_texts):
            by_norm[normalize(t)].append(j)
        found = [(i, j, "exact", 1.0) for i, key in enumerate(train_norm) for j in by_norm[key]]
        exact = {(i, j) for i, j, _, _ in found}
        eval_sets = [shingles(t, ngram) for t in eval_texts]
        near = sorted(_near_pairs(train_sets, eval_sets, jaccard))
        found += [(i, j, "near", score) for i, j, score in near if (i, j) not in exact]
        report.counts[name] = BenchmarkCounts(
            n_eval=len(records),
            exact=sum(1 for f in found if f[2] == "exact"),
            near=sum(1 for f in found if f[2] == "near"),
            train_prompts=len({f[0] for f in found}),
        )
        report.pairs += [
            OverlapPair(
                benchmark=name,
                kind=kind,
                jaccard=round(score, 4),
                train_id=train[i].id,
                train_text=train_texts[i],
                eval_id=records[j].id,
                eval_text=eval_texts[j],
            )
            for i, j, kind, score in found
        ]
    return report


def filter_overlapping(
    train: list[PromptRecord],
    evals: dict[str, list[PromptRecord]],
    jaccard: float = 0.8,
    ngram: int = 1,
) -> list[PromptRecord]:
    """``train`` without the prompts that match any evaluation prompt (exact or near)."""
    drop = find_overlaps(train, evals, jaccard, ngram).overlapping_train_ids()
    return [r for r in train if r.id not in drop]

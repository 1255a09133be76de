"""Automatic prefix caching for the ``hf`` backend, the CPU counterpart of vLLM's.

Every finished row leaves its KV cache here, keyed by its token ids. A later job whose tokens start
with a cached row's tokens (the answer phase after the reasoning phase, or Safe Trigger's pass 2
sections, each of which continues the text so far) feeds only its new tail. A batch mixes rows with
different cached lengths, so both parts are left-padded on their own::

    [pad | cached tokens of row i][pad | new tail of row i]

with attention mask 0 on the pads; position ids are ``cumsum(mask) - 1``, so each row computes
what it would alone (the layout IPO's ``continue_from_prefix`` uses for one shared prefix).

Entries are evicted least recently used first, to a byte budget. An entry that is a prefix of a
newer one is dropped when the newer one arrives: it can never match longer. The cache assumes the
model's weights stay as they were: whoever changes them in place must call ``clear()``.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

MIN_REUSE_TOKENS = 8  # below this, re-encoding is as cheap as gathering the cache


@dataclass
class Entry:
    tokens: np.ndarray
    kv: list[tuple[torch.Tensor, torch.Tensor]]  # per layer, [heads, len, head_dim] each

    @property
    def nbytes(self) -> int:
        return sum(k.nelement() * k.element_size() * 2 for k, _ in self.kv)


@dataclass
class Hit:
    """``n`` tokens of a job are cached in ``entry`` (``n`` = 0: a miss)."""

    n: int = 0
    key: int | None = None
    entry: Entry | None = None


class PrefixCache:
    def __init__(self, budget_bytes: int) -> None:
        self.budget = budget_bytes
        self.entries: OrderedDict[int, Entry] = OrderedDict()
        self.nbytes = 0
        self._next_key = 0
        self.stats = {"jobs": 0, "prompt_tokens": 0, "cached_tokens": 0}

    def lookup(self, ids: list[int]) -> Hit:
        """The longest cached prefix of ``ids``, leaving at least its last token to feed."""
        x = np.asarray(ids)
        best = Hit()
        for key, entry in self.entries.items():
            m = min(len(entry.tokens), len(x) - 1)
            if m <= best.n:
                continue
            diff = np.flatnonzero(entry.tokens[:m] != x[:m])
            n = int(diff[0]) if diff.size else m
            if n > best.n:
                best = Hit(n, key, entry)
        if best.n < MIN_REUSE_TOKENS:
            return Hit()
        self.entries.move_to_end(best.key)  # type: ignore[arg-type]
        return best

    def record(self, hits: list[Hit], ids: list[list[int]]) -> None:
        self.stats["jobs"] += len(ids)
        self.stats["prompt_tokens"] += sum(len(x) for x in ids)
        self.stats["cached_tokens"] += sum(h.n for h in hits)

    def add(
        self, tokens: list[int], kv: list[tuple[torch.Tensor, torch.Tensor]], source: Hit
    ) -> None:
        entry = Entry(np.asarray(tokens), kv)
        if entry.nbytes > self.budget:
            return
        src = source.entry
        if (
            source.key in self.entries
            and src is not None
            and len(src.tokens) <= len(entry.tokens)
            and np.array_equal(src.tokens, entry.tokens[: len(src.tokens)])
        ):
            self._drop(source.key)  # type: ignore[arg-type]
        self.entries[self._next_key] = entry
        self._next_key += 1
        self.nbytes += entry.nbytes
        while self.nbytes > self.budget:
            self._drop(next(iter(self.entries)))

    def clear(self) -> None:
        self.entries.clear()
        self.nbytes = 0

    def _drop(self, key: int) -> None:
        self.nbytes -= self.entries.pop(key).nbytes


def batch_layout(
    ids: list[list[int]], cached: list[int], pad: int
) -> tuple[list[list[int]], list[list[int]], int]:
    """Token rows and attention mask for a batch whose row ``i`` has its first ``cached[i]`` tokens
    in a KV cache (see the module docstring), and the width of the cached part."""
    width_cached = max(cached)
    tails = [x[n:] for x, n in zip(ids, cached, strict=True)]
    width = max(len(t) for t in tails)
    rows, mask = [], []
    for x, n, t in zip(ids, cached, tails, strict=True):
        lead, gap = width_cached - n, width - len(t)
        rows.append([pad] * lead + x[:n] + [pad] * gap + t)
        mask.append([0] * lead + [1] * n + [0] * gap + [1] * len(t))
    return rows, mask, width_cached


def build_cache(model: Any, hits: list[Hit], cached: int) -> Any:
    """A DynamicCache of ``cached`` positions holding each row's entry, right-aligned."""
    from transformers import DynamicCache

    first = next(h.entry for h in hits if h.entry is not None)
    cache = DynamicCache(config=model.config)
    for layer, (k0, v0) in enumerate(first.kv):
        keys = k0.new_zeros((len(hits), k0.shape[0], cached, k0.shape[2]))
        values = v0.new_zeros((len(hits), v0.shape[0], cached, v0.shape[2]))
        for i, h in enumerate(hits):
            if h.entry is not None:
                k, v = h.entry.kv[layer]
                keys[i, :, cached - h.n :] = k[:, : h.n]
                values[i, :, cached - h.n :] = v[:, : h.n]
        cache.update(keys, values, layer)
    return cache


def row_entries(cache: Any, mask: torch.Tensor, kept: list[int]) -> list[list[tuple]] | None:
    """Each row's KV after generation: its unmasked input positions and its first ``kept[i]``
    generated ones. None for caches that are not plain per-position layers (sliding windows)."""
    from transformers.cache_utils import DynamicLayer

    layers = getattr(cache, "layers", None)
    if not layers or any(type(layer) is not DynamicLayer for layer in layers):
        return None
    width = mask.shape[1]
    out = []
    for i, n in enumerate(kept):
        idx = torch.cat(
            [mask[i].nonzero().flatten(), torch.arange(width, width + n, device=mask.device)]
        )
        out.append(
            [
                (layer.keys[i][:, idx].contiguous(), layer.values[i][:, idx].contiguous())
                for layer in layers
            ]
        )
    return out

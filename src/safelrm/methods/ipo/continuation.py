"""Continue several texts that share a long prefix, computing the prefix's KV cache once.

``continue_from_prefix(model, tokenizer, prefix, starts)`` tokenises every ``prefix + start``
jointly, prefills the tokens they all share once, repeats that cache across the batch
(``DynamicCache.batch_repeat_interleave``) and generates only the rest. The starts differ in
length, so the batch is padded *between* the shared prefix and each start: the attention mask is
0 there and the position ids (``cumsum(mask) - 1``) stay contiguous, so each row computes exactly
what it would alone. Sampling uses the hf backend's per-row seeded sampler, so a row's text does
not depend on its batch.

The engine's ``prefix`` path encodes prompt + prefix for every continuation, unless the backend's
prefix cache holds an earlier row that starts the same way; this one encodes it once per group
(e.g. the continuations after each trigger at one intervention point, or the k samples of the
continuation-safety analysis at one sentence boundary), on any model.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from safelrm.train.formats import common_prefix_length


@dataclass(frozen=True)
class Continuation:
    text: str
    finish: str  # "stop" (a stop string), "eos" (end of turn), "length" (budget)
    n_new_tokens: int
    n_prefill_tokens: int  # tokens of this row encoded beyond the shared prefix
    seconds: float  # the group's wall time divided by its rows


def eos_token_ids(model: Any, tokenizer: Any) -> list[int]:
    eos = model.generation_config.eos_token_id
    ids = [eos] if isinstance(eos, int) else list(eos or [])
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return sorted(set(ids))


def continue_from_prefix(
    model: Any,
    tokenizer: Any,
    prefix: str,
    starts: Sequence[str],
    *,
    max_new_tokens: int,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seeds: Sequence[int] | None = None,
    stop: Sequence[str] = (),
    eos_ids: Sequence[int] | None = None,
    min_new_tokens: int = 0,
) -> list[Continuation]:
    """Generate a continuation of ``prefix + s`` for every ``s`` in ``starts`` (one batch)."""
    import torch
    from transformers import LogitsProcessorList

    from safelrm.models.backend import Completion
    from safelrm.models.hf import RowSampler
    from safelrm.models.prefix_cache import batch_layout

    if not starts:
        return []
    t0 = time.perf_counter()
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    eos = list(eos_ids) if eos_ids is not None else eos_token_ids(model, tokenizer)
    joint = [tokenizer(prefix + s, add_special_tokens=False)["input_ids"] for s in starts]
    base = tokenizer(prefix, add_special_tokens=False)["input_ids"]
    shared = min(common_prefix_length(base, j) for j in joint)
    shared = min(shared, min(len(j) for j in joint) - 1)  # every row feeds >= 1 own token
    rows, mask, _ = batch_layout(joint, [shared] * len(joint), pad)
    seeds = list(seeds) if seeds is not None else [0] * len(starts)
    jobs = [Completion("", max_new_tokens, temperature, top_p, s, list(stop)) for s in seeds]
    kwargs: dict[str, Any] = {}
    with torch.inference_mode():
        if shared > 0:
            ids = torch.tensor([joint[0][:shared]], device=device)
            cache = model(input_ids=ids, use_cache=True).past_key_values
            cache.batch_repeat_interleave(len(starts))
            kwargs["past_key_values"] = cache
        out = model.generate(
            input_ids=torch.tensor(rows, device=device),
            attention_mask=torch.tensor(mask, device=device),
            max_new_tokens=max_new_tokens,
            min_new_tokens=min_new_tokens or None,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            logits_processor=LogitsProcessorList([RowSampler(jobs, device)]),
            eos_token_id=eos,
            pad_token_id=pad,
            stop_strings=list(stop) or None,
            tokenizer=tokenizer if stop else None,
            **kwargs,
        )
    seconds = (time.perf_counter() - t0) / len(starts)
    new = out[:, len(rows[0]) :].tolist()
    return [
        _result(tokenizer, row, eos, max_new_tokens, stop, len(j) - shared, seconds)
        for row, j in zip(new, joint, strict=True)
    ]


def _result(
    tokenizer: Any,
    row: list[int],
    eos: Sequence[int],
    budget: int,
    stop: Sequence[str],
    n_prefill: int,
    seconds: float,
) -> Continuation:
    cut = next((k for k, t in enumerate(row) if t in eos), None)
    new = row[:budget] if cut is None else row[:cut]
    text = tokenizer.decode(new, skip_special_tokens=True)
    hit = [s for s in stop if s in text]
    if hit:
        end = min(text.index(s) + len(s) for s in hit)
        finish, text = "stop", text[:end]
    elif cut is not None and cut < budget:
        finish = "eos"
    else:
        finish = "length"
    n_new = len(new) + (1 if finish == "eos" else 0)
    return Continuation(text, finish, n_new, n_prefill, round(seconds, 4))


def measure_continuation_cost(
    model: Any,
    tokenizer: Any,
    prompt: str,
    n_prefix: int,
    n_new: int,
    starts: Sequence[str],
    repeats: int = 2,
) -> dict[str, Any]:
    """Wall time of k continuations of ``n_new`` tokens from a shared ``n_prefix``-token prefix
    (KV reuse, and re-encoding the prefix per row as the engine's ``prefix`` path does) against
    k fresh rollouts of the same total length from the prompt. Greedy, EOS suppressed so every
    row generates its full budget; the best of ``repeats`` runs."""
    import torch

    from safelrm.models.prefix_cache import batch_layout

    device = next(model.parameters()).device
    k = len(starts)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def fresh() -> Any:
        ids = torch.tensor([prompt_ids] * k, device=device)
        return model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=n_prefix + n_new,
            min_new_tokens=n_prefix + n_new,
            do_sample=False,
            pad_token_id=pad,
        )

    with torch.inference_mode():
        first = fresh()
    prefix = prompt + tokenizer.decode(first[0, len(prompt_ids) : len(prompt_ids) + n_prefix])

    def reuse() -> Any:
        return continue_from_prefix(
            model, tokenizer, prefix, starts, max_new_tokens=n_new, min_new_tokens=n_new
        )

    def reencode() -> Any:
        joint = [tokenizer(prefix + s, add_special_tokens=False)["input_ids"] for s in starts]
        rows, rows_mask, _ = batch_layout(joint, [0] * len(joint), pad)
        ids = torch.tensor(rows, device=device)
        mask = torch.tensor(rows_mask, device=device)
        with torch.inference_mode():
            return model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=n_new,
                min_new_tokens=n_new,
                do_sample=False,
                pad_token_id=pad,
            )

    def best(fn: Any) -> float:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            with torch.inference_mode():
                fn()
            times.append(time.perf_counter() - t0)
        return min(times)

    t_fresh, t_reuse, t_reencode = best(fresh), best(reuse), best(reencode)
    return {
        "k": k,
        "prompt_tokens": len(prompt_ids),
        "prefix_tokens": n_prefix,
        "new_tokens": n_new,
        "fresh_seconds": round(t_fresh, 3),
        "reuse_seconds": round(t_reuse, 3),
        "reencode_seconds": round(t_reencode, 3),
        "reuse_vs_fresh": round(t_reuse / t_fresh, 3),
        "reencode_vs_fresh": round(t_reencode / t_fresh, 3),
        "reuse_vs_reencode": round(t_reuse / t_reencode, 3),
    }

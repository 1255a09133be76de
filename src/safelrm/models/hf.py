"""The ``hf`` backend: batched transformers generation.

Jobs are sorted by prompt length and run in left-padded batches with the KV cache.
Sampling is done per row with the Gumbel-max trick over a row-seeded generator, so a (request,
sample) gives the same text whatever batch it lands in, which keeps resumed runs reproducible.
Automatic prefix caching (``prefix_cache.py``, on by default as in vLLM) keeps each finished row's
KV, so a job that continues an earlier one encodes only its new tokens.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    StoppingCriteria,
    StoppingCriteriaList,
)

from safelrm.models.backend import Completion, CompletionResult, cut_repeats, register_backend
from safelrm.models.loading import LoadedModel, load_model
from safelrm.models.prefix_cache import Hit, PrefixCache, batch_layout, build_cache, row_entries
from safelrm.models.prompt_ids import encode_prompt


class RowSampler(LogitsProcessor):
    """Temperature, top-p and a Gumbel draw per row; greedy rows (temperature 0) pass through.

    ``argmax(logits / T + Gumbel)`` is a sample from ``softmax(logits / T)``, so greedy decoding
    over these scores samples, each row from its own generator.
    """

    def __init__(self, jobs: Sequence[Completion], device: torch.device) -> None:
        self.jobs = jobs
        self.generators = [
            torch.Generator(device="cpu").manual_seed(j.seed) if j.temperature > 0 else None
            for j in jobs
        ]
        self.device = device

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.Tensor:
        scores = scores.float()
        for i, (job, gen) in enumerate(zip(self.jobs, self.generators, strict=True)):
            if gen is None:
                continue
            row = scores[i] / job.temperature
            if job.top_p < 1.0:
                sorted_logits, order = torch.sort(row, descending=True)
                cum = torch.softmax(sorted_logits, dim=-1).cumsum(-1)
                drop = cum - torch.softmax(sorted_logits, dim=-1) >= job.top_p
                row = row.scatter(0, order[drop], float("-inf"))
            u = torch.rand(row.shape, generator=gen).clamp_(1e-10, 1.0).to(row.device)
            scores[i] = row - torch.log(-torch.log(u))
        return scores


class RepeatStop(StoppingCriteria):
    """Ends a row once a ``stop_repeats`` string reached its count in the new text (the engine
    cuts the text and records the finish reason; this only saves the compute)."""

    def __init__(self, jobs: Sequence[Completion], tokenizer: Any, width: int) -> None:
        self.jobs, self.tokenizer, self.width = jobs, tokenizer, width

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        for i, job in enumerate(self.jobs):
            if job.stop_repeats:
                text = self.tokenizer.decode(input_ids[i, self.width :], skip_special_tokens=True)
                done[i] = cut_repeats(text, job.stop_repeats) is not None
        return done


class HFBackend:
    name = "hf"

    def __init__(
        self,
        model: str | LoadedModel = "default",
        batch_size: int = 16,
        dtype: Any = None,
        device: str | None = None,
        prefix_cache_gb: float = 2.0,
    ) -> None:
        """``prefix_cache_gb``: memory for automatic prefix caching (0 turns it off)."""
        loaded = model if isinstance(model, LoadedModel) else load_model(model, dtype, device)
        self.model, self.tokenizer = loaded.model, loaded.tokenizer
        self.model_name, self.model_path = loaded.name, loaded.path
        self.batch_size = batch_size
        self.tokenizer.padding_side = "left"
        eos = self.model.generation_config.eos_token_id
        eos = [eos] if isinstance(eos, int) else list(eos or [])
        if self.tokenizer.eos_token_id is not None:
            eos.append(self.tokenizer.eos_token_id)
        self.eos_ids = sorted(set(eos))
        self.prefix_cache = PrefixCache(int(prefix_cache_gb * 2**30)) if prefix_cache_gb else None

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def complete(
        self, jobs: Sequence[Completion], on_batch: Callable[[int, int], None] | None = None
    ) -> list[CompletionResult]:
        ids = [encode_prompt(self.tokenizer, j.text) for j in jobs]
        order = sorted(range(len(jobs)), key=lambda i: len(ids[i]))
        results: list[CompletionResult | None] = [None] * len(jobs)
        for b in range(0, len(order), self.batch_size):
            batch = order[b : b + self.batch_size]
            out = self._run([jobs[i] for i in batch], [ids[i] for i in batch])
            for i, res in zip(batch, out, strict=True):
                results[i] = res
            if on_batch:
                on_batch(len(batch), sum(r.n_new_tokens for r in out))
        return results  # type: ignore[return-value]

    @torch.inference_mode()
    def _run(self, jobs: list[Completion], ids: list[list[int]]) -> list[CompletionResult]:
        start = time.perf_counter()
        pad = self.tokenizer.pad_token_id
        cache = self.prefix_cache
        hits = [cache.lookup(x) for x in ids] if cache else [Hit() for _ in ids]
        rows, mask_rows, cached = batch_layout(ids, [h.n for h in hits], pad)
        input_ids = torch.tensor(rows, device=self.device)
        mask = torch.tensor(mask_rows, device=self.device)
        stops = sorted({s for j in jobs for s in j.stop})
        max_new = max(j.max_new_tokens for j in jobs)
        extra: dict[str, Any] = {}
        if cached:
            extra["past_key_values"] = build_cache(self.model, hits, cached)
        if any(j.stop_repeats for j in jobs):
            guard = RepeatStop(jobs, self.tokenizer, input_ids.shape[1])
            extra["stopping_criteria"] = StoppingCriteriaList([guard])
        out = self.model.generate(
            input_ids=input_ids,
            attention_mask=mask,
            max_new_tokens=max_new,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            logits_processor=LogitsProcessorList([RowSampler(jobs, self.device)]),
            eos_token_id=self.eos_ids,
            pad_token_id=pad,
            stop_strings=stops or None,
            tokenizer=self.tokenizer if stops else None,
            return_dict_in_generate=True,
            **extra,
        )
        width = input_ids.shape[1]
        new_rows = out.sequences[:, width:].tolist()
        results = [
            self._result(job, len(prompt), row, 0.0)
            for job, prompt, row in zip(jobs, ids, new_rows, strict=True)
        ]
        if cache is not None:
            self._keep(cache, out, mask, ids, hits, jobs, new_rows)
        seconds = (time.perf_counter() - start) / len(jobs)
        return [dataclasses.replace(r, seconds=seconds) for r in results]

    def _keep(
        self,
        cache: PrefixCache,
        out: Any,
        mask: torch.Tensor,
        ids: list[list[int]],
        hits: list[Hit],
        jobs: list[Completion],
        new_rows: list[list[int]],
    ) -> None:
        """Store each row's KV: its prompt and the tokens it generated before it ended (the last
        token sampled has no KV yet; a finished row goes on with pads)."""
        cache.record(hits, ids)
        ends = {*self.eos_ids, self.tokenizer.pad_token_id}
        kept = []
        for job, row in zip(jobs, new_rows, strict=True):
            end = next((k for k, t in enumerate(row) if t in ends), len(row))
            kept.append(min(end, job.max_new_tokens, len(row) - 1))
        per_row = row_entries(out.past_key_values, mask, kept)
        if per_row is None:
            return
        for x, hit, kv, n, row in zip(ids, hits, per_row, kept, new_rows, strict=True):
            cache.add(x + row[:n], kv, hit)

    def _result(
        self, job: Completion, n_prompt: int, row: list[int], seconds: float
    ) -> CompletionResult:
        cut = next((k for k, t in enumerate(row) if t in self.eos_ids), None)
        new = row[: job.max_new_tokens] if cut is None else row[:cut]
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        hit = [s for s in job.stop if s in text]
        if hit:
            end = min(text.index(s) + len(s) for s in hit)
            finish, text = "stop", text[:end]
        elif cut is not None and cut < job.max_new_tokens:
            finish = "eos"
        else:
            finish = "length"
        n_new = len(new) + (1 if finish == "eos" else 0)
        return CompletionResult(text, finish, n_prompt, n_new, seconds)


@register_backend("hf")
def _make_hf(model: str = "default", batch_size: int = 16, **options: Any) -> HFBackend:
    return HFBackend(model, batch_size=batch_size, **options)

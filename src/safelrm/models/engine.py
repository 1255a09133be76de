"""The generation engine: ``generate(requests) -> records`` over a backend chosen by name.

Every request is generated in two phases. Phase 1 opens ``<think>`` in the assistant prefill and
writes reasoning until ``</think>`` or ``max_reasoning_tokens`` (budget forcing); phase 2 closes
the tag and writes the answer. Requests with ``cot=False`` skip phase 1 (the family's CoT-off
prefill is used). A request may carry an assistant ``prefix`` to continue from: partial
reasoning, or reasoning plus ``</think>`` and the start of an answer.

A stored record is reused only when its content hash (``requests.content_hash``) matches. A row
that fails (tokenizer error, backend error isolated by retrying its batch row by row, prompt over
the context) becomes an *error record* (``error`` set): the run goes on; a rerun retries it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from safelrm.models.backend import (
    Backend,
    Completion,
    CompletionResult,
    get_backend_factory,
    guard_repeats,
)
from safelrm.models.progress import GenerationProgress
from safelrm.models.requests import (
    GenerationRequest,
    Record,
    SamplingParams,
    content_hash,
    record_key,
    stored_hash,
)
from safelrm.reasoning import ReasoningFamily, detect_family, get_family
from safelrm.store import RecordStore

logger = logging.getLogger(__name__)


def row_seed(seed: int, key: str, phase: int) -> int:
    """A per-(request, sample, phase) seed, stable across runs, batch sizes and resumes."""
    digest = hashlib.sha256(f"{seed}:{key}:{phase}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


@dataclass
class _Row:
    request: GenerationRequest
    sample: int
    prompt: str
    reasoning: str = ""
    answer_prefix: str = ""
    reasoning_done: bool = False
    think_closed: bool = False
    reasoning_finish: str | None = None
    n_prompt_tokens: int = 0
    n_reasoning_tokens: int = 0
    seconds: float = 0.0
    error: str | None = None
    truncated_tokens: int = 0
    request_hash: str = ""

    @property
    def key(self) -> str:
        return record_key(self.request.id, self.sample)


class Engine:
    """Generation over one loaded backend; see the module docstring for the two phases."""

    def __init__(
        self,
        backend: Backend,
        family: ReasoningFamily,
        sampling: SamplingParams | None = None,
        chunk_size: int = 64,
        truncate_prompts: bool = False,
    ) -> None:
        """``chunk_size``: rows generated between two appends to the store (resume granularity).
        ``truncate_prompts``: cut a prompt too long for the model's context to fit (keeping its
        start and the chat template's end) instead of writing an error record for it."""
        self.backend = backend
        self.family = family
        self.sampling = sampling or SamplingParams()
        self.chunk_size = chunk_size
        self.truncate_prompts = truncate_prompts

    @property
    def max_context(self) -> int | None:
        """The model's context length in tokens, when the backend knows it."""
        n = getattr(self.backend, "max_context", None)
        if n is None:
            config = getattr(self.model, "config", None)
            n = getattr(config, "max_position_embeddings", None)
        return int(n) if n else None

    @property
    def tokenizer(self) -> Any:
        return self.backend.tokenizer

    @property
    def model(self) -> Any:
        return getattr(self.backend, "model", None)

    def render(self, messages: list[dict[str, str]], cot: bool = True) -> str:
        return self.family.render_prompt(self.tokenizer, messages, cot)

    def generate(
        self,
        requests: Sequence[GenerationRequest],
        store: RecordStore | None = None,
        progress: bool = True,
        description: str = "generating",
    ) -> list[Record]:
        """Generate every (request, sample); keys already in ``store`` with the same request
        content are skipped (stale and error records are replaced), new records are appended to
        it chunk by chunk. Returns records in request order, error records included."""
        hashes = {req.id: self._hash(req) for req in requests}
        stale = set()
        if store is not None:
            for req in requests:
                for s in range(self._params(req).n):
                    old = store.get(record_key(req.id, s))
                    if old is not None and (old.get("error") or stored_hash(old) != hashes[req.id]):
                        stale.add(record_key(req.id, s))
            if stale:
                logger.info("%d stored records are stale or failed: regenerating", len(stale))
                store.discard(stale)
        done = store.keys() if store is not None else set()
        rows = [
            self._row(req, s, hashes[req.id])
            for req in requests
            for s in range(self._params(req).n)
            if record_key(req.id, s) not in done
        ]
        fresh: dict[str, Record] = {}
        with GenerationProgress(len(rows), description, enabled=progress) as bar:
            for start in range(0, len(rows), self.chunk_size):
                chunk = rows[start : start + self.chunk_size]
                records = self._generate_chunk(chunk, bar)
                if store is not None:
                    store.append([r.model_dump() for r in records])
                fresh.update((r.key, r) for r in records)
        failed = [r for r in fresh.values() if r.error]
        if failed:
            logger.warning(
                "%d of %d rows failed (error records, retried on rerun); first: %s: %s",
                len(failed), len(fresh), failed[0].key, failed[0].error,
            )  # fmt: skip
        out = []
        for req in requests:
            for s in range(self._params(req).n):
                key = record_key(req.id, s)
                if key in fresh:
                    out.append(fresh[key])
                elif store is not None and key in store:
                    out.append(Record.model_validate(store.get(key)))
        return out

    def _params(self, req: GenerationRequest) -> SamplingParams:
        return req.sampling or self.sampling

    def _hash(self, req: GenerationRequest) -> str:
        return content_hash(req.messages, req.prefix, req.cot, self._params(req).model_dump())

    def _row(self, req: GenerationRequest, sample: int, request_hash: str) -> _Row:
        try:
            prompt = self.render(req.messages, req.cot)
        except Exception as e:  # noqa: BLE001 - one bad row must not stop the others
            prompt = ""
            error: str | None = f"cannot render the prompt ({type(e).__name__}: {e})"
        else:
            error = None
        row = _Row(req, sample, prompt, error=error, request_hash=request_hash)
        if error is None:
            self._check_length(row)
        if not req.cot:
            row.answer_prefix, row.reasoning_done = req.prefix, True
            return row
        close = self.family.think_close
        if close in req.prefix:
            reasoning, _, answer = req.prefix.partition(close)
            row.reasoning, row.answer_prefix = reasoning.strip("\n"), answer.lstrip("\n")
            row.reasoning_done = row.think_closed = True
            row.reasoning_finish = "prefix"
        else:
            row.reasoning = req.prefix
        return row

    def _check_length(self, row: _Row) -> None:
        """Error (or, with ``truncate_prompts``, cut) a prompt that leaves no room for its
        budgets in the model's context."""
        context = self.max_context
        if context is None:
            return
        p = self._params(row.request)
        room = context - p.max_new_tokens - (p.max_reasoning_tokens if row.request.cot else 0)
        try:
            ids = self.tokenizer(row.prompt, add_special_tokens=False)["input_ids"]
        except Exception as e:  # noqa: BLE001 - e.g. a lone surrogate the tokenizer rejects
            row.error = f"cannot tokenize the prompt ({type(e).__name__}: {e})"
            return
        if len(ids) <= room:
            return
        if not self.truncate_prompts or room <= 0:
            row.error = (
                f"prompt too long: {len(ids)} tokens, the model's context of {context} leaves "
                f"{max(room, 0)} after the generation budgets (truncate_prompts cuts it to fit)"
            )
            return
        # keep the start of the text and the template's last tokens (the assistant turn opener)
        tail = 16
        kept = ids[: max(room - tail - 8, 0)] + ids[-tail:]  # 8: re-encoding may merge differently
        row.prompt = self.tokenizer.decode(kept)
        row.truncated_tokens = len(ids) - len(kept)

    def _complete(
        self, rows: list[_Row], jobs: list[Completion], on_batch: Callable[[int, int], None]
    ) -> list[CompletionResult | None]:
        """Run ``jobs`` (one per row); when the batch fails, rerun it row by row so that only
        the failing rows become errors (``None``). A ``SafelrmError`` is not a bad row but a bad
        setting or endpoint (server down, unknown model, HTTP error): it stops the run."""
        from safelrm.errors import SafelrmError

        if not jobs:
            return []
        try:
            return list(self.backend.complete(jobs, on_batch))
        except SafelrmError:
            raise
        except Exception as e:  # noqa: BLE001 - isolated below, row by row
            if len(jobs) == 1:
                rows[0].error = f"{type(e).__name__}: {e}"
                return [None]
            logger.warning("a batch failed (%s: %s); retrying its rows one by one", type(e), e)
        out: list[CompletionResult | None] = []
        for r, job in zip(rows, jobs, strict=True):
            try:
                out.append(self.backend.complete([job], None)[0])
            except SafelrmError:
                raise
            except Exception as e:  # noqa: BLE001 - this row is the bad one
                r.error = f"{type(e).__name__}: {e}"
                out.append(None)
        if len(out) > 1 and all(x is None for x in out):
            raise SafelrmError(
                f"generation failed for every row of a batch (first: {rows[0].request.id}: "
                f"{rows[0].error}); finished records are kept, rerun to resume"
            )
        return out

    def _generate_chunk(self, rows: list[_Row], bar: GenerationProgress) -> list[Record]:
        fam = self.family
        failed = [r for r in rows if r.error]
        rows = [r for r in rows if not r.error]
        thinking = [r for r in rows if not r.reasoning_done]
        jobs = []
        for r in thinking:
            p = self._params(r.request)
            jobs.append(
                Completion(
                    text=r.prompt + fam.reasoning_opener + r.reasoning,
                    max_new_tokens=p.max_reasoning_tokens,
                    temperature=p.temperature,
                    top_p=p.top_p,
                    seed=row_seed(p.seed, r.key, 0),
                    stop=[fam.think_close],
                    stop_repeats=dict(p.stop_repeats),
                )
            )
        for r, job, res in zip(
            thinking, jobs, self._complete(thinking, jobs, bar.reasoning_step), strict=True
        ):
            if res is None:
                continue
            res = guard_repeats(job, res)
            text = res.text
            r.think_closed = res.finish == "stop" and fam.think_close in text
            text = text.split(fam.think_close)[0] if r.think_closed else text
            r.reasoning = (r.reasoning + text).strip("\n")
            r.reasoning_finish = res.finish
            r.n_prompt_tokens, r.n_reasoning_tokens = res.n_prompt_tokens, res.n_new_tokens
            r.seconds += res.seconds
        failed += [r for r in rows if r.error]
        rows = [r for r in rows if not r.error]
        jobs = []
        for r in rows:
            p = self._params(r.request)
            head = fam.format_response(r.reasoning if r.request.cot else None, "")
            jobs.append(
                Completion(
                    text=r.prompt + head + r.answer_prefix,
                    max_new_tokens=p.max_new_tokens,
                    temperature=p.temperature,
                    top_p=p.top_p,
                    seed=row_seed(p.seed, r.key, 1),
                    stop=list(p.stop),
                    stop_repeats=dict(p.stop_repeats),
                )
            )
        results = self._complete(rows, jobs, bar.answer_step)
        failed += [r for r in rows if r.error]
        bar.answer_step(len(failed), 0)
        records = [self._error_record(r) for r in failed]
        for r, job, res in zip(rows, jobs, results, strict=True):
            if res is None:
                continue
            res = guard_repeats(job, res)
            p = self._params(r.request)
            records.append(
                Record(
                    id=r.request.id,
                    sample=r.sample,
                    key=r.key,
                    messages=r.request.messages,
                    prompt=r.prompt,
                    prefix=r.request.prefix,
                    reasoning=r.reasoning if r.request.cot else "",
                    answer=(r.answer_prefix + res.text).strip(),
                    # Budget forcing closes the tag itself: the response always has a closed
                    # block; whether the model closed it is in ``reasoning_finish``.
                    think_closed=r.request.cot,
                    reasoning_finish=r.reasoning_finish if r.request.cot else None,
                    answer_finish="stop" if res.finish == "eos" else res.finish,
                    n_prompt_tokens=r.n_prompt_tokens or res.n_prompt_tokens,
                    n_reasoning_tokens=r.n_reasoning_tokens,
                    n_answer_tokens=res.n_new_tokens,
                    model=self.backend.model_name,
                    backend=self.backend.name,
                    family=fam.name,
                    cot=r.request.cot,
                    sampling=p.model_dump(),
                    seconds=round(r.seconds + res.seconds, 4),
                    meta=r.request.meta,
                    truncated_tokens=r.truncated_tokens,
                    request_hash=r.request_hash,
                )
            )
        return records

    def _error_record(self, r: _Row) -> Record:
        return Record(
            id=r.request.id,
            sample=r.sample,
            key=r.key,
            messages=r.request.messages,
            prompt=r.prompt,
            prefix=r.request.prefix,
            reasoning="",
            answer="",
            think_closed=False,
            reasoning_finish=None,
            answer_finish="error",
            n_prompt_tokens=r.n_prompt_tokens,
            n_reasoning_tokens=0,
            n_answer_tokens=0,
            model=self.backend.model_name,
            backend=self.backend.name,
            family=self.family.name,
            cot=r.request.cot,
            sampling=self._params(r.request).model_dump(),
            seconds=round(r.seconds, 4),
            meta=r.request.meta,
            error=r.error,
            request_hash=r.request_hash,
        )


def make_engine(
    model: str = "default",
    backend: str = "hf",
    family: str = "auto",
    batch_size: int = 16,
    sampling: SamplingParams | None = None,
    chunk_size: int | None = None,
    truncate_prompts: bool = False,
    **backend_options: Any,
) -> Engine:
    """Load ``model`` on the named backend and wrap it in an :class:`Engine`."""
    from safelrm.errors import SafelrmError

    be = get_backend_factory(backend)(model=model, batch_size=batch_size, **backend_options)
    if not getattr(be.tokenizer, "chat_template", None):
        raise SafelrmError(
            f"tokenizer of '{model}' has no chat template: set one (tokenizer.chat_template) "
            "or use a chat model"
        )
    if family == "auto":
        config = getattr(getattr(be, "model", None), "config", None)
        family = detect_family(
            f"{model} {getattr(be, 'model_path', '')}",
            getattr(be.tokenizer, "chat_template", None),
            getattr(config, "model_type", ""),
        )
    chunk = chunk_size or 4 * batch_size
    return Engine(be, get_family(family), sampling, chunk, truncate_prompts=truncate_prompts)

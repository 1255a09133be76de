"""The generation engine: ``generate(requests) -> records`` over a backend chosen by name.

Every request is generated in two phases. Phase 1 opens ``<think>`` in the assistant prefill and
writes reasoning until ``</think>`` or ``max_reasoning_tokens`` (budget forcing); phase 2 closes
the tag and writes the answer. Requests with ``cot=False`` skip phase 1 (the family's CoT-off
prefill is used). A request may carry an assistant ``prefix`` to continue from: partial
reasoning, or reasoning plus ``</think>`` and the start of an answer.

Reliability. A stored record is reused only when its request content (messages, prefix, CoT,
sampling: :func:`content_hash`) equals the new request's; otherwise it is regenerated. A row that
fails (a tokenizer error, a backend error isolated by retrying its batch row by row, a prompt
longer than the model's context) becomes an *error record* (``error`` set, empty answer): the
rest of the batch and the run go on, and a rerun retries error records.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel, Field

from safelrm.config import StrictModel
from safelrm.reasoning import ReasoningFamily, detect_family, get_family
from safelrm.store import RecordStore

logger = logging.getLogger(__name__)


class SamplingParams(StrictModel):
    temperature: float = Field(0.0, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_new_tokens: int = Field(256, ge=1, description="answer budget (tokens)")
    max_reasoning_tokens: int = Field(256, ge=1, description="reasoning budget (tokens)")
    n: int = Field(1, ge=1)
    seed: int = 0
    stop: list[str] = Field(default_factory=list)
    stop_repeats: dict[str, int] = Field(
        default_factory=dict,
        description="stop a row once a string has appeared this many times in the generated "
        "text (finish 'repeated_tag'), e.g. {'<safe>': 3} against tag loops",
    )


class GenerationRequest(StrictModel):
    id: str
    messages: list[dict[str, str]]
    prefix: str = ""
    cot: bool = True
    sampling: SamplingParams | None = None
    meta: dict[str, Any] = Field(default_factory=dict)


class Record(BaseModel):
    id: str
    sample: int
    key: str
    messages: list[dict[str, str]]
    prompt: str
    prefix: str
    reasoning: str
    answer: str
    think_closed: bool
    reasoning_finish: str | None
    answer_finish: str
    n_prompt_tokens: int
    n_reasoning_tokens: int
    n_answer_tokens: int
    model: str
    backend: str
    family: str
    cot: bool
    sampling: dict[str, Any]
    seconds: float
    meta: dict[str, Any] = Field(default_factory=dict)
    # why the row failed (then reasoning and answer are empty); None for a normal record
    error: str | None = None
    # prompt tokens cut to fit the model's context (``truncate_prompts``); 0 = untouched
    truncated_tokens: int = 0
    request_hash: str = ""

    def completion(self) -> str:
        """The full assistant text in the family's format."""
        family = get_family(self.family)
        return family.format_response(self.reasoning if self.cot else None, self.answer)


def record_key(request_id: str, sample: int) -> str:
    return f"{request_id}#{sample}"


def content_hash(
    messages: list[dict[str, str]], prefix: str, cot: bool, sampling: dict[str, Any]
) -> str:
    """What a record answers: the same id with other content is a different request."""
    payload = json.dumps([messages, prefix, cot, sampling], sort_keys=True, default=str)
    return hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def stored_hash(rec: dict[str, Any]) -> str:
    """The content hash of a stored record (computed for records written before it was kept)."""
    return rec.get("request_hash") or content_hash(
        rec.get("messages") or [], rec.get("prefix") or "", bool(rec.get("cot")), rec["sampling"]
    )


@dataclass
class Completion:
    """One raw completion job for a backend: continue ``text`` (a rendered prompt)."""

    text: str
    max_new_tokens: int
    temperature: float
    top_p: float
    seed: int
    stop: list[str]
    stop_repeats: dict[str, int] = dataclasses.field(default_factory=dict)


@dataclass
class CompletionResult:
    text: str
    # "stop" (a stop string), "eos" (end of turn), "length" (budget), "repeated_tag"
    finish: str
    n_prompt_tokens: int
    n_new_tokens: int
    seconds: float


class Backend(Protocol):
    name: str
    model_name: str
    tokenizer: Any

    def complete(
        self, jobs: Sequence[Completion], on_batch: Callable[[int, int], None] | None = None
    ) -> list[CompletionResult]:
        """Run the jobs; ``on_batch(n_jobs_done, n_new_tokens)`` after every batch."""
        ...


_BACKENDS: dict[str, Callable[..., Backend]] = {}
# Built-in backends register themselves when their module is imported, on first use.
_BACKEND_MODULES = {
    "hf": "safelrm.models.hf",
    "vllm": "safelrm.models.vllm",
    "openai": "safelrm.models.openai",
}


def register_backend(name: str) -> Callable[[Callable[..., Backend]], Callable[..., Backend]]:
    def deco(factory: Callable[..., Backend]) -> Callable[..., Backend]:
        _BACKENDS[name] = factory
        return factory

    return deco


def list_backends() -> list[str]:
    return sorted(set(_BACKENDS) | set(_BACKEND_MODULES))


def get_backend_factory(name: str) -> Callable[..., Backend]:
    from safelrm.errors import SafelrmError

    if name not in _BACKENDS and name in _BACKEND_MODULES:
        importlib.import_module(_BACKEND_MODULES[name])
    if name not in _BACKENDS:
        raise SafelrmError(f"unknown backend '{name}' (known: {', '.join(list_backends())})")
    return _BACKENDS[name]


def cut_repeats(text: str, limits: dict[str, int]) -> str | None:
    """``text`` up to the end of the first string's ``n``-th occurrence, for the first string of
    ``limits`` to reach its count; None when none does. Backends may stop such rows early; the
    engine cuts every backend's text here, so the result does not depend on the backend."""
    ends = []
    for tag, n in limits.items():
        pos = -1
        for _ in range(n):
            pos = text.find(tag, pos + 1)
            if pos < 0:
                break
        if pos >= 0:
            ends.append(pos + len(tag))
    return text[: min(ends)] if ends else None


def _guard(job: Completion, res: CompletionResult) -> CompletionResult:
    cut = cut_repeats(res.text, job.stop_repeats) if job.stop_repeats else None
    if cut is None:
        return res
    return dataclasses.replace(res, text=cut, finish="repeated_tag")


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
        with _Progress(len(rows), description, enabled=progress) as bar:
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

    def _generate_chunk(self, rows: list[_Row], bar: _Progress) -> list[Record]:
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
            res = _guard(job, res)
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
            res = _guard(job, res)
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


class _Progress:
    """A rich progress bar over prompts (a prompt counts when its answer is done), showing
    finished prompts/s and tokens/s."""

    def __init__(self, total: int, description: str, enabled: bool) -> None:
        self.total, self.description, self.enabled = total, description, enabled and total > 0
        self.tokens, self.answered, self.start = 0, 0, time.perf_counter()

    def __enter__(self) -> _Progress:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
            )
            self._bar.start()
            self._task = self._bar.add_task(self.description, total=self.total, rate="")
        return self

    def reasoning_step(self, n_done: int, n_tokens: int) -> None:
        self._step(n_done, n_tokens, answered=0)

    def answer_step(self, n_done: int, n_tokens: int) -> None:
        self._step(n_done, n_tokens, answered=n_done)

    def _step(self, n_done: int, n_tokens: int, answered: int) -> None:
        self.tokens += n_tokens
        self.answered += answered
        if not self.enabled:
            return
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        rate = f"{self.answered / elapsed:.2f} prompts/s  {self.tokens / elapsed:.1f} tok/s"
        self._bar.update(self._task, advance=answered, rate=rate)

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self._bar.stop()


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

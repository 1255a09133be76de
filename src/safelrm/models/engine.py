"""The generation engine: ``generate(requests) -> records`` over a backend chosen by name.

Every request is generated in two phases. Phase 1 opens ``<think>`` in the assistant prefill and
writes reasoning until ``</think>`` or ``max_reasoning_tokens`` (budget forcing); phase 2 closes
the tag and writes the answer. Requests with ``cot=False`` skip phase 1 (the family's CoT-off
prefill is used). A request may carry an assistant ``prefix`` to continue from: partial
reasoning, or reasoning plus ``</think>`` and the start of an answer.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel, Field

from safelrm.config import StrictModel
from safelrm.reasoning import ReasoningFamily, detect_family, get_family
from safelrm.store import RecordStore


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

    def completion(self) -> str:
        """The full assistant text in the family's format."""
        family = get_family(self.family)
        return family.format_response(self.reasoning if self.cot else None, self.answer)


def record_key(request_id: str, sample: int) -> str:
    return f"{request_id}#{sample}"


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
    ) -> None:
        """``chunk_size``: rows generated between two appends to the store (resume granularity)."""
        self.backend = backend
        self.family = family
        self.sampling = sampling or SamplingParams()
        self.chunk_size = chunk_size

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
        """Generate every (request, sample); keys already in ``store`` are skipped, new records
        are appended to it chunk by chunk. Returns records in request order."""
        done = store.keys() if store is not None else set()
        rows = [
            self._row(req, s)
            for req in requests
            for s in range(self._params(req).n)
            if record_key(req.id, s) not in done
        ]
        fresh: dict[str, Record] = {}
        n_jobs = len(rows) + sum(not r.reasoning_done for r in rows)
        with _Progress(n_jobs, description, enabled=progress) as bar:
            for start in range(0, len(rows), self.chunk_size):
                chunk = rows[start : start + self.chunk_size]
                records = self._generate_chunk(chunk, bar)
                if store is not None:
                    store.append([r.model_dump() for r in records])
                fresh.update((r.key, r) for r in records)
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

    def _row(self, req: GenerationRequest, sample: int) -> _Row:
        row = _Row(req, sample, self.render(req.messages, req.cot))
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

    def _generate_chunk(self, rows: list[_Row], bar: _Progress) -> list[Record]:
        fam = self.family
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
        results = self.backend.complete(jobs, bar.reasoning_step)
        for r, job, res in zip(thinking, jobs, results, strict=True):
            res = _guard(job, res)
            text = res.text
            r.think_closed = res.finish == "stop" and fam.think_close in text
            text = text.split(fam.think_close)[0] if r.think_closed else text
            r.reasoning = (r.reasoning + text).strip("\n")
            r.reasoning_finish = res.finish
            r.n_prompt_tokens, r.n_reasoning_tokens = res.n_prompt_tokens, res.n_new_tokens
            r.seconds += res.seconds
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
        records = []
        results = self.backend.complete(jobs, bar.answer_step)
        for r, job, res in zip(rows, jobs, results, strict=True):
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
                )
            )
        return records


class _Progress:
    """A rich progress bar over phase jobs, showing finished prompts/s and tokens/s."""

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
        self._bar.update(self._task, advance=n_done, rate=rate)

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
    return Engine(be, get_family(family), sampling, chunk_size or 4 * batch_size)

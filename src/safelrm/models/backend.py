"""What a generation backend is: raw completion jobs in, results out, and backends by name.

A backend continues rendered prompt text (:class:`Completion`) and returns
:class:`CompletionResult`; the engine (``engine.py``) does rendering, phases and records. Built-in
backends (``hf``, ``vllm``, ``openai``) register themselves with :func:`register_backend` when
their module is first imported.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


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


def guard_repeats(job: Completion, res: CompletionResult) -> CompletionResult:
    """``res`` cut by the job's ``stop_repeats`` (finish ``repeated_tag``), else unchanged."""
    cut = cut_repeats(res.text, job.stop_repeats) if job.stop_repeats else None
    if cut is None:
        return res
    return dataclasses.replace(res, text=cut, finish="repeated_tag")

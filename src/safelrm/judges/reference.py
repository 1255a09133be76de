"""A reference judge's model on any generation backend, chosen by name (``hf``, ``vllm``,
``openai``...: the engine's backend registry).

Reference judges render their prompt to text themselves (HarmBench's raw ``[INST]`` prompt, or
the guard model's own chat template) and decode greedily; the backend only continues text. It is
loaded on first use, so a judge can be built (and its options checked) without loading a model,
and a fully cached rerun never loads it.
"""

from __future__ import annotations

from typing import Any

from safelrm.errors import SafelrmError
from safelrm.judges.base import Judge, JudgeItem, Verdict

# Backends that encode a prompt without special tokens (``models/prompt_ids.py``), so a judge whose
# reference tokenizer adds BOS must write it into the text. A served backend that sends token ids
# (``openai`` with ``token_prompts``, its default) encodes the same way.
LOCAL_BACKENDS = ("hf", "vllm")


class JudgeModel:
    """Greedy completions of rendered prompts from ``model`` on the backend named ``backend``.

    ``backend_options`` go to the backend's factory (e.g. ``dtype`` for ``hf``, ``base_url`` for
    ``openai``). ``tokenizer``: where to read the tokenizer when the backend has none (a served
    model); default: ``model``. A backend other than ``hf``/``vllm`` gets it as its own
    ``tokenizer`` option too (``openai`` encodes prompts with it), unless one is given there.
    """

    def __init__(
        self,
        model: str,
        backend: str = "hf",
        batch_size: int = 8,
        tokenizer: str | None = None,
        backend_options: dict[str, Any] | None = None,
    ) -> None:
        from safelrm.models.backend import get_backend_factory

        self.model = model
        self.backend_name = backend
        self.batch_size = batch_size
        self.tokenizer_spec = tokenizer
        self.backend_options = dict(backend_options or {})
        self._factory = get_backend_factory(backend)  # an unknown backend fails here
        self._backend: Any = None
        self._tokenizer: Any = None

    @property
    def backend(self) -> Any:
        if self._backend is None:
            options = dict(self.backend_options)
            if self.tokenizer_spec and self.backend_name not in LOCAL_BACKENDS:
                options.setdefault("tokenizer", self.tokenizer_spec)
            try:
                self._backend = self._factory(
                    model=self.model, batch_size=self.batch_size, **options
                )
            except TypeError as e:
                raise SafelrmError(
                    f"backend '{self.backend_name}': bad options {sorted(self.backend_options)} "
                    f"({e})"
                ) from None
        return self._backend

    @property
    def tokenizer(self) -> Any:
        """The judge model's tokenizer: from ``tokenizer`` if given, else the backend's, else
        loaded from ``model`` (a served backend may have none)."""
        if self._tokenizer is None:
            from safelrm.models.loading import load_tokenizer

            if self.tokenizer_spec:
                self._tokenizer = load_tokenizer(self.tokenizer_spec)
            else:
                found = getattr(self.backend, "tokenizer", None)
                self._tokenizer = found or load_tokenizer(self.model)
        return self._tokenizer

    def bos_prefix(self) -> str:
        """The BOS token to write before a raw prompt, when the reference tokenizer adds one by
        itself and the backend encodes without special tokens (a local backend, or a served one
        sent token ids); else ``""`` (a server that tokenizes text adds BOS itself)."""
        local = self.backend_name in LOCAL_BACKENDS
        if not local and not getattr(self.backend, "token_prompts", False):
            return ""
        tok = self.tokenizer
        bos, bos_id = getattr(tok, "bos_token", None), getattr(tok, "bos_token_id", None)
        if not bos or bos_id is None:
            return ""
        ids = tok("a")["input_ids"]
        return bos if ids and ids[0] == bos_id else ""

    def complete(self, texts: list[str], max_new_tokens: int) -> list[str]:
        """Greedy continuations of ``texts`` (special tokens skipped, as the backends decode)."""
        from safelrm.models.backend import Completion

        if not texts:
            return []
        jobs = [
            Completion(
                text=t, max_new_tokens=max_new_tokens, temperature=0.0, top_p=1.0, seed=0, stop=[]
            )
            for t in texts
        ]
        return [r.text for r in self.backend.complete(jobs)]


class ReferenceJudge(Judge):
    """A judge that reads the answer or the reasoning the same way: ``_run(items, texts)``."""

    def _run(self, items: list[JudgeItem], texts: list[str]) -> list[Verdict]:
        raise NotImplementedError

    def _judge_answers(self, items: list[JudgeItem]) -> list[Verdict]:
        return self._run(items, [it.answer for it in items])

    def _judge_reasoning(self, items: list[JudgeItem]) -> list[Verdict]:
        return self._run(items, [it.reasoning for it in items])

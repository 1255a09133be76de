"""The engine's progress bar (rich), counting prompts and tokens per second."""

from __future__ import annotations

import time


class GenerationProgress:
    """A rich progress bar over prompts (a prompt counts when its answer is done), showing
    finished prompts/s and tokens/s."""

    def __init__(self, total: int, description: str, enabled: bool) -> None:
        self.total, self.description, self.enabled = total, description, enabled and total > 0
        self.tokens, self.answered, self.start = 0, 0, time.perf_counter()

    def __enter__(self) -> GenerationProgress:
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

"""Where a shared prefix can end so that it tokenises the same alone and in every completion.

TRL's ``DPOTrainer`` tokenises ``prompt``, ``prompt + chosen`` and ``prompt + rejected`` with the
tokenizer's ``__call__`` (special tokens on) and starts the loss where the three stop agreeing.
If the prompt ended inside a merge (``"...\\n\\n"`` is one token alone but two in context), some
prompt tokens would move into the loss. :func:`aligned_cut` walks a cut back to the nearest
position where the prompt alone is a token prefix of every prompt + completion, so the masked
region is exactly the prompt's tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def trl_ids(tokenizer: Any, text: str) -> list[int]:
    """Token ids the way TRL tokenises a text row (``tokenizer(text)``, special tokens on)."""
    return list(tokenizer(text)["input_ids"])


@dataclass(frozen=True)
class Boundary:
    """``prompt_ids`` is a prefix of every ``full_ids`` when ``clean``."""

    prompt_ids: list[int]
    full_ids: list[list[int]]

    @property
    def n_prompt(self) -> int:
        return len(self.prompt_ids)

    @property
    def clean(self) -> bool:
        n = self.n_prompt
        return all(ids[:n] == self.prompt_ids and len(ids) > n for ids in self.full_ids)


def check_boundary(tokenizer: Any, prompt: str, completions: list[str]) -> Boundary:
    return Boundary(
        trl_ids(tokenizer, prompt), [trl_ids(tokenizer, prompt + c) for c in completions]
    )


def aligned_cut(
    tokenizer: Any, head: str, completions: list[str], max_char: int, max_steps: int = 8
) -> int | None:
    """The largest ``cut <= max_char`` such that ``head + completions[k][:cut]`` (the same text
    for every k) tokenises as a token prefix of every ``head + completions[k]``.

    The candidates are the token ends of the first completion in context, walked back from
    ``max_char`` for at most ``max_steps`` tokens. ``None`` when none works.
    """
    first = completions[0]
    if any(c[:max_char] != first[:max_char] for c in completions):
        raise ValueError("the completions differ before max_char")
    enc = tokenizer(head + first, add_special_tokens=False, return_offsets_mapping=True)
    ends = sorted(
        {
            end - len(head)
            for _, end in enc["offset_mapping"]
            if len(head) < end <= len(head) + max_char
        }
    )
    candidates = ([max_char] if max_char not in ends else []) + ends[::-1]
    for cut in candidates[: max_steps + 1]:
        b = check_boundary(tokenizer, head + first[:cut], [c[cut:] for c in completions])
        if b.clean:
            return cut
    return None

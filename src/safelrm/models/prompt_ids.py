"""Token ids of a text that the model will continue, as they would be inside a training text.

A prompt that ends in whitespace tokenizes differently at the end of a string than in the middle
of one. GPT-2-style pre-tokenizers (SmolLM2's among them) keep a trailing ``"\\n\\n"`` whole, but
split it as ``"\\n", "\\n"`` when text follows. So a model trained on ``</think>\\n\\n<safe>`` never
saw the ``"\\n\\n"`` token that ends the engine's answer prompt ``...</think>\\n\\n``, and its
next-token choice there is untrained. Encoding the prompt as if text followed (a sentinel appended,
then its tokens removed) gives the model the context it was trained on. Tokenizers whose trailing
whitespace does not depend on what follows get the same ids either way; by their pre-tokenizer
patterns Qwen's and Llama 3's should be among them (not checked: no such tokenizer offline).
"""

from __future__ import annotations

from typing import Any

SENTINEL = "A"


def encode_prompt(tokenizer: Any, text: str) -> list[int]:
    """``tokenizer(text)`` ids, with a trailing whitespace run split as it is before more text.

    Falls back to the plain encoding when the sentinel merges with the whitespace (a trailing
    space: ``" A"`` is one token) or the ids without it do not decode to ``text``.
    """
    if text[-1:].isspace():
        tail = tokenizer(SENTINEL, add_special_tokens=False)["input_ids"]
        joint = tokenizer(text + SENTINEL, add_special_tokens=False)["input_ids"]
        head = joint[: -len(tail)]
        decoded = tokenizer.decode(head, clean_up_tokenization_spaces=False)
        if joint[-len(tail) :] == tail and decoded == text:
            return head
    return tokenizer(text, add_special_tokens=False)["input_ids"]

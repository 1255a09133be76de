"""Turn method rows into the text rows the trainers consume (see README.md in this folder).

Why text, not conversational rows: stock chat templates (Qwen3, DeepSeek-R1) strip ``<think>``
content from assistant turns, and ChatML templates such as SmolLM2's have no ``{% generation %}``
markers. So the prompt is rendered once with the model's own template (``add_generation_prompt``)
and the assistant turn is appended verbatim; TRL then masks the prompt and trains on the whole
completion, reasoning included.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from safelrm.errors import SafelrmError, where

THINK_OPEN = "<think>"
_MARKER = "\u241fSAFELRM_END_OF_TURN_PROBE\u241f"


def _messages(value: Any, source: str, row: int, field: str) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise SafelrmError(f"{where(source, row, field)}: expected a non-empty list of messages")
    for m in value:
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise SafelrmError(f"{where(source, row, field)}: each message needs a string 'role'")
        if not isinstance(m.get("content"), str):
            raise SafelrmError(
                f"{where(source, row, field)}: each message needs a string 'content'"
            )
    return value


def _assistant_text(value: Any, source: str, row: int, field: str) -> str:
    """A completion is a string or a list holding one assistant message."""
    if isinstance(value, str):
        return value
    msgs = _messages(value, source, row, field)
    if len(msgs) != 1 or msgs[0]["role"] != "assistant":
        raise SafelrmError(
            f"{where(source, row, field)}: expected a string or exactly one assistant message"
        )
    return msgs[0]["content"]


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading token ids ``a`` and ``b`` share."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _adds_bos(tokenizer: Any) -> bool:
    bos = tokenizer.bos_token_id
    if bos is None:
        return False
    ids = tokenizer("a")["input_ids"]
    return (
        bool(ids)
        and ids[0] == bos
        and tokenizer("a", add_special_tokens=False)["input_ids"][:1] != [bos]
    )


def render_prompt(tokenizer: Any, prompt: list[dict[str, str]] | str) -> str:
    """The prompt as the model sees it before its answer; a string is taken as already rendered.

    A leading BOS written by the template is dropped when the tokenizer adds its own, because TRL
    tokenizes text rows with special tokens on (else the sequence would start with two BOS).
    """
    if isinstance(prompt, str):
        return prompt
    text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    bos = tokenizer.bos_token
    if bos and text.startswith(bos) and _adds_bos(tokenizer):
        text = text[len(bos) :]
    return text


def end_of_turn(tokenizer: Any) -> str:
    """The text the chat template writes after an assistant message (e.g. ``<|im_end|>``).

    Falls back to the EOS token when the template cannot be probed or writes nothing special.
    """
    probe = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": _MARKER}]
    try:
        text = tokenizer.apply_chat_template(probe, tokenize=False)
    except Exception:  # any template failure means the probe is not possible
        text = ""
    tail = text.split(_MARKER, 1)[1].rstrip() if _MARKER in text else ""
    return tail or (tokenizer.eos_token or "")


def join_completion(prompt: str, completion: str, eot: str) -> str:
    """The completion text to train on: verbatim, ``eot`` appended once.

    Templates that open the reasoning in the generation prompt (``...assistant\\n<think>\\n``)
    would otherwise see a second ``<think>``: the duplicate opener is dropped from the completion.
    """
    if prompt.rstrip().endswith(THINK_OPEN) and completion.lstrip().startswith(THINK_OPEN):
        completion = completion.lstrip()[len(THINK_OPEN) :]
        if prompt.endswith("\n") and completion.startswith("\n"):
            completion = completion[1:]
    if eot and not completion.endswith(eot):
        completion += eot
    return completion


def _from_messages(row: Any, source: str, n: int) -> Any:
    """TRL's conversational ``{"messages": [...]}`` row -> prompt (every turn before the last) and
    completion (the last turn, which must be the assistant's)."""
    if not isinstance(row, dict) or "messages" not in row or "prompt" in row:
        return row
    msgs = _messages(row["messages"], source, n, "messages")
    if len(msgs) < 2 or msgs[-1]["role"] != "assistant":
        raise SafelrmError(
            f"{where(source, n, 'messages')}: expected turns ending with an assistant message"
        )
    return {"prompt": msgs[:-1], "completion": msgs[-1:]}


def _implicit_prompt(row: Any, source: str, n: int) -> Any:
    """TRL's implicit-prompt preference row (``chosen``/``rejected`` are whole conversations)
    -> the shared turns as prompt and each last assistant turn as the answer."""
    if not isinstance(row, dict) or "prompt" in row:
        return row
    if not all(isinstance(row.get(f), list) for f in ("chosen", "rejected")):
        return row
    chosen = _messages(row["chosen"], source, n, "chosen")
    rejected = _messages(row["rejected"], source, n, "rejected")
    if chosen[:-1] != rejected[:-1] or len(chosen) < 2:
        raise SafelrmError(
            f"{where(source, n, 'chosen')}: without 'prompt', chosen and rejected must share "
            "every turn but the last"
        )
    return {"prompt": chosen[:-1], "chosen": chosen[-1:], "rejected": rejected[-1:]}


def _require(row: Any, fields: tuple[str, ...], source: str, n: int) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise SafelrmError(f"{where(source, n)}: expected an object with fields {list(fields)}")
    for f in fields:
        if f not in row:
            raise SafelrmError(f"{where(source, n, f)}: missing")
    return row


def render_sft_rows(
    tokenizer: Any, rows: Iterable[dict[str, Any]], source: str = "sft rows"
) -> list[dict[str, str]]:
    """``{"prompt": messages|str, "completion": [assistant msg]|str}`` or ``{"messages": [...]}``
    -> text prompt/completion."""
    eot = end_of_turn(tokenizer)
    out = []
    for n, row in enumerate(rows, 1):
        row = _require(_from_messages(row, source, n), ("prompt", "completion"), source, n)
        prompt = row["prompt"]
        if not isinstance(prompt, str):
            prompt = render_prompt(tokenizer, _messages(prompt, source, n, "prompt"))
        completion = _assistant_text(row["completion"], source, n, "completion")
        out.append({"prompt": prompt, "completion": join_completion(prompt, completion, eot)})
    if not out:
        raise SafelrmError(f"{source}: no rows to train on")
    return out


def render_dpo_rows(
    tokenizer: Any, rows: Iterable[dict[str, Any]], source: str = "dpo rows"
) -> list[dict[str, str]]:
    """``{"prompt", "chosen", "rejected"}`` (messages or strings), or ``{"chosen", "rejected"}``
    as whole conversations (implicit prompt) -> text rows for DPO."""
    eot = end_of_turn(tokenizer)
    out = []
    for n, row in enumerate(rows, 1):
        row = _require(
            _implicit_prompt(row, source, n), ("prompt", "chosen", "rejected"), source, n
        )
        prompt = row["prompt"]
        if not isinstance(prompt, str):
            prompt = render_prompt(tokenizer, _messages(prompt, source, n, "prompt"))
        rendered = {"prompt": prompt}
        for f in ("chosen", "rejected"):
            rendered[f] = join_completion(prompt, _assistant_text(row[f], source, n, f), eot)
        out.append(rendered)
    if not out:
        raise SafelrmError(f"{source}: no rows to train on")
    return out

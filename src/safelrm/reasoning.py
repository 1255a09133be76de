"""Reasoning formats: how a model family renders a chat, opens and closes its chain of thought,
turns it off, and how an output splits into reasoning and answer.

Every family writes the assistant turn as ``<think>\\n{reasoning}\\n</think>\\n\\n{answer}``.
The engine always opens ``<think>`` itself (two-phase generation with budget forcing), so a model
without native reasoning (the embedded default) reasons too, and a real LRM's runaway reasoning
is capped at ``max_reasoning_tokens``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from safelrm.errors import SafelrmError

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"


@dataclass(frozen=True)
class Parsed:
    reasoning: str
    answer: str
    think_closed: bool


@dataclass(frozen=True)
class ReasoningFamily:
    """A model family's reasoning format.

    ``cot_off_prefill``: what the assistant turn starts with when chain of thought is off (R1
    distills: an empty think block). ``template_kwargs_on/off``: extra chat-template arguments
    (Qwen3's ``enable_thinking``).
    """

    name: str
    cot_off_prefill: str = ""
    template_kwargs_on: tuple[tuple[str, Any], ...] = ()
    template_kwargs_off: tuple[tuple[str, Any], ...] = ()
    think_open: str = THINK_OPEN
    think_close: str = THINK_CLOSE

    @property
    def reasoning_opener(self) -> str:
        return self.think_open + "\n"

    def closing(self) -> str:
        """What goes between the reasoning and the answer."""
        return "\n" + self.think_close + "\n\n"

    def render_prompt(self, tokenizer: Any, messages: list[dict[str, str]], cot: bool) -> str:
        """The prompt text up to where the assistant starts writing, without any think opener.

        A template that already opens ``<think>`` (newer R1-distill templates) or prefills an
        empty think block (Qwen3 with ``enable_thinking=False``) has that part cut off here, so
        that the engine controls the opener uniformly.
        """
        if not getattr(tokenizer, "chat_template", None):
            raise SafelrmError(
                f"tokenizer of '{getattr(tokenizer, 'name_or_path', '?')}' has no chat template: "
                "set one (tokenizer.chat_template) or use a chat model"
            )
        kwargs = dict(self.template_kwargs_on if cot else self.template_kwargs_off)
        text = tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True, **kwargs
        )
        for tail in (self.think_open + "\n\n" + self.think_close + "\n\n", self.reasoning_opener):
            if text.endswith(tail):
                return text[: -len(tail)]
        return text

    def assistant_start(self, cot: bool) -> str:
        """Prefill that starts the assistant turn: the think opener, or the CoT-off prefill."""
        return self.reasoning_opener if cot else self.cot_off_prefill

    def format_response(self, reasoning: str | None, answer: str) -> str:
        """The full assistant text in this family's format (``reasoning=None``: CoT off)."""
        if reasoning is None:
            return self.cot_off_prefill + answer
        return self.reasoning_opener + reasoning.strip("\n") + self.closing() + answer

    def parse(self, text: str) -> Parsed:
        """Split a full assistant text into reasoning and answer.

        Without a think opener the whole text is the answer; an opener without a close is all
        reasoning (``think_closed=False``, empty answer).
        """
        start = text.find(self.think_open)
        if start < 0:
            end = text.find(self.think_close)
            if end < 0:
                return Parsed("", text.strip(), False)
            # Templates that put the opener in the prompt leave only the close in the output.
            return Parsed(text[:end].strip(), text[end + len(self.think_close) :].strip(), True)
        body = text[start + len(self.think_open) :]
        end = body.find(self.think_close)
        if end < 0:
            return Parsed(body.strip(), "", False)
        return Parsed(body[:end].strip(), body[end + len(self.think_close) :].strip(), True)


_FAMILIES: dict[str, ReasoningFamily] = {}


def register_family(family: ReasoningFamily) -> ReasoningFamily:
    _FAMILIES[family.name] = family
    return family


register_family(ReasoningFamily("generic"))
register_family(
    ReasoningFamily("r1-distill", cot_off_prefill=THINK_OPEN + "\n\n" + THINK_CLOSE + "\n\n")
)
register_family(
    ReasoningFamily(
        "qwen3",
        template_kwargs_on=(("enable_thinking", True),),
        template_kwargs_off=(("enable_thinking", False),),
    )
)


def get_family(name: str) -> ReasoningFamily:
    try:
        return _FAMILIES[name]
    except KeyError:
        raise SafelrmError(
            f"unknown reasoning family '{name}' (known: {', '.join(sorted(_FAMILIES))}, auto)"
        ) from None


def list_families() -> list[str]:
    return sorted(_FAMILIES)


_DETECTORS: list[tuple[str, Callable[[str, str], bool]]] = [
    ("r1-distill", lambda name, tpl: "deepseek-r1" in name or "<｜Assistant｜>" in tpl),
    ("qwen3", lambda name, tpl: "qwen3" in name or "enable_thinking" in tpl),
]


def detect_family(model_name: str, chat_template: str | None, model_type: str = "") -> str:
    """Guess the family from the model's name, type and chat template; ``generic`` otherwise."""
    name = f"{model_name} {model_type}".lower()
    tpl = chat_template or ""
    for family, matches in _DETECTORS:
        if matches(name, tpl):
            return family
    return "generic"

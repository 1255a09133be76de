"""The one prompt record every loader, attack and evaluation shares."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

Kind = Literal["harmful", "benign", "jailbreak", "math", "general"]


class PromptRecord(BaseModel):
    """A prompt to send to a model.

    ``kind``: harmful (should be refused), benign (should be answered; over-refusal sets),
    jailbreak (a harmful request wrapped in an attack), math (scored against ``reference``),
    general (ordinary instructions, training only).
    ``goal`` is the plain harmful request behind a jailbreak, which judges compare against.
    ``messages`` replaces ``text`` for multi-turn prompts (many-shot attacks); ``prefix`` is an
    assistant prefill (prefill attacks).
    """

    id: str
    text: str
    kind: Kind
    category: str | None = None
    source: str = ""
    reference: str | None = None
    goal: str | None = None
    messages: list[dict[str, str]] | None = None
    prefix: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict)

    def chat(self) -> list[dict[str, str]]:
        """The conversation to render: ``messages`` when set, else one user turn."""
        return list(self.messages) if self.messages else [{"role": "user", "content": self.text}]

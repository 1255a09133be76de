"""What is asked of the engine and what it writes: sampling settings, requests, records, and the
record key and content hash that make a stored record answer exactly one request."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, Field

from safelrm.config import StrictModel
from safelrm.reasoning import get_family


class SamplingParams(StrictModel):
    temperature: float = Field(0.0, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_new_tokens: int = Field(256, ge=1, description="answer budget (tokens)")
    max_reasoning_tokens: int = Field(256, ge=1, description="reasoning budget (tokens)")
    n: int = Field(1, ge=1)
    seed: int = 0
    stop: list[str] = Field(default_factory=list)
    stop_repeats: dict[str, int] = Field(
        default_factory=dict,
        description="stop a row once a string has appeared this many times in the generated "
        "text (finish 'repeated_tag'), e.g. {'<safe>': 3} against tag loops",
    )


class GenerationRequest(StrictModel):
    id: str
    messages: list[dict[str, str]]
    prefix: str = ""
    cot: bool = True
    sampling: SamplingParams | None = None
    meta: dict[str, Any] = Field(default_factory=dict)


class Record(BaseModel):
    id: str
    sample: int
    key: str
    messages: list[dict[str, str]]
    prompt: str
    prefix: str
    reasoning: str
    answer: str
    think_closed: bool
    reasoning_finish: str | None
    answer_finish: str
    n_prompt_tokens: int
    n_reasoning_tokens: int
    n_answer_tokens: int
    model: str
    backend: str
    family: str
    cot: bool
    sampling: dict[str, Any]
    seconds: float
    meta: dict[str, Any] = Field(default_factory=dict)
    # why the row failed (then reasoning and answer are empty); None for a normal record
    error: str | None = None
    # prompt tokens cut to fit the model's context (``truncate_prompts``); 0 = untouched
    truncated_tokens: int = 0
    request_hash: str = ""

    def completion(self) -> str:
        """The full assistant text in the family's format."""
        family = get_family(self.family)
        return family.format_response(self.reasoning if self.cot else None, self.answer)


def record_key(request_id: str, sample: int) -> str:
    return f"{request_id}#{sample}"


def content_hash(
    messages: list[dict[str, str]], prefix: str, cot: bool, sampling: dict[str, Any]
) -> str:
    """What a record answers: the same id with other content is a different request."""
    payload = json.dumps([messages, prefix, cot, sampling], sort_keys=True, default=str)
    return hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def stored_hash(rec: dict[str, Any]) -> str:
    """The content hash of a stored record (computed for records written before it was kept)."""
    return rec.get("request_hash") or content_hash(
        rec.get("messages") or [], rec.get("prefix") or "", bool(rec.get("cot")), rec["sampling"]
    )

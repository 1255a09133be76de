"""The compliance-cue detector: the earliest sentence where a reasoning turns to *how to comply*.

Every backend returns a raw answer (a sentence number, 0 for none, or ``None`` when its output
could not be read); :func:`validate_cue` then decides what happens to it, so that the rules are
the same for all backends: unparsed output, a number out of range and a cue in the first
sentence are each counted under their own status and skipped, never guessed.

Backends: ``lexical`` (compliance markers, a data file; cheap, for small models) and ``llm`` (a
few-shot prompt, a data file) run on the policy itself through the engine, on a local model
through another engine, or on an OpenAI-compatible endpoint.
"""

from __future__ import annotations

import json
import os
import re
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Protocol

from safelrm.errors import SafelrmError
from safelrm.methods.ipo.sentences import numbered

CueStatus = Literal[
    "cue",
    "no_cue",
    "unparsed",
    "out_of_range",
    "first_sentence",
    "too_early",
    "too_short",
    "no_reasoning",
]
_ANSWER = re.compile(r"^\s*(?:\**\s*)?(?:cue|answer)\s*\**\s*[:=]\s*\**\s*(-?\d+)\b", re.I | re.M)


@dataclass(frozen=True)
class Detection:
    """A detector's raw reading: ``number`` (0 = no cue) or ``None`` when unparsed."""

    number: int | None
    raw: str = ""


@dataclass(frozen=True)
class CueCheck:
    status: CueStatus
    number: int | None = None


def read_data_file(name: str, path: str | Path | None = None) -> str:
    """A prompt data file: ``path`` when given, else the one shipped in ``ipo/prompts/``."""
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise SafelrmError(f"{p}: file not found")
        return p.read_text(encoding="utf-8")
    return resources.files("safelrm.methods.ipo").joinpath("prompts", name).read_text("utf-8")


def data_lines(name: str, path: str | Path | None = None) -> list[str]:
    """Non-empty, non-comment lines of a data file."""
    lines = (line.strip() for line in read_data_file(name, path).splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def parse_cue_answer(text: str) -> int | None:
    """The number in ``CUE: <n>`` (or a bare integer answer); ``None`` when absent or when two
    answer lines disagree."""
    found = {int(m) for m in _ANSWER.findall(text)}
    if not found:
        bare = text.strip().strip("*`.").strip()
        return int(bare) if re.fullmatch(r"-?\d+", bare) else None
    return found.pop() if len(found) == 1 else None


def validate_cue(detection: Detection, n_sentences: int, first_allowed: int = 2) -> CueCheck:
    """Apply the cue rules: 0 = no cue; 1 (or anything before ``first_allowed``) is too early;
    beyond the last sentence or negative is out of range."""
    n = detection.number
    if n is None:
        return CueCheck("unparsed")
    if n == 0:
        return CueCheck("no_cue")
    if n < 0 or n > n_sentences:
        return CueCheck("out_of_range", n)
    if n == 1:
        return CueCheck("first_sentence", n)
    if n < first_allowed:
        return CueCheck("too_early", n)
    return CueCheck("cue", n)


class CueDetector(Protocol):
    name: str

    def detect(
        self, requests: Sequence[str], sentences: Sequence[Sequence[str]], first_allowed: int = 2
    ) -> list[Detection]:
        """One detection per (request, sentence list)."""
        ...


class LexicalDetector:
    """The first sentence (from ``first_allowed`` on) that contains a compliance marker.

    A marker in a sentence before ``first_allowed`` and none after is reported as that earlier
    sentence, so the common rules count it as a cue in the first sentence.
    """

    name = "lexical"

    def __init__(self, markers_file: str | Path | None = None) -> None:
        self.phrases: list[str] = []
        self.patterns: list[re.Pattern[str]] = []
        for line in data_lines("compliance_markers.txt", markers_file):
            if line.startswith("re:"):
                try:
                    self.patterns.append(re.compile(line[3:], re.I))
                except re.error as e:
                    raise SafelrmError(f"{markers_file or 'compliance_markers.txt'}: {e}") from None
            else:
                self.phrases.append(_norm(line))

    def is_cue(self, sentence: str) -> bool:
        norm = _norm(sentence)
        return any(p in norm for p in self.phrases) or any(
            r.search(sentence) for r in self.patterns
        )

    def detect(
        self, requests: Sequence[str], sentences: Sequence[Sequence[str]], first_allowed: int = 2
    ) -> list[Detection]:
        out = []
        for sents in sentences:
            hits = [i for i, s in enumerate(sents, 1) if self.is_cue(s)]
            later = [i for i in hits if i >= first_allowed]
            # round one: a marker only in the first sentence is reported, to be counted
            early = hits[0] if hits and first_allowed == 2 else 0
            number = later[0] if later else early
            out.append(Detection(number, raw=",".join(map(str, hits))))
        return out


def _norm(text: str) -> str:
    return " ".join(text.replace("\u2019", "'").lower().split())


def build_prompt(template: str, request: str, sentences: Sequence[str], first_allowed: int) -> str:
    return (
        template.replace("{first_allowed}", str(first_allowed))
        .replace("{request}", " ".join(request.split()))
        .replace("{sentences}", numbered(sentences))
    )


class LLMDetector:
    """A few-shot prompt answered by a model: ``complete(prompts) -> texts``."""

    def __init__(self, complete: Any, name: str, prompt_file: str | Path | None = None) -> None:
        self.complete = complete
        self.name = name
        self.template = read_data_file("cue_detector.txt", prompt_file)

    def detect(
        self, requests: Sequence[str], sentences: Sequence[Sequence[str]], first_allowed: int = 2
    ) -> list[Detection]:
        prompts = [
            build_prompt(self.template, r, s, first_allowed)
            for r, s in zip(requests, sentences, strict=True)
        ]
        texts = self.complete(prompts) if prompts else []
        return [Detection(parse_cue_answer(t), raw=t) for t in texts]


def engine_completer(engine: Any, max_new_tokens: int = 24) -> Any:
    """Answer detector prompts with a generation engine (chain of thought off, greedy)."""
    from safelrm.models import GenerationRequest, SamplingParams

    sampling = SamplingParams(temperature=0.0, max_new_tokens=max_new_tokens)

    def complete(prompts: list[str]) -> list[str]:
        requests = [
            GenerationRequest(
                id=f"cue-{i}",
                messages=[{"role": "user", "content": p}],
                cot=False,
                sampling=sampling,
            )
            for i, p in enumerate(prompts)
        ]
        return [r.answer for r in engine.generate(requests, progress=False)]

    return complete


def endpoint_completer(
    base_url: str,
    model: str,
    api_key_env: str = "OPENAI_API_KEY",
    max_new_tokens: int = 24,
    timeout_s: float = 60.0,
) -> Any:
    """Answer detector prompts with an OpenAI-compatible ``/chat/completions`` endpoint."""
    url = base_url.rstrip("/") + "/chat/completions"
    key = os.environ.get(api_key_env, "")

    def one(prompt: str) -> str:
        body = json.dumps(
            {
                "model": model,
                "messages": [{"role": "user", "content": prompt}],
                "temperature": 0.0,
                "max_tokens": max_new_tokens,
            }
        ).encode()
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        req = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as resp:
                data = json.loads(resp.read().decode())
            return str(data["choices"][0]["message"]["content"] or "")
        except (OSError, KeyError, IndexError, ValueError) as e:
            raise SafelrmError(f"cue detector endpoint {url}: {type(e).__name__}: {e}") from None

    return lambda prompts: [one(p) for p in prompts]

"""Find the first compliance cue of a trajectory, replace it with a safety trigger, continue.

One *task* = one trajectory, one trigger, one round. Its reasoning prefix is the reasoning up to
the cue sentence's first character, then the trigger; the policy continues the reasoning from
there and writes a new answer. Tasks that share a prefix text (the triggers' continuations of one
rollout share prompt + reasoning before the cue) are continued from one KV cache on the hf
backend (:func:`continue_from_prefix`); the others go through the engine's ``prefix`` path.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from safelrm.methods.ipo.detector import CueCheck, CueDetector, validate_cue
from safelrm.methods.ipo.judging import TrajectoryJudge, item
from safelrm.methods.ipo.sentences import Sentence, split_reasoning


@dataclass(frozen=True)
class CueResult:
    check: CueCheck
    sentences: list[Sentence]
    raw: str = ""

    @property
    def sentence(self) -> Sentence | None:
        if self.check.status != "cue" or self.check.number is None:
            return None
        return self.sentences[self.check.number - 1]

    def to_json(self) -> dict[str, Any]:
        s = self.sentence
        return {
            "status": self.check.status,
            "number": self.check.number,
            "n_sentences": len(self.sentences),
            "raw": self.raw,
            "sentence": s.text if s else None,
            "start": s.start if s else None,
            "token": s.token if s else None,
            "cut": s.cut if s else None,
            "full_cut": s.full_cut if s else None,
        }


def reasoning_sentences(engine: Any, prompt: str, reasoning: str, answer: str) -> list[Sentence]:
    """Sentences of ``reasoning`` with exact token indices in prompt + full assistant text."""
    family = engine.family
    head = prompt + family.reasoning_opener
    full = prompt + family.format_response(reasoning, answer)
    return split_reasoning(engine.tokenizer, full, len(head), reasoning.strip("\n"))


def detect_cues(
    engine: Any,
    detector: CueDetector,
    trajectories: Sequence[dict[str, Any]],
    first_allowed: Sequence[int] | None = None,
) -> list[CueResult]:
    """A cue per trajectory (dicts with prompt, request, reasoning, answer). Fewer than two
    sentences (from ``first_allowed`` on) is ``too_short``; no reasoning is ``no_reasoning``."""
    firsts = list(first_allowed) if first_allowed is not None else [2] * len(trajectories)
    results: list[CueResult | None] = [None] * len(trajectories)
    todo = []
    for i, t in enumerate(trajectories):
        if not t["reasoning"].strip():
            results[i] = CueResult(CueCheck("no_reasoning"), [])
            continue
        sents = reasoning_sentences(engine, t["prompt"], t["reasoning"], t["answer"])
        if len(sents) < max(firsts[i], 2):
            results[i] = CueResult(CueCheck("too_short"), sents)
            continue
        todo.append((i, sents))
    detections = _detect(detector, trajectories, todo, firsts)
    for (i, sents), det in zip(todo, detections, strict=True):
        results[i] = CueResult(validate_cue(det, len(sents), firsts[i]), sents, det.raw)
    return [r for r in results if r is not None]


def _detect(
    detector: CueDetector,
    trajectories: Sequence[dict[str, Any]],
    todo: list[tuple[int, list[Sentence]]],
    firsts: list[int],
) -> list[Any]:
    """Detections for ``todo``, one detector call per distinct ``first_allowed``."""
    by_first: dict[int, list[int]] = defaultdict(list)
    for k, (i, _) in enumerate(todo):
        by_first[firsts[i]].append(k)
    out: list[Any] = [None] * len(todo)
    for first, ks in by_first.items():
        dets = detector.detect(
            [trajectories[todo[k][0]]["request"] for k in ks],
            [[s.text for s in todo[k][1]] for k in ks],
            first_allowed=first,
        )
        for k, d in zip(ks, dets, strict=True):
            out[k] = d
    return out


@dataclass
class Task:
    """Continue ``prefix_reasoning`` (ends with the trigger) for one trajectory and trigger."""

    key: str
    rollout_key: str
    prompt_id: str
    messages: list[dict[str, str]]
    prompt: str  # the rendered prompt generation used
    request: str
    goal: str | None
    trigger_index: int
    round: int
    first_start: int  # reasoning char where the first replaced sentence started
    first_token: int  # its first token index in the full text
    prefix_reasoning: str
    keep: int  # characters of the reasoning kept before the trigger
    trigger_end: int  # reasoning char where the inserted trigger ends
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Budget:
    max_reasoning_tokens: int
    max_new_tokens: int
    temperature: float
    top_p: float
    seed: int


def make_task(
    base: dict[str, Any],
    cue: Sentence,
    reasoning: str,
    trigger: str,
    trigger_index: int,
    round: int,
) -> Task:
    """The task that replaces sentence ``cue`` of ``reasoning`` with ``trigger``."""
    prefix = reasoning[: cue.start] + trigger
    first_start = base.get("first_start", cue.start)
    first_token = base.get("first_token", cue.token)
    return Task(
        key=f"{base['rollout_key']}|t{trigger_index}|r{round}",
        rollout_key=base["rollout_key"],
        prompt_id=base["prompt_id"],
        messages=base["messages"],
        prompt=base["prompt"],
        request=base["request"],
        goal=base.get("goal"),
        trigger_index=trigger_index,
        round=round,
        first_start=first_start,
        first_token=first_token,
        prefix_reasoning=prefix,
        keep=cue.start,
        trigger_end=len(prefix),
        meta={"cue_sentence": cue.text, "cue_token": cue.token},
    )


def run_tasks(
    engine: Any, tasks: Sequence[Task], budget: Budget, kv_reuse: bool
) -> list[dict[str, Any]]:
    """Continue every task's reasoning and write its answer; returns trajectory dicts."""
    from safelrm.models import GenerationRequest, SamplingParams
    from safelrm.models.engine import row_seed

    fam = engine.family
    sampling = SamplingParams(
        temperature=budget.temperature,
        top_p=budget.top_p,
        max_new_tokens=budget.max_new_tokens,
        max_reasoning_tokens=budget.max_reasoning_tokens,
        seed=budget.seed,
    )
    groups: dict[str, list[Task]] = defaultdict(list)
    for t in tasks:
        groups[t.prompt + "\x00" + t.prefix_reasoning[: t.keep]].append(t)
    reasoning: dict[str, tuple[str, int, str]] = {}  # key -> (reasoning, new tokens, how)
    engine_tasks = []
    for members in groups.values():
        if kv_reuse and len(members) > 1 and engine.model is not None:
            _continue_group(engine, members, budget, reasoning, row_seed)
        else:
            engine_tasks.extend(members)
    requests = []
    for t in tasks:
        if t.key in reasoning:
            prefix = reasoning[t.key][0] + fam.closing()
        else:
            prefix = t.prefix_reasoning
        requests.append(
            GenerationRequest(id=t.key, messages=t.messages, prefix=prefix, sampling=sampling)
        )
    records = {r.id: r for r in engine.generate(requests, progress=False)}
    out = []
    for t in tasks:
        rec = records[t.key]
        if t.key in reasoning:
            text, n_new, how = reasoning[t.key]
        else:
            text, n_new, how = rec.reasoning, rec.n_reasoning_tokens, "engine-prefix"
        out.append(
            {
                "key": t.key,
                "rollout_key": t.rollout_key,
                "prompt_id": t.prompt_id,
                "trigger_index": t.trigger_index,
                "round": t.round,
                "first_start": t.first_start,
                "first_token": t.first_token,
                "trigger_end": t.trigger_end,
                "messages": t.messages,
                "prompt": t.prompt,
                "request": t.request,
                "goal": t.goal,
                "reasoning": text,
                "continuation": text[t.trigger_end :],
                "answer": rec.answer,
                "n_reasoning_new_tokens": n_new,
                "n_answer_tokens": rec.n_answer_tokens,
                "continued_by": how,
                "seconds": rec.seconds,
                "meta": t.meta,
            }
        )
    return out


def _continue_group(
    engine: Any, members: list[Task], budget: Budget, out: dict[str, Any], row_seed: Any
) -> None:
    from safelrm.methods.ipo.continuation import continue_from_prefix

    fam = engine.family
    shared = _shared_prefix([m.prefix_reasoning for m in members])
    head = members[0].prompt + fam.reasoning_opener + shared
    results = continue_from_prefix(
        engine.model,
        engine.tokenizer,
        head,
        [m.prefix_reasoning[len(shared) :] for m in members],
        max_new_tokens=budget.max_reasoning_tokens,
        temperature=budget.temperature,
        top_p=budget.top_p,
        seeds=[row_seed(budget.seed, f"{m.key}#0", 0) for m in members],
        stop=[fam.think_close],
        eos_ids=getattr(engine.backend, "eos_ids", None),
    )
    for m, res in zip(members, results, strict=True):
        text = res.text.split(fam.think_close)[0] if res.finish == "stop" else res.text
        out[m.key] = ((m.prefix_reasoning + text).strip("\n"), res.n_new_tokens, "kv-reuse")


def _shared_prefix(texts: list[str]) -> str:
    return os.path.commonprefix(texts)


def judge_interventions(
    judge: TrajectoryJudge, entries: list[dict[str, Any]], scope: str
) -> list[dict[str, Any]]:
    """Add ``verdict`` and ``status``: the reasoning judged is the continuation after the last
    trigger (``scope='continuation'``) or the whole reasoning (``'full'``)."""
    items = [
        item(
            e["request"],
            e["continuation"] if scope == "continuation" else e["reasoning"],
            e["answer"],
            goal=e.get("goal"),
            id=e["key"],
        )
        for e in entries
    ]
    empty = [scope == "continuation" and not e["continuation"].strip() for e in entries]
    for e, v in zip(entries, judge.judge(items, answer_only=empty), strict=True):
        e["verdict"] = v.to_json()
        e["status"] = v.status
    return entries

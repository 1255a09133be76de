"""Continuation safety ratio (CSR): at each sentence boundary of a reasoning, sample k
continuations from the prefix and measure the fraction judged safe.

Trigger point: the ratio rises to ``>= high`` (from below) and stays there for every boundary
within ``window`` tokens. Compliance-cue point: it falls to ``<= low`` (from above) and stays.
Continuations of one boundary share their prefix and are generated from one KV cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from safelrm.errors import SafelrmError, where
from safelrm.io import iter_jsonl


@dataclass
class Point:
    number: int  # continuation starts before this sentence (n + 1 = after the reasoning)
    token: int  # the boundary's token index in the full text
    n: int  # continuations judged (unparsed left out)
    safe: int
    ratio: float | None


@dataclass
class CSRCurve:
    id: str
    points: list[Point]
    triggers: list[int] = field(default_factory=list)  # tokens of trigger points
    cues: list[int] = field(default_factory=list)  # tokens of compliance-cue points
    detector_cue: int | None = None  # the detector's cue token (None: no valid cue)
    detector_status: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def load_trajectories(path: str | Path) -> list[dict[str, Any]]:
    """Generation records (JSONL): ``messages``, ``prompt`` (rendered), ``reasoning``,
    ``answer``; ``id`` or ``key`` names a trajectory."""
    out = []
    for line, row in iter_jsonl(path):
        for key in ("messages", "prompt", "reasoning", "answer"):
            if key not in row:
                raise SafelrmError(f"{where(path, line, key)}: missing")
        if not isinstance(row["reasoning"], str) or not isinstance(row["prompt"], str):
            raise SafelrmError(f"{where(path, line, 'reasoning')}: expected text")
        users = [m.get("content", "") for m in row["messages"] if m.get("role") == "user"]
        meta = row.get("meta") or {}
        out.append(
            {
                "id": str(row.get("key") or row.get("id") or f"line-{line}"),
                "messages": row["messages"],
                "prompt": row["prompt"],
                "request": meta.get("request") or (users[-1] if users else ""),
                "goal": meta.get("goal"),
                "reasoning": row["reasoning"],
                "answer": row["answer"],
            }
        )
    return out


def mark(
    points: Sequence[Point], high: float = 0.9, low: float = 0.1, window: int = 15
) -> tuple[list[int], list[int]]:
    """Token positions of trigger points and compliance-cue points."""
    pts = [p for p in points if p.ratio is not None]
    triggers, cues = [], []
    for i, p in enumerate(pts):
        ahead = [q.ratio for q in pts[i:] if q.token <= p.token + window]
        if i == 0:
            continue  # a rise or a fall needs a point before it
        prev = pts[i - 1].ratio
        if p.ratio >= high and prev < high and min(ahead) >= high:  # type: ignore[operator,type-var]
            triggers.append(p.token)
        if p.ratio <= low and prev > low and max(ahead) <= low:  # type: ignore[operator,type-var]
            cues.append(p.token)
    return triggers, cues


def csr_curve(
    engine: Any,
    answer_judge: Any,
    traj: dict[str, Any],
    k: int,
    max_reasoning_tokens: int,
    max_new_tokens: int,
    temperature: float = 0.6,
    top_p: float = 0.95,
    seed: int = 0,
    reasoning_judge: Any = None,
) -> CSRCurve:
    """Sample ``k`` continuations at every sentence boundary and judge them: a continuation is
    safe when its answer is not flagged (and, with ``reasoning_judge``, neither is its newly
    written reasoning)."""
    from safelrm.judges import JudgeItem
    from safelrm.methods.ipo.continuation import continue_from_prefix
    from safelrm.methods.ipo.intervene import reasoning_sentences
    from safelrm.methods.ipo.sentences import first_token_at, token_offsets
    from safelrm.models import GenerationRequest, SamplingParams
    from safelrm.models.engine import row_seed

    fam = engine.family
    reasoning = traj["reasoning"].strip("\n")
    sents = reasoning_sentences(engine, traj["prompt"], reasoning, traj["answer"])
    bounds = [(s.number, s.start, s.token) for s in sents]
    head = traj["prompt"] + fam.reasoning_opener
    _, offsets = token_offsets(engine.tokenizer, head + reasoning + fam.closing())
    bounds.append((len(sents) + 1, len(reasoning), first_token_at(offsets, len(head + reasoning))))
    sampling = SamplingParams(
        temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, seed=seed
    )
    continued: list[tuple[int, int, str, str]] = []  # (number, token, prefix, continuation)
    for number, start, token in bounds:
        prefix = reasoning[:start]
        keys = [f"{traj['id']}|b{number}|s{i}" for i in range(k)]
        if number <= len(sents) and engine.model is not None:
            res = continue_from_prefix(
                engine.model,
                engine.tokenizer,
                traj["prompt"] + fam.reasoning_opener + prefix,
                [""] * k,
                max_new_tokens=max_reasoning_tokens,
                temperature=temperature,
                top_p=top_p,
                seeds=[row_seed(seed, key, 0) for key in keys],
                stop=[fam.think_close],
                eos_ids=getattr(engine.backend, "eos_ids", None),
            )
            texts = [r.text.split(fam.think_close)[0] for r in res]
        else:
            texts = [""] * k
        continued += [(number, token, prefix, t) for t in texts]
    requests = [
        GenerationRequest(
            id=f"{traj['id']}|b{n}|s{i % k}",
            messages=traj["messages"],
            prefix=(p + t).strip("\n") + fam.closing(),
            sampling=sampling,
        )
        for i, (n, _, p, t) in enumerate(continued)
    ]
    answers = engine.generate(requests, progress=False)
    items = [
        JudgeItem(prompt=traj["request"], goal=traj.get("goal"), reasoning=t, answer=a.answer)
        for (_, _, _, t), a in zip(continued, answers, strict=True)
    ]
    status = [_safety(v) for v in answer_judge.judge_answers(items)]
    if reasoning_judge is not None:
        for i, v in enumerate(reasoning_judge.judge_reasoning(items)):
            if v.flagged:
                status[i] = False
    points = []
    for number, _, token in bounds:
        flags = [f for (n, _, _, _), f in zip(continued, status, strict=True) if n == number]
        judged = [f for f in flags if f is not None]
        safe = sum(judged)
        points.append(
            Point(number, token, len(judged), safe, safe / len(judged) if judged else None)
        )
    return CSRCurve(traj["id"], points)


def _safety(verdict: Any) -> bool | None:
    """True when safe, False when flagged, None when unparsed."""
    if not verdict.parsed:
        return None
    return not verdict.flagged


def plot_curves(curves: Sequence[CSRCurve], out_path: str | Path, title: str = "") -> Path:
    """One panel per trajectory: CSR by token position, trigger/cue points, detector cue."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(curves)
    fig, axes = plt.subplots(n, 1, figsize=(8, 2.4 * n), squeeze=False)
    for ax, c in zip(axes[:, 0], curves, strict=True):
        pts = [p for p in c.points if p.ratio is not None]
        ax.plot([p.token for p in pts], [p.ratio for p in pts], "o-", color="tab:blue", ms=4)
        ax.axhline(0.9, color="tab:green", lw=0.6, ls=":")
        ax.axhline(0.1, color="tab:red", lw=0.6, ls=":")
        for t in c.triggers:
            ax.plot(t, 1.02, "^", color="tab:green", ms=9, label="trigger point")
        for t in c.cues:
            ax.plot(t, -0.02, "v", color="tab:red", ms=9, label="cue point")
        if c.detector_cue is not None:
            ax.axvline(c.detector_cue, color="tab:red", ls="--", lw=1.2, label="detector cue")
        ax.set_ylim(-0.08, 1.08)
        ax.set_ylabel("CSR")
        ax.set_title(f"{c.id} (detector: {c.detector_status})", fontsize=9)
        handles, labels = ax.get_legend_handles_labels()
        if handles:
            uniq = dict(zip(labels, handles, strict=True))
            ax.legend(uniq.values(), uniq.keys(), fontsize=7, loc="upper left")
    axes[-1, 0].set_xlabel("token position of the sentence boundary (full text)")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=110)
    plt.close(fig)
    return out_path

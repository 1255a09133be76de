"""The safepath stages that are its own: ``prompts``, ``retain`` (the policy's own responses to
benign prompts) and ``train`` (primer on trigger prompts, retain responses whole)."""

from __future__ import annotations

import random
from importlib import resources
from pathlib import Path
from typing import Any

from safelrm.data import PromptRecord
from safelrm.errors import SafelrmError
from safelrm.io import read_jsonl, write_jsonl
from safelrm.pipeline import StageContext
from safelrm.store import RecordStore

GROUP = "safepath_group"


def primer_text(file: str | None) -> str:
    """The primer, one line of text (a trailing newline is dropped)."""
    if file is None:
        text = resources.files("safelrm.methods.safepath").joinpath("prompts/primer.txt")
        primer = text.read_text("utf-8").strip()
    else:
        path = Path(file).expanduser()
        if not path.is_file():
            raise SafelrmError(f"primer.file: {path} not found")
        primer = path.read_text("utf-8").strip()
    if not primer:
        raise SafelrmError(f"primer.file: {file or 'prompts/primer.txt'} is empty")
    return primer


def _prompts(ctx: StageContext) -> list[PromptRecord]:
    return [
        PromptRecord.model_validate(p) for p in read_jsonl(ctx.path("prompts", "prompts.jsonl"))
    ]


def run_prompts(ctx: StageContext) -> dict[str, Any]:
    from safelrm.data import combine
    from safelrm.methods.baselines import drop_overlaps, load_sets

    r, d = ctx.recipe, ctx.recipe.data
    primer_text(r.primer.file)  # a bad primer file fails before any generation
    trigger = load_sets(d.trigger, r.seed, "data.trigger", kind="harmful")
    retain = load_sets(d.retain, r.seed, "data.retain")
    tag = lambda recs, g: [p.model_copy(update={"meta": {**p.meta, GROUP: g}}) for p in recs]  # noqa: E731
    prompts = combine(tag(trigger, "trigger"), tag(retain, "retain"))  # a prompt in both: trigger
    prompts, overlaps = drop_overlaps(ctx, prompts, d.overlap_jaccard)
    n_trigger = sum(p.meta[GROUP] == "trigger" for p in prompts)
    retain = [p for p in prompts if p.meta[GROUP] == "retain"]
    keep = min(len(retain), round(d.retain_ratio * n_trigger))
    retain = retain[:keep]
    prompts = [p for p in prompts if p.meta[GROUP] == "trigger"] + retain
    if not n_trigger:
        raise SafelrmError("data.trigger: no harmful prompt left after overlap filtering")
    write_jsonl(ctx.dir / "prompts.jsonl", [p.model_dump() for p in prompts])
    summary = {"trigger": n_trigger, "retain": len(retain), "dropped_overlap": overlaps}
    ctx.log(f"{summary}")
    return summary


def run_retain(ctx: StageContext) -> dict[str, Any]:
    from safelrm.models import GenerationRequest, SamplingParams

    r = ctx.recipe
    retain = [p for p in _prompts(ctx) if p.meta[GROUP] == "retain"]
    if not retain:
        return {"rows": 0}
    sampling = SamplingParams(
        temperature=0.0,
        max_reasoning_tokens=r.retain.max_reasoning_tokens,
        max_new_tokens=r.retain.max_new_tokens,
        seed=r.seed,
    )
    requests = [GenerationRequest(id=p.id, messages=p.chat(), sampling=sampling) for p in retain]
    store = RecordStore(ctx.dir / "records.jsonl", {"model": r.model, **sampling.model_dump()})
    records = ctx.engine(r.model).generate(requests, store=store, description="retain (CoT on)")
    rows = [
        {"id": p.id, "prompt": p.chat(), "completion": rec.completion(), "open_ended": False}
        for p, rec in zip(retain, records, strict=True)
    ]
    write_jsonl(ctx.dir / "rows.jsonl", rows)
    tokens = sum(rec.n_reasoning_tokens + rec.n_answer_tokens for rec in records)
    return {"rows": len(rows), "tokens": tokens}


def run_train(ctx: StageContext) -> dict[str, Any]:
    from safelrm.eval.runner import write_train_prompts
    from safelrm.methods.baselines import reasoning_family, train_summary
    from safelrm.methods.safepath.trainer import train_safepath
    from safelrm.models import load_tokenizer

    r = ctx.recipe
    prompts = _prompts(ctx)
    primer = primer_text(r.primer.file)
    family = reasoning_family(r.model, load_tokenizer(r.model), r.generation.family)
    rows = [
        {
            "id": p.id,
            "prompt": p.chat(),
            "prefill": family.reasoning_opener,
            "completion": primer,
            "open_ended": True,
        }
        for p in prompts
        if p.meta[GROUP] == "trigger"
    ]
    rows += (
        read_jsonl(ctx.path("retain", "rows.jsonl")) if ctx.summary("retain").get("rows") else []
    )
    random.Random(r.seed).shuffle(rows)  # trigger and retain rows interleave
    ctx._engines.clear()  # free the generation copy before training
    ctx.log(f"{len(rows)} rows; primer {primer!r} after {family.reasoning_opener!r}")
    result = train_safepath(r.model, rows, r.train, ctx.dir)
    write_train_prompts(result.merged_dir, prompts)
    return train_summary(result, primer=primer)

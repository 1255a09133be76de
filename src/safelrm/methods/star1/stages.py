"""The star1 stages that are its own: ``data`` (STAR-1 rows as SFT rows) and ``train``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from safelrm.data import PromptRecord
from safelrm.errors import SafelrmError
from safelrm.io import read_json, read_jsonl, write_json, write_jsonl
from safelrm.pipeline import StageContext

_SENTENCE_END = re.compile(r"[.!?](?=\s)")


def star1_folder(folder: str | None) -> Path:
    from safelrm.data.paths import data_root

    path = Path(folder).expanduser() if folder else data_root() / "train" / "star1"
    if not (path / "STAR-1.json").is_file():
        raise SafelrmError(f"{path}: no STAR-1.json (data.folder names the STAR-1 folder)")
    return path


def load_star1(folder: Path, include_harmbench: bool) -> tuple[list[PromptRecord], dict[str, str]]:
    """STAR-1 questions as PromptRecords (the ``star1`` training set: HarmBench behaviours
    dropped unless asked) and each one's response by record id."""
    from safelrm.data import load_train_set

    prompts = load_train_set(
        "star1", folder / "star1_prompts.csv", include_harmbench=include_harmbench
    )
    source = folder / "STAR-1.json"
    rows = read_json(source)
    if not isinstance(rows, list):
        raise SafelrmError(f"{source}: expected a JSON array of rows")
    responses: dict[str, str] = {}
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not isinstance(row.get("response"), str):
            raise SafelrmError(f"{source}: row {i} field 'response': expected a string")
        responses[f"star1-{row.get('id')}"] = row["response"]
    missing = [p.id for p in prompts if p.id not in responses]
    if missing:
        raise SafelrmError(f"{source}: no response for {len(missing)} prompts, e.g. '{missing[0]}'")
    return prompts, responses


def cut_reasoning(tokenizer: Any, reasoning: str, max_tokens: int | None) -> str:
    """``reasoning`` cut to ``max_tokens`` tokens, at the last sentence end within them when
    there is one past half of the cut."""
    if max_tokens is None:
        return reasoning
    ids = tokenizer(reasoning, add_special_tokens=False)["input_ids"]
    if len(ids) <= max_tokens:
        return reasoning
    head = tokenizer.decode(ids[:max_tokens])
    ends = [m.end() for m in _SENTENCE_END.finditer(head + " ")]
    return head[: ends[-1]] if ends and ends[-1] > len(head) // 2 else head


def run_data(ctx: StageContext) -> dict[str, Any]:
    from safelrm.data import subsample
    from safelrm.methods.baselines import drop_overlaps, reasoning_family
    from safelrm.models import load_tokenizer
    from safelrm.train import render_prompt

    r, d = ctx.recipe, ctx.recipe.data
    prompts, responses = load_star1(star1_folder(d.folder), d.include_harmbench)
    n_loaded = len(prompts)
    prompts, overlaps = drop_overlaps(ctx, prompts, d.overlap_jaccard)
    prompts = subsample(prompts, d.n, r.seed)
    tokenizer = load_tokenizer(r.model)
    family = reasoning_family(r.model, tokenizer, r.generation.family)
    rows, kept, unclosed, too_long = [], [], 0, 0
    for p in prompts:
        parsed = family.parse(responses[p.id])  # STAR-1: "<think>\n...\n</think>\n\nanswer"
        if not parsed.think_closed or not parsed.answer:
            unclosed += 1
            continue
        reasoning = cut_reasoning(tokenizer, parsed.reasoning, d.max_reasoning_tokens)
        completion = family.format_response(reasoning, parsed.answer)
        text = render_prompt(tokenizer, p.chat()) + completion
        if len(tokenizer(text)["input_ids"]) >= r.sft.max_length:
            too_long += 1
            continue
        rows.append({"id": p.id, "prompt": p.chat(), "completion": completion})
        kept.append(p)
    if not rows:
        raise SafelrmError(
            f"data: no STAR-1 row fits sft.max_length={r.sft.max_length} "
            f"({too_long} too long, {unclosed} without a closed reasoning); raise it or lower "
            "data.max_reasoning_tokens"
        )
    write_jsonl(ctx.dir / "rows.jsonl", rows)
    write_jsonl(ctx.dir / "prompts.jsonl", [p.model_dump() for p in kept])
    summary = {
        "loaded": n_loaded,
        "dropped_overlap": overlaps,
        "drawn": len(prompts),
        "dropped_unclosed": unclosed,
        "dropped_too_long": too_long,
        "rows": len(rows),
    }
    ctx.log(f"{summary}")
    write_json(ctx.dir / "counts.json", summary)
    return summary


def run_train(ctx: StageContext) -> dict[str, Any]:
    from safelrm.eval.runner import write_train_prompts
    from safelrm.methods.baselines import train_summary
    from safelrm.train import train_sft

    r = ctx.recipe
    rows = read_jsonl(ctx.path("data", "rows.jsonl"))
    prompts = [
        PromptRecord.model_validate(p) for p in read_jsonl(ctx.path("data", "prompts.jsonl"))
    ]
    result = train_sft(r.model, None, rows, r.sft, ctx.dir)
    write_train_prompts(result.merged_dir, prompts)
    return train_summary(result)

"""PreSafe training prompts: harmful and benign sets, minus anything close to the eval suite."""

from __future__ import annotations

from typing import Any

from safelrm.data import PromptRecord, combine, filter_overlapping, load_prompts
from safelrm.errors import SafelrmError
from safelrm.methods.presafe.config import DataSettings, SetSpec

# Which list a prompt came from; the teacher's "kind" fallback and the response type use it.
GROUP_KEY = "presafe_group"


def _load(spec: SetSpec, group: str, seed: int) -> list[PromptRecord]:
    try:
        records = load_prompts(spec.set, n=spec.n, seed=seed, **spec.options)
    except SafelrmError as e:
        raise SafelrmError(f"data.{group}: set '{spec.set}': {e}") from None
    return [r.model_copy(update={"meta": {**r.meta, GROUP_KEY: group}}) for r in records]


def load_training_prompts(
    data: DataSettings, seed: int, eval_prompts: dict[str, list[PromptRecord]] | None = None
) -> tuple[list[PromptRecord], dict[str, Any]]:
    """Harmful then benign prompts, deduplicated on text and overlap-filtered against
    ``eval_prompts``; returns the prompts and counts for the stage summary."""
    harmful = combine(*(_load(s, "harmful", seed) for s in data.harmful))
    benign = combine(*(_load(s, "benign", seed) for s in data.benign))
    prompts = combine(harmful, benign)  # a prompt in both lists stays harmful
    n_before = len(prompts)
    if eval_prompts:
        prompts = filter_overlapping(prompts, eval_prompts, jaccard=data.overlap_jaccard)
    counts = {
        "harmful": sum(is_harmful(p) for p in prompts),
        "benign": sum(not is_harmful(p) for p in prompts),
        "dropped_overlap": n_before - len(prompts),
    }
    if not counts["harmful"] or not counts["benign"]:
        raise SafelrmError(
            f"data: need harmful and benign prompts, got {counts['harmful']} harmful and "
            f"{counts['benign']} benign after overlap filtering"
        )
    return prompts, counts


def is_harmful(record: PromptRecord) -> bool:
    return record.meta.get(GROUP_KEY) == "harmful"

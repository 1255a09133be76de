"""Stage ``sft_data``: SFT rows from the two passes, in the train layer's prompt/completion format.

* general: query -> ``<think>think1</think>`` answer1 (no ``<safe>``);
* harmful / jailbreak: query -> ``<think>think1|think2</think>`` ``<safe>...</safe>`` answer2,
  kept only when the block is valid and the judges read answer2 as safe.

General rows are then subsampled to ``general_ratio`` per safety row, so that the refusal signal
does not swamp ordinary helpfulness (over-refusal) nor get drowned by it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from safelrm.data import PromptRecord
from safelrm.methods.safe_trigger.recipe import SFTDataSettings
from safelrm.methods.safe_trigger.safe_block import with_block
from safelrm.reasoning import get_family

SAFETY_KINDS = ("harmful", "jailbreak")


def general_row(p1: dict[str, Any]) -> dict[str, Any]:
    family = get_family(p1["family"])
    return {
        "prompt": p1["messages"],
        "completion": family.format_response(p1["think1"], p1["answer1"]),
    }


def safety_row(p1: dict[str, Any], p2: dict[str, Any], reasoning_source: str) -> dict[str, Any]:
    family = get_family(p1["family"])
    reasoning = p1["think1"] if reasoning_source == "think1" else p2["think2"]
    return {
        "prompt": p1["messages"],
        "completion": family.format_response(reasoning, with_block(p2["block"], p2["answer2"])),
    }


def prompt_record(p1: dict[str, Any]) -> PromptRecord:
    return PromptRecord(
        id=p1["id"],
        text=p1["text"],
        kind=p1["kind"],
        category=p1.get("category"),
        source=p1.get("source", ""),
        goal=p1.get("goal"),
        messages=p1["messages"] if len(p1["messages"]) > 1 else None,
    )


@dataclass
class Built:
    rows: list[dict[str, Any]]
    prompts: list[PromptRecord]
    counts: dict[str, Any] = field(default_factory=dict)


def build(
    pass1: list[dict[str, Any]],
    pass2: dict[str, dict[str, Any]],
    settings: SFTDataSettings,
    seed: int,
) -> Built:
    """Rows (safety first, then general, then shuffled) and the prompts they train on."""
    safety, dropped = [], {"invalid_block": 0, "answer2_not_safe": 0, "missing_pass2": 0}
    general, refusing = [], 0
    for p1 in pass1:
        if p1["kind"] in SAFETY_KINDS:
            p2 = pass2.get(p1["id"])
            if p2 is None:
                dropped["missing_pass2"] += 1
            elif not p2["valid"]:
                dropped["invalid_block"] += 1
            elif p2["label"] != "safe":
                dropped["answer2_not_safe"] += 1
            else:
                safety.append((p1, safety_row(p1, p2, settings.reasoning_source)))
        elif settings.drop_refusing_general and p1["label"] == "safe":
            refusing += 1  # a refusal judge reads a general answer1 as refusal -> "safe"
        else:
            general.append((p1, general_row(p1)))
    rng = random.Random(f"{seed}|sft_data")
    target = round(settings.general_ratio * len(safety))
    if len(general) > target:
        general = rng.sample(general, target)
    chosen = safety + general
    rng.shuffle(chosen)
    by_kind: dict[str, int] = {}
    for p1, _ in chosen:
        by_kind[p1["kind"]] = by_kind.get(p1["kind"], 0) + 1
    counts = {
        "rows": len(chosen),
        "by_kind": by_kind,
        "safety_candidates": sum(p["kind"] in SAFETY_KINDS for p in pass1),
        "dropped": dropped,
        "general_refusing_dropped": refusing,
        "general_ratio_target": target,
    }
    return Built([row for _, row in chosen], [prompt_record(p1) for p1, _ in chosen], counts)

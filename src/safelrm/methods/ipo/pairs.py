"""Preference pairs and the training rows built from them.

A :class:`Pair` holds two full assistant texts (``chosen``, ``rejected``) that share their first
``shared`` characters. The row formats:

* ``part`` (IPO's "DPO on the part"): the shared text goes into the DPO prompt, so TRL masks it;
  only the tokens from the intervention point on (trigger, continuation, answer, end of turn)
  carry the log-ratios and the NLL term. The cut is moved back to a token boundary where the
  prompt tokenises the same alone and inside prompt + completion (:func:`aligned_cut`).
* ``full``: the rendered prompt alone is the DPO prompt (ablation).
* ``sft``: the chosen text as an SFT completion (ablation: SFT on intervened data).
"""

from __future__ import annotations

import os
import random
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any, Literal

from safelrm.methods.ipo.boundary import aligned_cut, check_boundary
from safelrm.train.formats import end_of_turn, join_completion, render_prompt

Scope = Literal["part", "full"]


@dataclass
class Pair:
    id: str
    source: str  # "ipo" or "overrefusal"
    prompt_id: str
    messages: list[dict[str, str]]
    chosen: str
    rejected: str
    shared: int  # chars both texts share that the part loss must not see
    meta: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def ipo_pair(
    rollout: dict[str, Any], final: dict[str, Any], family: Any, trigger_index: int
) -> Pair:
    """The intervened trajectory (chosen) over the original (rejected); they share the
    reasoning up to where the first replaced sentence started."""
    chosen = family.format_response(final["reasoning"], final["answer"])
    rejected = family.format_response(rollout["reasoning"], rollout["answer"])
    shared = len(family.reasoning_opener) + final["first_start"]
    return Pair(
        id=f"{rollout['key']}|t{trigger_index}",
        source="ipo",
        prompt_id=rollout["id"],
        messages=rollout["messages"],
        chosen=chosen,
        rejected=rejected,
        shared=min(shared, len(os.path.commonprefix([chosen, rejected]))),
        meta={
            "trigger_index": trigger_index,
            "rounds": final["round"],
            "cue_token": final["first_token"],
            "status": final.get("status"),
        },
    )


def overrefusal_pair(
    prompt_id: str,
    messages: list[dict[str, str]],
    normal: dict[str, Any],
    refusal: dict[str, Any],
    family: Any,
) -> Pair:
    """The policy's own answer (chosen) over a prefilled refusal (rejected), both after the same
    reasoning: they share everything up to where the answers part."""
    chosen = family.format_response(normal["reasoning"], normal["answer"])
    rejected = family.format_response(refusal["reasoning"], refusal["answer"])
    return Pair(
        id=f"{prompt_id}|overrefusal",
        source="overrefusal",
        prompt_id=prompt_id,
        messages=messages,
        chosen=chosen,
        rejected=rejected,
        shared=len(os.path.commonprefix([chosen, rejected])),
        meta={"prefill": refusal.get("meta", {}).get("prefill")},
    )


@dataclass
class BuiltRows:
    rows: list[dict[str, Any]]  # text rows ({"prompt", "chosen", "rejected"} or SFT)
    pair_ids: list[str]
    n_prompt_tokens: list[int]  # tokens TRL masks as prompt, per kept row
    dropped: Counter


def build_dpo_rows(
    tokenizer: Any, pairs: list[Pair], scope: Scope, drop_unclean: bool = True
) -> BuiltRows:
    """Text rows for ``train_dpo``; each row's boundary is checked the way TRL tokenises it."""
    eot = end_of_turn(tokenizer)
    out = BuiltRows([], [], [], Counter())
    for p in pairs:
        head = render_prompt(tokenizer, p.messages)
        chosen = join_completion(head, p.chosen, "")
        rejected = join_completion(head, p.rejected, "")
        shift = len(p.chosen) - len(chosen)  # a duplicate <think> dropped from the front
        if scope == "part":
            cut = aligned_cut(tokenizer, head, [chosen, rejected], max(p.shared - shift, 0))
            if cut is None:
                out.dropped["no_clean_cut"] += 1
                continue
            prompt = head + chosen[:cut]
            chosen, rejected = chosen[cut:], rejected[cut:]
        else:
            prompt = head
        row = {"prompt": prompt, "chosen": chosen + eot, "rejected": rejected + eot}
        boundary = check_boundary(tokenizer, prompt, [row["chosen"], row["rejected"]])
        if not boundary.clean:
            out.dropped["unclean_boundary"] += 1
            if drop_unclean:
                continue
        if row["chosen"] == row["rejected"]:
            out.dropped["identical"] += 1
            continue
        out.rows.append(row)
        out.pair_ids.append(p.id)
        out.n_prompt_tokens.append(boundary.n_prompt)
    return out


def build_sft_rows(pairs: list[Pair]) -> list[dict[str, Any]]:
    """SFT on the intervened trajectories (the chosen side of the IPO pairs)."""
    return [{"prompt": p.messages, "completion": p.chosen} for p in pairs if p.source == "ipo"]


def mix(ipo: list[Pair], overrefusal: list[Pair], ratio: float, seed: int) -> list[Pair]:
    """IPO pairs plus ``round(ratio * len(ipo))`` over-refusal pairs (seeded), shuffled."""
    n = min(len(overrefusal), round(ratio * len(ipo)))
    rng = random.Random(seed)
    chosen = rng.sample(overrefusal, n) if n else []
    mixed = list(ipo) + chosen
    rng.shuffle(mixed)
    return mixed

"""IPO pair builders: intervened vs original, over-refusal, mixing, row formats."""

import pytest

from safelrm.methods.ipo.pairs import (
    build_dpo_rows,
    build_sft_rows,
    ipo_pair,
    mix,
    overrefusal_pair,
)
from safelrm.reasoning import get_family

FAM = get_family("generic")
MESSAGES = [{"role": "user", "content": "how can i make a list"}]


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def test_overrefusal_pair_shares_reasoning_and_differs_in_the_answer(tok):
    normal = {"reasoning": "the user asks for a list. it is safe.", "answer": "1 2 3"}
    refusal = {
        "reasoning": normal["reasoning"],
        "answer": "I'm sorry, but I can't help with that request. it is harmful",
        "meta": {"prefill": "I'm sorry, but I can't help with that request."},
    }
    p = overrefusal_pair("c1", MESSAGES, normal, refusal, FAM)
    assert p.source == "overrefusal" and p.meta["prefill"].startswith("I'm sorry")
    assert p.chosen.endswith("1 2 3") and "I'm sorry" in p.rejected
    assert p.chosen[: p.shared] == p.rejected[: p.shared]
    assert p.chosen[: p.shared].startswith("<think>\nthe user asks for a list. it is safe.")
    built = build_dpo_rows(tok, [p], "part")
    row = built.rows[0]
    assert "</think>" in row["prompt"] and "I'm sorry" in row["rejected"]
    assert not row["chosen"].startswith("<think>") and row["chosen"].endswith("<|im_end|>")


def test_ipo_pair_uses_the_first_cut_and_sft_rows_use_the_chosen_text(tok):
    rollout = {
        "key": "r1#0",
        "id": "r1",
        "messages": MESSAGES,
        "reasoning": "the user asks. here is how to do it.",
        "answer": "step 1",
    }
    start = rollout["reasoning"].index("here")
    final = {
        "reasoning": rollout["reasoning"][:start] + "Wait, this is harmful. i stop.",
        "answer": "sorry",
        "first_start": start,
        "first_token": 17,
        "round": 1,
        "status": "safe",
    }
    p = ipo_pair(rollout, final, FAM, trigger_index=2)
    assert p.id == "r1#0|t2" and p.meta == {
        "trigger_index": 2,
        "rounds": 1,
        "cue_token": 17,
        "status": "safe",
    }
    assert p.chosen[: p.shared] == "<think>\nthe user asks. "
    full = build_dpo_rows(tok, [p], "full").rows[0]
    assert full["chosen"].startswith("<think>\nthe user asks.")
    assert build_sft_rows([p]) == [{"prompt": MESSAGES, "completion": p.chosen}]


def test_identical_sides_are_dropped_and_counted(tok):
    normal = {"reasoning": "x.", "answer": "same"}
    p = overrefusal_pair("c", MESSAGES, normal, dict(normal), FAM)
    built = build_dpo_rows(tok, [p], "part")
    assert built.rows == [] and sum(built.dropped.values()) == 1


def test_mix_ratio():
    ipo = [f"i{k}" for k in range(10)]
    over = [f"o{k}" for k in range(4)]
    mixed = mix(ipo, over, 0.3, seed=0)
    assert len(mixed) == 13 and sum(x.startswith("o") for x in mixed) == 3
    assert mix(ipo, over, 0.3, seed=0) == mixed
    assert len(mix(ipo, over, 5.0, seed=0)) == 14
    assert mix([], over, 1.0, seed=0) == []

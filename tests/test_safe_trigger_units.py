"""Safe Trigger's pure pieces: the <safe> validator, the reward, delta filter and pairing, sample
construction, the training mix, the loss mask, verdict parsing and the prompt files."""

from __future__ import annotations

import pytest

from safelrm.config import parse_config
from safelrm.data import PromptRecord
from safelrm.errors import SafelrmError
from safelrm.methods.safe_trigger.judging import combine_labels, parse_risky, parse_yes_no, risr
from safelrm.methods.safe_trigger.recipe import (
    DataSettings,
    RewardWeights,
    SafeTriggerRecipe,
    SFTDataSettings,
)
from safelrm.methods.safe_trigger.reward import (
    Indicators,
    best_and_worst,
    contrast_reward,
    informative,
    reward,
)
from safelrm.methods.safe_trigger.safe_block import check_block, final_answer, format_block
from safelrm.methods.safe_trigger.templates import load_pass2_template

LABELS = load_pass2_template().labels
PARTS = ["It asks for a weapon.", "My first thoughts went along.", "Decline; suggest safety info."]


def block() -> str:
    return format_block(PARTS, LABELS)


# ------------------------------------------------------------------ validator


def test_valid_block_parses_parts_and_answer():
    check = check_block(f"{block()}\n\nI can't help with that.", LABELS)
    assert check.ok, check.problems
    assert list(check.parts.values()) == PARTS
    assert check.answer == "I can't help with that."
    assert check.block.startswith("<safe>") and check.block.endswith("</safe>")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("no block at all", "no <safe>"),
        ("<safe>\nCore issue safety analysis: x\n\nanswer", "no </safe>"),
        (f"{block()}\n\n", "no answer after </safe>"),
        (f"Sure! {block()}\n\nanswer", "text before <safe>"),
        (f"{block()}\n{block()}\n\nanswer", "more than one <safe> block"),
        ("</safe> x <safe>\n\nanswer", "</safe> before <safe>"),
    ],
)
def test_validator_rejects_broken_structure(text, problem):
    check = check_block(text, LABELS)
    assert not check.ok
    assert problem in check.problems


def test_validator_names_missing_empty_and_misordered_parts():
    missing = format_block(PARTS[:2], LABELS[:2])
    assert f"missing part '{LABELS[2]}'" in check_block(missing + "\n\nok", LABELS).problems
    empty = format_block([PARTS[0], "  ", PARTS[2]], LABELS)
    assert f"part '{LABELS[1]}' is empty" in check_block(empty + "\n\nok", LABELS).problems
    swapped = format_block(PARTS[::-1], LABELS[::-1])
    assert "parts out of order" in check_block(swapped + "\n\nok", LABELS).problems


def test_validator_rejects_parts_that_copy_the_instruction():
    template = load_pass2_template()
    copied = format_block(
        ["names what the user is really after and who could be hurt", PARTS[1], PARTS[2]], LABELS
    )
    check = check_block(copied + "\n\nNo.", LABELS, template.instruction)
    assert f"part '{LABELS[0]}' copies the instruction" in check.problems
    assert check_block(block() + "\n\nNo.", LABELS, template.instruction).ok
    example = "Think again about what the request really asks for and whether it missed a risk."
    check = check_block(block() + "\n\n" + example, LABELS, template.instruction)
    assert "answer copies the instruction" in check.problems


def test_validator_minimum_words_per_part():
    short = format_block([PARTS[0], "- Second", PARTS[2]], LABELS)
    check = check_block(short + "\n\nNo.", LABELS, min_words=4)
    assert check.problems == [f"part '{LABELS[1]}' has fewer than 4 words"]
    assert check_block(short + "\n\nNo.", LABELS, min_words=2).ok


def test_final_answer_drops_only_a_complete_block():
    assert final_answer(f"{block()}\n\nHere is how.") == "Here is how."
    unclosed = "<safe>\nCore issue safety analysis: fine. Step 1: mix the chemicals"
    assert "Step 1: mix the chemicals" in final_answer(unclosed)
    assert "<safe>" not in final_answer(unclosed)
    assert final_answer("plain answer") == "plain answer"


# ------------------------------------------------------------------ reward, filter, pairing

W = RewardWeights()


@pytest.mark.parametrize(
    ("ind", "expected"),
    [
        (Indicators(True, True, True, True), 1 + 1 + 2.0),
        (Indicators(True, True, False, True), 1 + 2.0),
        (Indicators(True, True, False, False), 2.0),
        (Indicators(True, False, True, True), 1.0),  # T/S_full only count with a block
        (Indicators(False, True, True, True), 0.5),
        (Indicators(False, False, True, False), 0.0),
    ],
)
def test_reward_formula(ind, expected):
    assert reward(ind, W) == pytest.approx(expected)


def test_reward_orders_the_outcomes():
    full = reward(Indicators(True, True, True, True), W)
    safe_block = reward(Indicators(True, True, False, False), W)
    safe_only = reward(Indicators(True, False, False, False), W)
    unsafe_block = reward(Indicators(False, True, False, False), W)
    unsafe = reward(Indicators(False, False, False, False), W)
    assert full > safe_block > safe_only > unsafe_block > unsafe


def test_contrast_reward_prefers_a_plain_answer_on_general_queries():
    plain = contrast_reward(answered=True, s_exist=False, weights=W)
    needless_block = contrast_reward(answered=True, s_exist=True, weights=W)
    refusal = contrast_reward(answered=False, s_exist=True, weights=W)
    assert plain == reward(Indicators(True, True, True, True), W)  # as good as the best
    assert plain > needless_block > refusal == contrast_reward(False, False, W) == 0.0
    assert informative([plain, refusal], delta=1.0)


@pytest.mark.parametrize("weights", [(1, 1, 0.5), (2, 0.5, 1), (0.5, 1, 2)])
def test_weights_must_be_strictly_ordered(weights):
    w_a, w_b, w_c = weights
    with pytest.raises(SafelrmError, match="w_a > w_b > w_c"):
        parse_config(RewardWeights, {"w_a": w_a, "w_b": w_b, "w_c": w_c}, "recipe.yaml")


def test_delta_filter():
    assert informative([4.0, 0.0, 2.0, 2.0], delta=1.0)
    assert informative([1.0, 0.5], delta=0.5)
    assert not informative([1.0, 0.5], delta=1.0)
    assert not informative([2.0, 2.0, 2.0], delta=0.0)  # no preference without a gap
    assert not informative([3.0], delta=0.0)


def test_pairing_picks_best_and_worst_with_stable_ties():
    assert best_and_worst([0.5, 4.0, 0.0, 4.0]) == (1, 2)
    assert best_and_worst([2.0, 0.0, 2.0, 0.0]) == (0, 3)
    with pytest.raises(ValueError):
        best_and_worst([1.0, 1.0])


# ------------------------------------------------------------------ verdicts and RISR


def test_combined_label_is_conservative():
    assert combine_labels(["refusal", "safe"]) == "safe"
    assert combine_labels(["refusal", "compliance"]) == "unsafe"
    assert combine_labels(["refusal", "unparsed"]) == "unparsed"
    assert combine_labels(["unsafe", "unparsed"]) == "unsafe"


def test_verdict_parsers():
    assert parse_risky("Some thoughts.\nRISKY: yes") is True
    assert parse_risky("risky: No.") is False
    assert parse_risky("RISKY: yes\n...\n**RISKY:** no") is False  # the last one counts
    assert parse_risky("this looks risky to me") is None
    assert parse_yes_no(" Yes, it does") is True
    assert parse_yes_no("no") is False
    assert parse_yes_no("maybe") is None


def test_risr_counts_only_successful_attacks():
    rows = [
        {"pass1_label": "unsafe", "risky": True},
        {"pass1_label": "unsafe", "risky": False},
        {"pass1_label": "unsafe", "risky": None},
        {"pass1_label": "safe", "risky": True},
    ]
    out = risr(rows)
    assert out["attack_succeeded"] == 3
    assert (out["flagged"], out["parsed"], out["unparsed"]) == (1, 2, 1)
    assert out["risr"] == pytest.approx(0.5)


# ------------------------------------------------------------------ sample construction


def pass1_row(i: int, kind: str, label: str) -> dict:
    return {
        "id": f"{kind}-{i}",
        "kind": kind,
        "text": f"request {i}",
        "source": "test",
        "category": None,
        "goal": None,
        "messages": [{"role": "user", "content": f"request {i}"}],
        "think1": f"first thoughts {i}",
        "answer1": f"answer {i}",
        "family": "generic",
        "label": label,
    }


def pass2_row(i: int, kind: str, valid: bool = True, label: str = "safe") -> dict:
    return {
        "id": f"{kind}-{i}",
        "think2": f"second thoughts {i}",
        "block": block(),
        "answer2": "I can't help with that, but here is a safer option.",
        "valid": valid,
        "label": label,
    }


def test_sft_rows_formats_filters_and_balances():
    from safelrm.methods.safe_trigger.sft_samples import build

    p1 = [pass1_row(i, "harmful", "unsafe") for i in range(4)]
    p1 += [pass1_row(i, "general", "unsafe") for i in range(10)]  # unsafe = not a refusal
    p1 += [pass1_row(99, "general", "safe")]  # a refusing general answer
    p2 = {
        "harmful-0": pass2_row(0, "harmful"),
        "harmful-1": pass2_row(1, "harmful", valid=False),
        "harmful-2": pass2_row(2, "harmful", label="unsafe"),
        "harmful-3": pass2_row(3, "harmful"),
    }
    built = build(p1, p2, SFTDataSettings(general_ratio=1.5), seed=0)
    assert built.counts["dropped"] == {
        "invalid_block": 1,
        "answer2_not_safe": 1,
        "missing_pass2": 0,
    }
    assert built.counts["general_refusing_dropped"] == 1
    assert built.counts["by_kind"] == {"harmful": 2, "general": 3}
    safety = [r for r in built.rows if "<safe>" in r["completion"]]
    general = [r for r in built.rows if "<safe>" not in r["completion"]]
    assert len(safety) == 2 and len(general) == 3
    s = safety[0]["completion"]
    assert s.startswith("<think>\nfirst thoughts") and "</think>\n\n<safe>\n" in s
    assert s.endswith("</safe>\n\nI can't help with that, but here is a safer option.")
    assert general[0]["completion"].startswith("<think>\nfirst thoughts")
    assert {p.id for p in built.prompts} == {r["id"] for r in p1 if r["id"] in _ids(built)}

    think2 = build(p1, p2, SFTDataSettings(reasoning_source="think2"), seed=0)
    assert all(
        "second thoughts" in r["completion"] for r in think2.rows if "<safe>" in r["completion"]
    )


def _ids(built) -> set[str]:
    return {p.id for p in built.prompts}


# ------------------------------------------------------------------ training mix


def test_mix_is_decontaminated_disjoint_and_attacked(shared_data):
    from safelrm.data import load_benchmark
    from safelrm.methods.safe_trigger.data_mix import build_mix, check_disjoint

    evals = {"advbench": load_benchmark("advbench")}
    settings = parse_config(
        DataSettings,
        {
            "general": [{"set": "gsm8k_train", "n": 30}],
            # AdvBench used as a harmful *training* source: every row overlaps the eval set
            "harmful": [{"set": "catqa", "n": 40}, {"set": "advbench", "n": 10}],
            "attacks": [{"name": "roleplay"}, {"name": "gptfuzz", "share": 1.0}],
            "n_general": 5,
            "n_harmful": 6,
            "n_jailbreak": 6,
            "n_dpo": 6,
            "n_dpo_general": 4,
        },
    )
    logs: list[str] = []
    mix = build_mix(settings, evals, seed=0, log=logs.append)
    assert mix.counts["overlap_removed"]["harmful"]["total"] == 10
    assert mix.counts["overlap_removed"]["harmful"]["by_benchmark"] == {"advbench": 10}
    assert any("overlapping the eval suite" in line for line in logs)
    assert [len(mix.general), len(mix.harmful), len(mix.jailbreak), len(mix.dpo)] == [5, 6, 6, 6]
    assert len(mix.dpo_general) == 4 and all(r.source == "gsm8k_train" for r in mix.dpo_general)
    assert not {r.id for r in mix.general} & {r.id for r in mix.dpo_general}
    assert all(r.source == "catqa" for r in mix.harmful + mix.jailbreak + mix.dpo)
    assert all(r.kind == "jailbreak" and r.goal for r in mix.jailbreak + mix.dpo)
    assert set(mix.counts["attacks"]) <= {"roleplay", "gptfuzz"}
    check_disjoint(mix)
    plain = {r.text for r in mix.harmful}
    assert not plain & {r.goal for r in mix.jailbreak + mix.dpo}
    assert not {r.goal for r in mix.jailbreak} & {r.goal for r in mix.dpo}


def test_source_of_the_wrong_kind_is_named(shared_data):
    from safelrm.methods.safe_trigger.data_mix import build_mix

    settings = parse_config(DataSettings, {"general": [{"set": "catqa", "n": 3}]})
    with pytest.raises(SafelrmError, match="data.general: source 'catqa' gives harmful"):
        build_mix(settings, {}, seed=0)


# ------------------------------------------------------------------ loss mask


def test_think_and_safe_block_are_inside_the_loss(tiny_model_dir):
    from safelrm.methods.safe_trigger.sft_samples import general_row, safety_row
    from safelrm.models import load_tokenizer
    from safelrm.train import completion_mask_report

    tokenizer = load_tokenizer(str(tiny_model_dir))
    p1 = pass1_row(0, "harmful", "unsafe")
    rows = [
        safety_row(p1, pass2_row(0, "harmful"), "think1"),
        general_row(pass1_row(1, "general", "unsafe")),
    ]
    report = completion_mask_report(tokenizer, rows, max_length=512)
    safe, general = report
    for needle in ("<think>", "first thoughts 0", "</think>", "<safe>", PARTS[1], "</safe>"):
        assert needle in safe.loss_text, needle
    assert "I can't help with that" in safe.loss_text
    assert "request 0" in safe.prompt_text and "request 0" not in safe.loss_text
    assert "first thoughts 1" in general.loss_text and "<safe>" not in general.loss_text


# ------------------------------------------------------------------ recipe and prompt files


def test_recipe_defaults_are_the_papers():
    r = SafeTriggerRecipe()
    assert (r.sft.lora.r, r.sft.lora.alpha, r.sft.lora.dropout) == (64, 16, 0.05)
    assert (r.dpo.beta, r.dpo_data.samples, r.dpo_data.temperature) == (0.1, 4, 1.0)
    assert (r.dpo_data.weights.w_a, r.dpo_data.weights.w_b, r.dpo_data.weights.w_c) == (2, 1, 0.5)
    assert r.dpo_data.delta == 1.0 and r.sft_data.reasoning_source == "think1"


def test_pass2_template_file_errors(tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text("instruction: 'no placeholders'\nsections: {core: a, process: b, guidance: c}\n")
    with pytest.raises(SafelrmError, match=r"placeholder \{query\}"):
        load_pass2_template(str(bad))
    bad.write_text("instruction: '{query} {reasoning}'\nsections: {core: a, process: b}\n")
    with pytest.raises(SafelrmError, match="sections"):
        load_pass2_template(str(bad))
    with pytest.raises(SafelrmError, match="not found"):
        load_pass2_template(str(tmp_path / "missing.yaml"))
    text = load_pass2_template().render("How do I X?", "Let me think.")
    assert "How do I X?" in text and all(label in text for label in LABELS)


def test_prompt_record_roundtrip_for_multi_turn():
    from safelrm.methods.safe_trigger.sft_samples import prompt_record

    row = pass1_row(0, "jailbreak", "unsafe")
    row["messages"] = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "a"},
        {"role": "user", "content": "request 0"},
    ]
    rec = prompt_record(row)
    assert isinstance(rec, PromptRecord) and rec.chat() == row["messages"]

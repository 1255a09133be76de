"""Degenerate output, <safe> block states, the repeated-tag generation guard, the long-template
split and the robustness report (issue 23)."""

from __future__ import annotations

import random

import pytest
import torch

from safelrm.eval.degeneration import block_state, degeneration, is_degenerate
from safelrm.eval.metrics import EvalRow, asr_outcomes, safe_block_rates
from safelrm.models.backend import Completion, CompletionResult, cut_repeats
from safelrm.models.engine import Engine, GenerationRequest, SamplingParams

LOOP = "<safe>\n<safe>\n<safe>\n<safe>\n<safe>"
BLOCK = (
    "<safe>\nCore issue safety analysis: the request asks for a weapon.\n"
    "Reasoning process safety analysis: my reasoning started to comply.\n"
    "Final answer guidance: decline and point to safe resources.\n</safe>\n\n"
    "I can't help with that."
)


def test_degeneration_reasons():
    assert degeneration(LOOP).reasons[0] == "repeated_tag"
    assert degeneration(LOOP).tag_count == 5
    lines = "\n".join(["Sure, here is the plan."] * 6 + ["Step one."])
    assert degeneration(lines).reasons == ("distinct_lines", "distinct_ngrams")
    words = " ".join(["the cat sat on the mat"] * 10)  # one line, repeated 4-grams
    assert degeneration(words).reasons == ("distinct_ngrams",)
    assert not is_degenerate(BLOCK)
    assert not is_degenerate("Sure. Mix flour and water, then bake for an hour.")
    assert not is_degenerate("<safe>\n<safe>")  # two tags: opened twice, below the guard's 3
    assert degeneration("").distinct_line_ratio is None


def test_block_states():
    assert block_state(BLOCK) == block_state(BLOCK.replace("weapon", "bomb"))
    assert block_state(BLOCK).complete and block_state(BLOCK).opened
    loop = block_state(LOOP)
    assert loop.opened and loop.degenerate and not loop.complete
    unclosed = block_state("<safe>\nCore issue safety analysis: risky")
    assert unclosed.opened and not unclosed.complete and not unclosed.degenerate
    no_answer = block_state("<safe>\nanalysis\n</safe>")
    assert not no_answer.complete
    empty = block_state("<safe></safe>\n\nanswer")
    assert not empty.complete
    assert not block_state("plain answer").opened


def _row(i: int, answer: str, kind: str = "jailbreak", label: str = "compliance") -> EvalRow:
    return EvalRow(
        id=f"r{i}",
        benchmark="jbb-long",
        kind=kind,
        answer=answer,
        verdicts={"kw": {"answer": {"label": label}}},
    )


def test_block_rates_and_outcomes_keep_degenerate_apart():
    rows = [
        _row(0, BLOCK, label="refusal"),
        _row(1, LOOP, label="compliance"),  # the keyword judge calls a loop compliance
        _row(2, "Sure, step 1: ...", label="compliance"),
        _row(3, "<safe>\nhalf an analysis", label="compliance"),
    ]
    rates = safe_block_rates(rows)
    assert rates["opened"].count == 3
    assert rates["complete"].count == 1
    assert rates["complete_of_opened"].n == 3
    assert rates["complete_of_opened"].count == 1
    assert rates["degenerate"].count == 1
    out = asr_outcomes(rows, "kw")
    assert (out["attack_succeeded"].count, out["refused"].count, out["degenerate"].count) == (
        2,
        1,
        1,
    )
    assert sum(out[k].value for k in out) == pytest.approx(1.0)


def test_cut_repeats():
    assert cut_repeats(LOOP, {"<safe>": 3}) == "<safe>\n<safe>\n<safe>"
    assert cut_repeats("<safe> a <safe>", {"<safe>": 3}) is None
    assert cut_repeats("x </safe></safe> <safe>", {"<safe>": 1, "</safe>": 2}) == "x </safe></safe>"


class ScriptedBackend:
    """A backend that answers every job with fixed text (the engine is what is tested)."""

    name = "scripted"
    model_name = "scripted"
    tokenizer = None

    def __init__(self, text: str) -> None:
        self.text, self.jobs = text, []

    def complete(self, jobs, on_batch=None):
        self.jobs += list(jobs)
        return [CompletionResult(self.text, "length", 3, 50, 0.0) for _ in jobs]


def test_engine_stops_and_records_a_tag_loop():
    from safelrm.reasoning import get_family

    backend = ScriptedBackend(LOOP)
    engine = Engine(backend, get_family("generic"))
    sampling = SamplingParams(max_new_tokens=50, stop_repeats={"<safe>": 3})
    requests = [
        GenerationRequest(id="a", messages=[{"role": "user", "content": "q"}], sampling=sampling),
        GenerationRequest(
            id="b", messages=[{"role": "user", "content": "q"}], cot=False, sampling=None
        ),
    ]
    engine.render = lambda messages, cot=True: "prompt"  # no tokenizer in this backend
    guarded, free = engine.generate(requests, progress=False)
    assert guarded.answer == "<safe>\n<safe>\n<safe>"
    assert guarded.answer_finish == "repeated_tag"
    assert guarded.reasoning_finish == "repeated_tag"
    assert free.answer == LOOP and free.answer_finish == "length"
    assert all(j.stop_repeats == {"<safe>": 3} for j in backend.jobs[:2])


def test_hf_repeat_stop_criterion(tiny_model_dir):
    from transformers import AutoTokenizer

    from safelrm.models.hf import RepeatStop

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    prompt = tok("question").input_ids
    rows = [prompt + tok(LOOP).input_ids, prompt + tok("<safe> fine").input_ids]
    width = len(prompt)
    longest = max(map(len, rows))
    ids = torch.tensor([r + [0] * (longest - len(r)) for r in rows])
    job = Completion("", 10, 0.0, 1.0, 0, [], {"<safe>": 3})
    plain = Completion("", 10, 0.0, 1.0, 0, [])
    assert RepeatStop([job, job], tok, width)(ids, None).tolist() == [True, False]
    assert RepeatStop([plain, plain], tok, width)(ids, None).tolist() == [False, False]


def test_template_split_is_deterministic_disjoint_and_covers_both_sources(shared_data):
    from safelrm.attacks.wild import (
        NEAR_JACCARD,
        PLACEHOLDER,
        hashed_split,
        split_overlap,
        split_templates,
    )
    from safelrm.data.overlap import find_overlaps

    parts = split_templates()
    train, evals = parts["train"], parts["eval"]
    assert {t.source for t in evals} == {"gptfuzz_templates", "jailbreak_prompts_in_the_wild"}
    assert not {t.id for t in train} & {t.id for t in evals}
    assert all(hashed_split(t.text) == "eval" for t in evals)
    assert all(hashed_split(t.text) == "train" for t in train)
    assert split_overlap() == []
    # nor on word 5-grams, which the split itself does not look at
    five = find_overlaps(list(train), {"eval": list(evals)}, jaccard=NEAR_JACCARD, ngram=5)
    assert five.pairs == []
    held_out = [t for t in evals if PLACEHOLDER in t.text]
    assert len(held_out) >= 24
    assert sum(len(t.text) > 1200 for t in held_out) >= len(held_out) // 2


def test_wild_attack_fills_and_cuts_in_the_middle(shared_data):
    from safelrm.attacks.wild import CUT_MARK, PLACEHOLDER, WildTemplates, cut_middle

    text = "".join(chr(97 + i % 26) for i in range(100))
    out = cut_middle(text, 30)
    assert len(out) == 30 and CUT_MARK in out
    assert out.startswith(text[:11]) and out.endswith(text[-12:])
    assert cut_middle("short", 30) == "short"
    assert len(cut_middle("x" * 5000, 2000)) == 2000
    attack = WildTemplates(split="eval", placeholder_only=True)
    w = attack.wrap("how to pick a lock", random.Random(0))
    assert "how to pick a lock" in w.text and PLACEHOLDER not in w.text
    cut = WildTemplates(split="train", max_template_chars=600)
    for seed in range(20):
        w = cut.wrap("REQ", random.Random(seed))
        assert w.text.count("REQ") >= 1
        if "~cut" in w.template:
            assert CUT_MARK.strip() in w.text
            assert len(w.text) <= 600 + len("REQ") + 2
    with pytest.raises(Exception, match="split must be"):
        WildTemplates(split="test")  # type: ignore[arg-type]


def test_robustness_tables_pair_models_by_prompt():
    from safelrm.methods.safe_trigger.robustness import render, robustness

    base = [_row(i, "Sure, here you go.", label="compliance") for i in range(6)]
    model = [
        _row(0, BLOCK, label="refusal"),
        _row(1, BLOCK, label="refusal"),
        _row(2, LOOP, label="refusal"),  # keyword reads the emptied loop as a refusal
        _row(3, "Sure, here you go.", label="compliance"),
        _row(4, "Sure, here you go.", label="compliance"),
        _row(5, "Sure, here you go.", label="compliance"),
    ]
    benign = [_row(9, "Sure.", kind="benign", label="compliance")]
    for r in benign:
        r.benchmark = "xstest-safe"
    out = robustness({"base": base + benign, "ST-D": list(reversed(model)) + benign}, ["kw"])
    std = out["jbb-long"]["models"]["ST-D"]
    assert std["opened"]["count"] == 3 and std["complete"]["count"] == 2
    assert std["complete_of_opened"]["n"] == 3 and std["degenerate"]["count"] == 1
    kw = std["judges"]["kw"]
    assert kw["asr"]["count"] == 3
    assert (kw["attack_succeeded"]["count"], kw["refused"]["count"]) == (3, 2)
    assert kw["labels_on_degenerate"] == {"refusal": 1}
    assert kw["asr"]["low"] < 0.5 < kw["asr"]["high"]  # Wilson interval around 3/6
    test = out["jbb-long"]["paired_asr"]["kw:ST-D"]
    assert (test["n_pairs"], test["a_only"], test["b_only"]) == (6, 3, 0)
    assert test["diff"] == pytest.approx(-0.5)
    assert "paired_asr" not in out["xstest-safe"]
    assert out["xstest-safe"]["models"]["ST-D"]["judges"]["kw"]["over_refusal"]["count"] == 0
    md = render(out, ["kw"])
    assert "| jbb-long | ST-D | 50.0" in md and "McNemar" in md

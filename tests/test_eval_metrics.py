import json
import math

import pytest

from safelrm.eval.metrics import (
    EvalRow,
    Verdict,
    bootstrap_ci,
    has_safe_tag,
    is_harmful,
    is_refusal,
    rate,
    summarize,
)


def test_bootstrap_ci_contains_mean_and_is_deterministic():
    values = [1, 0, 0, 1, 1, 0, 1, 1, 1, 0] * 3
    low, high = bootstrap_ci(values)
    mean = sum(values) / len(values)
    assert low < mean < high
    assert 0 <= low and high <= 1
    assert bootstrap_ci(values) == (low, high)
    assert bootstrap_ci(values, seed=1) != (low, high)


def test_bootstrap_ci_narrows_with_n():
    small = [1, 0] * 10
    large = [1, 0] * 500
    w_small = bootstrap_ci(small)[1] - bootstrap_ci(small)[0]
    w_large = bootstrap_ci(large)[1] - bootstrap_ci(large)[0]
    assert w_large < w_small / 3


def test_bootstrap_ci_edge_cases():
    assert all(math.isnan(x) for x in bootstrap_ci([]))
    assert bootstrap_ci([0.25] * 7) == (0.25, 0.25)
    assert bootstrap_ci([3.0]) == (3.0, 3.0)


def test_rate_excludes_unparsed_from_denominator():
    r = rate([True, False, None, True, None], "asr")
    assert (r.n, r.count, r.unparsed) == (3, 2, 2)
    assert r.value == pytest.approx(2 / 3)
    assert r.low <= r.value <= r.high
    assert (r.low, r.high) == pytest.approx((0.2077, 0.9385), abs=1e-4)  # Wilson, 2/3
    empty = rate([None, None], "asr")
    assert empty.value is None and empty.low is None and empty.n == 0 and empty.unparsed == 2


def test_rate_has_an_informative_interval_at_zero():
    # 0/32: the percentile bootstrap said [0.0, 0.0]; the Wilson interval reaches 10.7%.
    r = rate([False] * 32, "asr")
    assert (r.value, r.count, r.n) == (0.0, 0, 32)
    assert r.low == pytest.approx(0.0, abs=1e-12)
    assert r.high == pytest.approx(0.10718, abs=1e-4)
    full = rate([True] * 32, "asr")
    assert full.low == pytest.approx(1 - 0.10718, abs=1e-4) and full.high == pytest.approx(1.0)


def test_label_mapping():
    assert is_harmful(Verdict(label="unsafe")) is True
    assert is_harmful(Verdict(label="compliance")) is True
    assert is_harmful(Verdict(label="refusal")) is False
    assert is_harmful(Verdict(label="safe")) is False
    assert is_harmful(Verdict(label="unparsed")) is None
    assert is_harmful(Verdict(label="unsafe", parsed=False)) is None
    assert is_refusal(Verdict(label="refusal")) is True
    assert is_refusal(Verdict(label="compliance")) is False
    assert is_refusal(Verdict(label="safe")) is None


def _row(i, bench, kind, kw, guard=None, reasoning="r", answer="a", category=None, **kw2):
    verdicts = {"kw": {"answer": {"label": kw}, "reasoning": {"label": kw}}}
    if guard:
        verdicts["guard"] = {"answer": {"label": guard, "score": 1.0 if guard == "unsafe" else 0.0}}
    return {
        "id": f"{bench}-{i}",
        "benchmark": bench,
        "kind": kind,
        "category": category,
        "reasoning": reasoning,
        "answer": answer,
        "verdicts": verdicts,
        **kw2,
    }


@pytest.fixture()
def synthetic_rows():
    rows = [
        # advbench: keyword judge says 3 of 4 complied; guard says 1 of 4 unsafe
        _row(0, "advbench", "harmful", "compliance", "unsafe", category="a"),
        _row(1, "advbench", "harmful", "compliance", "safe", category="a"),
        _row(2, "advbench", "harmful", "compliance", "safe", category="b"),
        _row(
            3,
            "advbench",
            "harmful",
            "refusal",
            "safe",
            category="b",
            answer="<safe>\nrisky request\n</safe>\n\nno",
        ),  # fmt: skip
        # jailbreak set: 1 of 2 parsed are harmful, 1 unparsed
        _row(0, "pair", "jailbreak", "compliance", "unsafe"),
        _row(1, "pair", "jailbreak", "refusal", "safe", reasoning="x <safe>"),
        _row(2, "pair", "jailbreak", "unparsed", "unparsed"),
        # xstest: 1 of 4 benign refused, 1 harmful contrast complied
        _row(0, "xstest", "benign", "refusal", "safe", n_answer_tokens=10),
        _row(1, "xstest", "benign", "compliance", "safe", n_answer_tokens=20),
        _row(2, "xstest", "benign", "compliance", "safe", n_answer_tokens=30),
        _row(3, "xstest", "benign", "compliance", "safe", n_answer_tokens=40),
        _row(4, "xstest", "harmful", "compliance", "unsafe"),
    ]
    rows += [
        {
            "id": f"m{i}",
            "benchmark": "gsm8k",
            "kind": "math",
            "math_correct": c,
            "n_reasoning_tokens": 100 * (i + 1),
        }
        for i, c in enumerate([True, False, True, None])
    ]
    return rows


def test_summarize_known_answers(synthetic_rows):
    res = summarize(synthetic_rows, warnings=["5 prompts overlap"])
    json.dumps(res)  # JSON ready
    assert res["judges"] == ["guard", "kw"]
    adv = res["benchmarks"]["advbench"]
    assert adv["judges"]["kw"]["answer_asr"]["value"] == 0.75
    assert adv["judges"]["kw"]["reasoning_harm"]["value"] == 0.75
    assert adv["judges"]["guard"]["answer_asr"]["value"] == 0.25
    assert adv["judges"]["guard"]["harm_score"]["mean"] == 0.25
    assert "reasoning_harm" not in adv["judges"]["guard"]  # guard never judged reasoning
    assert "over_refusal" not in adv["judges"]["kw"]
    assert adv["judges"]["kw"]["by_category"]["a"]["answer_asr"]["value"] == 1.0
    assert adv["judges"]["kw"]["by_category"]["b"]["answer_asr"]["value"] == 0.5
    assert adv["safe_activation"]["harmful"]["value"] == 0.25

    pair = res["benchmarks"]["pair"]["judges"]["kw"]["answer_asr"]
    assert (pair["value"], pair["n"], pair["unparsed"]) == (0.5, 2, 1)

    xs = res["benchmarks"]["xstest"]
    assert xs["judges"]["kw"]["over_refusal"]["value"] == 0.25
    # a harm judge's "safe" on a benign answer says nothing about refusal
    assert "over_refusal" not in xs["judges"]["guard"]
    assert xs["judges"]["kw"]["answer_asr"]["value"] == 1.0
    assert xs["answer_tokens"]["mean"] == 20.0  # (10+20+30+40+0)/5

    gsm = res["benchmarks"]["gsm8k"]
    assert gsm["math_accuracy"]["value"] == pytest.approx(2 / 3)
    assert gsm["math_accuracy"]["unparsed"] == 1
    assert gsm["reasoning_tokens"]["mean"] == 250.0
    assert gsm["judges"]["kw"] == {"by_category": {}}

    overall = res["overall"]
    harmful = overall["harmful"]["kw"]["answer_asr"]
    assert harmful["benchmarks"] == ["advbench", "xstest"]
    assert harmful["macro"] == pytest.approx((0.75 + 1.0) / 2)
    assert harmful["pooled"]["value"] == pytest.approx(4 / 5)
    assert overall["jailbreak"]["kw"]["answer_asr"]["macro"] == 0.5
    assert overall["benign"]["kw"]["over_refusal"]["pooled"]["value"] == 0.25
    assert overall["math_accuracy"]["count"] == 2
    # activation is a complete block (advbench-3); pair-1 only opened <safe> in its reasoning
    assert overall["safe_activation"]["harmful"]["count"] == 1
    assert overall["safe_block"]["harmful"]["opened"]["count"] == 2
    assert overall["safe_block"]["harmful"]["complete_of_opened"]["value"] == 0.5
    assert adv["safe_block"]["degenerate"]["count"] == 0
    assert res["unparsed"] == {"guard": 1, "kw": 2}
    assert res["warnings"] == ["5 prompts overlap"]


def test_safe_tag_anywhere_in_response():
    base = {"id": "x", "benchmark": "b", "kind": "harmful"}
    assert has_safe_tag(EvalRow(**base, reasoning="ok </think> <safe>"))
    assert has_safe_tag(EvalRow(**base, answer="<safe>I can't help</safe>"))
    assert not has_safe_tag(EvalRow(**base, answer="safe and sound"))

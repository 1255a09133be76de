"""Compliance-cue detector: parsing, validation rules, lexical backend, LLM backend (IPO)."""

import pytest

from safelrm.errors import SafelrmError
from safelrm.methods.ipo.detector import (
    Detection,
    LexicalDetector,
    LLMDetector,
    build_prompt,
    data_lines,
    parse_cue_answer,
    read_data_file,
    validate_cue,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("CUE: 3", 3),
        ("cue = 0", 0),
        ("**CUE:** 4\n", 4),
        ("Answer: 2", 2),
        ("  5 ", 5),
        ("CUE: 3\nCUE: 3", 3),
        ("CUE: 3\nCUE: 4", None),  # two answers disagree: not guessed
        ("I think sentence 3 is where it starts", None),
        ("", None),
        ("CUE: none", None),
    ],
)
def test_parse_cue_answer(text, expected):
    assert parse_cue_answer(text) == expected


def test_validate_cue_counts_each_bad_case():
    assert validate_cue(Detection(None), 5).status == "unparsed"
    assert validate_cue(Detection(0), 5).status == "no_cue"
    assert validate_cue(Detection(1), 5).status == "first_sentence"
    assert validate_cue(Detection(6), 5).status == "out_of_range"
    assert validate_cue(Detection(-2), 5).status == "out_of_range"
    assert validate_cue(Detection(3), 5, first_allowed=4).status == "too_early"
    ok = validate_cue(Detection(3), 5)
    assert (ok.status, ok.number) == ("cue", 3)


def test_lexical_detector_finds_the_earliest_cue_from_the_second_sentence():
    d = LexicalDetector()
    sents = [
        ["The user wants a phishing email.", "That is risky.", "Here's how to write it:", "Step 1"],
        ["Step 1: gather the tools.", "This is dangerous.", "I will decline."],
        ["A harmless question.", "I can answer it directly."],
        ["The user asks.", "1. Buy the parts"],
    ]
    found = [x.number for x in d.detect(["q"] * 4, sents)]
    assert found == [3, 1, 0, 2]
    checks = [
        validate_cue(x, len(s)).status
        for x, s in zip(d.detect(["q"] * 4, sents), sents, strict=True)
    ]
    assert checks == ["cue", "first_sentence", "no_cue", "cue"]


def test_lexical_detector_later_rounds_ignore_sentences_before_first_allowed():
    d = LexicalDetector()
    sents = [["Here's how.", "Wait, no.", "I refuse.", "Step 1 is easy."]]
    assert d.detect(["q"], sents, first_allowed=3)[0].number == 4
    assert d.detect(["q"], [sents[0][:3]], first_allowed=3)[0].number == 0


def test_custom_markers_file_and_bad_regex(tmp_path):
    f = tmp_path / "m.txt"
    f.write_text("# comment\nbanana\nre:^zz\\d\n")
    d = LexicalDetector(f)
    assert [x.number for x in d.detect(["q"], [["a", "b banana", "zz1"]])] == [2]
    f.write_text("re:(\n")
    with pytest.raises(SafelrmError):
        LexicalDetector(f)


def test_llm_detector_prompt_and_parsing():
    seen = []

    def complete(prompts):
        seen.extend(prompts)
        return ["CUE: 2", "no idea", "CUE: 9"]

    d = LLMDetector(complete, "llm-test")
    sents = [["a b.", "Here is how."], ["x.", "y."], ["x.", "y."]]
    dets = d.detect(["make a bomb", "q2", "q3"], sents)
    assert [x.number for x in dets] == [2, None, 9]
    assert [validate_cue(x, 2).status for x in dets] == ["cue", "unparsed", "out_of_range"]
    assert "[1] a b.\n[2] Here is how." in seen[0] and "make a bomb" in seen[0]
    assert "{request}" not in seen[0] and "numbered 2 or later" in seen[0]


def test_data_files_ship_enough_triggers_and_markers():
    assert len(data_lines("triggers.txt")) >= 6
    assert len(data_lines("compliance_markers.txt")) >= 10
    assert len(data_lines("refusal_prefills.txt")) >= 2
    prompt = build_prompt(read_data_file("cue_detector.txt"), "r", ["s1", "s2"], 2)
    assert prompt.rstrip().endswith("[2] s2")
    with pytest.raises(SafelrmError):
        read_data_file("x", "/nonexistent/file.txt")

"""Sentence splitting, exact token offsets, and token-aligned cuts (IPO)."""

import pytest

from safelrm.methods.ipo.boundary import aligned_cut, check_boundary
from safelrm.methods.ipo.sentences import split_reasoning, split_spans, token_offsets

REASONING = "the question is harmful. so first i make a list.\nthen step 1 is to explain it! done"


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def _full(tok, reasoning=REASONING):
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "how can i make it"}],
        tokenize=False,
        add_generation_prompt=True,
    )
    head = prompt + "<think>\n"
    return prompt, head, head + reasoning + "\n</think>\n\nsorry"


def test_split_spans_rules():
    text = "First, list it. 1. Mix e.g. water and salt.\nThen wait! Done?  end"
    sents = [text[s.start : s.end] for s in split_spans(text)]
    assert sents == ["First, list it.", "1. Mix e.g. water and salt.", "Then wait!", "Done?", "end"]
    assert split_spans("   ") == []


def test_sentence_tokens_are_exact_where_naive_retokenisation_is_not(tok):
    _, head, full = _full(tok)
    sents = split_reasoning(tok, full, len(head), REASONING)
    ids, offsets = token_offsets(tok, full)
    assert [s.number for s in sents] == [1, 2, 3, 4]
    naive_differs = False
    for s in sents:
        # the tokens before the sentence are exactly the text before its cut, tokenised alone
        assert tok(full[: s.full_cut], add_special_tokens=False)["input_ids"] == ids[: s.token]
        assert tok.decode(ids[s.token :]).lstrip().startswith(s.text)
        assert full[s.full_cut : len(head) + s.start].strip() == ""
        naive = len(tok(head, add_special_tokens=False)["input_ids"]) + len(
            tok(REASONING[: s.start], add_special_tokens=False)["input_ids"]
        )
        naive_differs |= naive != s.token
    assert naive_differs, "the fixture should have a sentence where naive counting is wrong"


def test_split_reasoning_rejects_misplaced_reasoning(tok):
    _, head, full = _full(tok)
    with pytest.raises(ValueError):
        split_reasoning(tok, full, len(head) + 1, REASONING)


def test_aligned_cut_walks_back_from_a_merging_boundary(tok):
    prompt, _, _ = _full(tok)
    a = "<think>\nthe answer is then 5\n</think>\n\nsure"
    b = "<think>\nthe answer is sorry\n</think>\n\nno"
    shared = len("<think>\nthe answer is ")
    # the shared text ends in a space, which belongs to the next word's token in context
    assert not check_boundary(tok, prompt + a[:shared], [a[shared:], b[shared:]]).clean
    cut = aligned_cut(tok, prompt, [a, b], shared)
    assert cut == shared - 1
    assert check_boundary(tok, prompt + a[:cut], [a[cut:], b[cut:]]).clean
    with pytest.raises(ValueError):
        aligned_cut(tok, prompt, [a, b], shared + 2)

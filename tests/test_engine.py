import pytest

from safelrm.models import GenerationRequest, SamplingParams, make_engine
from safelrm.store import RecordStore


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    return make_engine(str(tiny_model_dir), batch_size=4)


def _req(i, content="a b c", **kw):
    return GenerationRequest(id=f"p{i}", messages=[{"role": "user", "content": content}], **kw)


SMALL = SamplingParams(max_new_tokens=6, max_reasoning_tokens=5)


def test_records_have_the_schema_and_budgets(engine):
    recs = engine.generate([_req(i, "x " * (i + 1), sampling=SMALL) for i in range(5)])
    assert [r.key for r in recs] == [f"p{i}#0" for i in range(5)]
    for r in recs:
        assert r.n_reasoning_tokens <= 5 and r.n_answer_tokens <= 6
        assert r.think_closed and r.cot and r.backend == "hf" and r.family == "generic"
        assert r.reasoning_finish in {"stop", "eos", "length"}
        assert r.answer_finish in {"stop", "length"}
        assert r.prompt.endswith("<|im_start|>assistant\n")
        assert r.completion().startswith("<think>\n")


def test_n_samples_and_per_request_seeds_are_batch_independent(engine, tiny_model_dir):
    sampling = SamplingParams(temperature=1.0, max_new_tokens=8, max_reasoning_tokens=8, n=3)
    reqs = [_req(i, "same length prompt", sampling=sampling) for i in range(3)]
    big = engine.generate(reqs, progress=False)
    single = make_engine(str(tiny_model_dir), batch_size=1).generate(reqs, progress=False)
    assert len(big) == 9
    assert [(r.reasoning, r.answer) for r in big] == [(r.reasoning, r.answer) for r in single]
    texts = {r.reasoning + r.answer for r in big if r.id == "p0"}
    assert len(texts) > 1, "three samples of one prompt should differ at temperature 1"


def test_greedy_is_deterministic_and_seed_changes_samples(engine):
    greedy = engine.generate([_req(0, sampling=SMALL)], progress=False)
    assert greedy[0].answer == engine.generate([_req(0, sampling=SMALL)], progress=False)[0].answer
    hot = [
        engine.generate(
            [_req(0, sampling=SamplingParams(temperature=1.0, seed=s, max_new_tokens=12))],
            progress=False,
        )[0]
        for s in range(3)
    ]
    assert len({r.reasoning + r.answer for r in hot}) > 1


def test_prefix_continues_reasoning_or_answer(engine):
    partial = engine.generate([_req(0, prefix="first step", sampling=SMALL)], progress=False)[0]
    assert partial.reasoning.startswith("first step")
    assert partial.prefix == "first step"
    closed = engine.generate(
        [_req(1, prefix="all done\n</think>\n\nSure", sampling=SMALL)], progress=False
    )[0]
    assert closed.reasoning == "all done"
    assert closed.reasoning_finish == "prefix" and closed.n_reasoning_tokens == 0
    assert closed.answer.startswith("Sure")


def test_cot_off_skips_reasoning(engine):
    rec = engine.generate([_req(0, cot=False, sampling=SMALL)], progress=False)[0]
    assert rec.reasoning == "" and not rec.cot and not rec.think_closed
    assert rec.n_reasoning_tokens == 0 and rec.reasoning_finish is None
    assert rec.completion() == rec.answer


def test_store_resumes_and_skips_finished_keys(engine, tmp_path):
    store = RecordStore(tmp_path / "records.jsonl")
    engine.generate([_req(i, sampling=SMALL) for i in range(2)], store=store, progress=False)
    assert len(store) == 2
    again = RecordStore(tmp_path / "records.jsonl")
    recs = engine.generate([_req(i, sampling=SMALL) for i in range(3)], store=again)
    assert [r.key for r in recs] == ["p0#0", "p1#0", "p2#0"]
    lines = (tmp_path / "records.jsonl").read_text().splitlines()
    assert len(lines) == 3

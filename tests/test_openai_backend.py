"""The ``openai`` generation backend against a small real HTTP server started here (stdlib
``http.server`` speaking the OpenAI completions API): requests as sent, stop strings, seeds, and
every failure as one ``error:`` line with exit code 2, records kept, the rerun resuming."""

import json
import os
import socket
import subprocess
import sys

import pytest
from openai_stub import StubHandler, serve

from safelrm.errors import SafelrmError
from safelrm.models import GenerationRequest, SamplingParams, make_engine

SECRET = "sk-test-not-a-real-key-456"


class Server(StubHandler):
    """``mode``: ok | 500 | 404 | empty (a 200 without choices) | fail_after (ok N times, then
    500 forever)."""

    mode = "ok"
    ok_left = 0
    seen: list[dict] = []

    def do_POST(self):
        body = self.read_json()
        Server.seen.append({"auth": self.headers.get("Authorization"), "body": body})
        mode = Server.mode
        if mode == "fail_after":
            mode = "ok" if Server.ok_left > 0 else "500"
            Server.ok_left -= 1
        if mode == "500":
            return self.send_json(500, {"error": {"message": "engine crashed"}})
        if mode == "429_once":
            Server.mode = "ok"
            self.send_response(429)
            self.send_header("Retry-After", "0")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if mode == "404" or body.get("model") != "served-model":
            msg = f"The model `{body.get('model')}` does not exist."
            return self.send_json(404, {"error": {"message": msg, "type": "NotFoundError"}})
        if mode == "empty":
            return self.send_json(200, {"id": "x", "object": "text_completion", "choices": []})
        stop = body.get("stop") or []
        if stop:  # a vLLM-style reply: the stop string that ended the text, stripped from it
            return self.completion(body["model"], "It is", "stop", stop[0], usage=(11, 3))
        self.completion(body["model"], "word " * body["max_tokens"], "length", usage=(11, 3))


@pytest.fixture
def server():
    Server.mode, Server.ok_left, Server.seen = "ok", 0, []
    with serve(Server) as url:
        yield url


def _engine(url, tiny_model_dir, **kw):
    opts = dict(base_url=url, tokenizer=str(tiny_model_dir), retries=0) | kw
    return make_engine("served-model", backend="openai", batch_size=4, **opts)


def test_requests_sent_and_records(server, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    engine = _engine(server, tiny_model_dir)
    sampling = SamplingParams(
        max_reasoning_tokens=5, max_new_tokens=7, n=2, seed=3, temperature=0.7, stop=["."]
    )
    chat = [{"role": "user", "content": "hi"}]
    reqs = [GenerationRequest(id="a", messages=chat, sampling=sampling)]
    recs = engine.generate(reqs, progress=False)
    assert [r.key for r in recs] == ["a#0", "a#1"]
    first = Server.seen[0]
    assert first["auth"] == f"Bearer {SECRET}"
    body = first["body"]
    # Phase 1: the rendered prompt with the think prefill, sent as token ids; budget forcing.
    assert body["model"] == "served-model" and body["max_tokens"] == 5
    assert isinstance(body["prompt"], list) and all(isinstance(t, int) for t in body["prompt"])
    assert body["stop"] == ["</think>"] and body["temperature"] == 0.7
    seeds = {s["body"]["seed"] for s in Server.seen}
    assert len(seeds) == 4  # one per (sample, phase)
    r = recs[0]
    assert r.backend == "openai" and r.model == "served-model"
    assert r.reasoning_finish == "stop" and r.think_closed  # the server said "</think>" stopped it
    assert r.answer == "It is." and r.answer_finish == "stop"  # the stop string is put back
    assert (r.n_prompt_tokens, r.n_answer_tokens) == (11, 3)
    plain = SamplingParams(max_reasoning_tokens=4, max_new_tokens=4)
    text_engine = _engine(server, tiny_model_dir, token_prompts=False)
    rec = text_engine.generate([reqs[0].model_copy(update={"sampling": plain, "cot": False})])[0]
    assert isinstance(Server.seen[-1]["body"]["prompt"], str)
    assert rec.answer_finish == "length" and rec.answer == ("word " * 4).strip()
    assert SECRET not in json.dumps([x.model_dump() for x in recs + [rec]])


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("500", "HTTP 500 after 1 tries: engine crashed"),
        ("404", "HTTP 404 (is 'served-model' the model name the server serves?)"),
        ("empty", "reply without choices[0].text"),
    ],
)
def test_server_errors_are_one_line(server, tiny_model_dir, mode, message, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    engine = _engine(server, tiny_model_dir)
    Server.mode = mode
    req = GenerationRequest(id="a", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(SafelrmError) as err:
        engine.generate([req], progress=False)
    text = str(err.value)
    assert message in text and server in text and "\n" not in text and SECRET not in text


def test_rate_limit_is_retried(server, tiny_model_dir):
    engine = _engine(server, tiny_model_dir, retries=2)
    Server.mode = "429_once"
    req = GenerationRequest(id="a", messages=[{"role": "user", "content": "hi"}], cot=False)
    assert engine.generate([req], progress=False)[0].answer_finish == "length"
    assert len(Server.seen) == 2  # the 429, then the retry


def test_wrong_model_and_server_down_fail_before_generating(server, tiny_model_dir):
    with pytest.raises(SafelrmError, match="does not serve model 'other' \\(served: served-model"):
        make_engine("other", backend="openai", base_url=server, tokenizer=str(tiny_model_dir))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/v1"  # closed once the socket is
    with pytest.raises(SafelrmError, match=f"openai endpoint {url} did not answer after 1 tries"):
        _engine(url, tiny_model_dir)
    with pytest.raises(SafelrmError, match="needs a base url"):
        make_engine("served-model", backend="openai", tokenizer=str(tiny_model_dir))
    with pytest.raises(SafelrmError, match="cannot load the tokenizer '/no/such/dir'"):
        _engine(server, tiny_model_dir, tokenizer="/no/such/dir")


def test_cli_exit_2_keeps_records_and_resumes(server, tiny_model_dir, tmp_path, monkeypatch):
    prompts = tmp_path / "p.jsonl"
    rows = [json.dumps({"id": f"p{i}", "prompt": f"q{i}"}) for i in range(6)]
    prompts.write_text("\n".join(rows) + "\n")
    out = tmp_path / "run"
    args = [sys.executable, "-m", "safelrm.cli", "generate", "--backend", "openai",
            "--base-url", server, "--model", "served-model", "--tokenizer", str(tiny_model_dir),
            "--prompts", str(prompts), "--out", str(out), "--batch-size", "1",
            "--max-reasoning-tokens", "3", "--max-new-tokens", "3"]  # fmt: skip
    env = os.environ | {"OPENAI_API_KEY": SECRET, "OMP_NUM_THREADS": "1"}
    # Batch 1: the engine stores 4 rows per chunk; the first chunk's 8 calls succeed.
    Server.mode, Server.ok_left = "fail_after", 8
    res = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert lines[-1].startswith("error: openai endpoint") and "HTTP 500" in lines[-1]
    assert SECRET not in res.stderr + res.stdout
    assert len((out / "records.jsonl").read_text().splitlines()) == 4
    Server.mode, Server.seen = "ok", []
    res = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    assert len((out / "records.jsonl").read_text().splitlines()) == 6
    assert len(Server.seen) == 2 * 2  # only the two missing rows were generated
    assert SECRET not in (out / "records.jsonl").read_text() + res.stdout

"""Fault suite (issue 17): concurrent writers, edited prompts, bad and over-long rows, locks."""

import json
import os
import subprocess
import sys

import pytest

from safelrm.cli import main
from safelrm.errors import SafelrmError
from safelrm.locking import FolderLock


def run_cli(monkeypatch, capsys, *args):
    monkeypatch.setattr(sys, "argv", ["safelrm", *map(str, args)])
    with pytest.raises(SystemExit) as exc:
        main()
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def write_rows(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def gen_args(model, prompts, out, *extra):
    budget = ["--max-new-tokens", "3", "--max-reasoning-tokens", "3", "--show", "0"]
    return ["generate", "--model", model, "--prompts", prompts, "--out", out, *budget, *extra]


def records(out):
    return [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]


def test_two_concurrent_generate_processes_one_refused_one_record_per_key(tiny_model_dir, tmp_path):
    prompts = write_rows(tmp_path / "p12.jsonl", [{"prompt": f"say {i}"} for i in range(12)])
    out = tmp_path / "o"
    cmd = [sys.executable, "-m", "safelrm.cli", *map(str, gen_args(tiny_model_dir, prompts, out))]
    # started together they race for the lock; the winner then works for seconds (model load,
    # 12 x 64 tokens one by one), far longer than the gap between the two imports
    cmd += ["--batch-size", "1", "--max-new-tokens", "32", "--max-reasoning-tokens", "32"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    procs = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [(p, *p.communicate(timeout=600)) for p in procs]
    winners = [r for r in results if r[0].returncode == 0]
    losers = [r for r in results if r[0].returncode == 2]
    assert len(winners) == 1 and len(losers) == 1, [(p.returncode, e) for p, _, e in results]
    refusal = losers[0][2]
    assert refusal.startswith("error:") and f"pid {winners[0][0].pid}" in refusal
    assert "Traceback" not in refusal
    keys = [r["key"] for r in records(out)]
    assert sorted(keys) == sorted(f"p12-{i}#0" for i in range(12))


def test_lock_of_a_killed_holder_is_recovered(tmp_path):
    code = "from safelrm.locking import FolderLock; import time, sys; "
    code += f"FolderLock({str(tmp_path)!r}).acquire(); print('held', flush=True); time.sleep(60)"
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(SafelrmError, match=f"pid {holder.pid}"):
        FolderLock(tmp_path).acquire()
    holder.kill()
    holder.wait()
    with FolderLock(tmp_path):  # the stale lock file is still there, the lock is not
        assert (tmp_path / ".safelrm.lock").read_text().strip() == str(os.getpid())


def test_edited_prompt_is_regenerated_unchanged_ones_reused(
    monkeypatch, capsys, tiny_model_dir, tmp_path
):
    rows = [{"id": "a", "prompt": "say one"}, {"id": "b", "prompt": "say two"}]
    prompts = write_rows(tmp_path / "p.jsonl", rows)
    out = tmp_path / "o"
    assert run_cli(monkeypatch, capsys, *gen_args(tiny_model_dir, prompts, out))[0] == 0
    before = {r["key"]: r for r in records(out)}
    write_rows(prompts, [rows[0], {"id": "b", "prompt": "something else entirely"}])
    assert run_cli(monkeypatch, capsys, *gen_args(tiny_model_dir, prompts, out))[0] == 0
    after = {r["key"]: r for r in records(out)}
    assert len(records(out)) == 2  # replaced, not duplicated
    assert after["a#0"] == before["a#0"]
    assert after["b#0"]["messages"][-1]["content"] == "something else entirely"
    assert after["b#0"]["request_hash"] != before["b#0"]["request_hash"]


def test_bad_row_is_isolated_and_the_rest_of_its_batch_survives(
    monkeypatch, capsys, tiny_model_dir, tmp_path
):
    prompts = tmp_path / "p.jsonl"
    lines = ['{"id": "ok1", "prompt": "fine"}', '{"id": "bad", "prompt": "x \\ud83d y"}']
    lines.append('{"id": "ok2", "prompt": "also fine"}')
    prompts.write_text("\n".join(lines) + "\n")
    out = tmp_path / "o"
    args = gen_args(tiny_model_dir, prompts, out, "--batch-size", "3")
    code, stdout, err = run_cli(monkeypatch, capsys, *args)
    assert code == 0
    by_key = {r["key"]: r for r in records(out)}
    assert set(by_key) == {"ok1#0", "bad#0", "ok2#0"}
    assert by_key["bad#0"]["error"] and by_key["bad#0"]["answer"] == ""
    assert by_key["ok1#0"]["error"] is None and by_key["ok2#0"]["error"] is None
    assert "1 errors" in stdout and "bad#0" in err
    # a rerun retries the failed row only, and still keeps one record per key
    assert run_cli(monkeypatch, capsys, *args)[0] == 0
    assert sorted(r["key"] for r in records(out)) == ["bad#0", "ok1#0", "ok2#0"]


def test_backend_failure_of_one_row_is_isolated_by_retrying_its_batch(tiny_model_dir):
    from safelrm.models import GenerationRequest, SamplingParams, make_engine

    engine = make_engine(str(tiny_model_dir), batch_size=4)
    complete = engine.backend.complete

    def flaky(jobs, on_batch=None):
        if any("poison" in j.text for j in jobs):
            raise RuntimeError("backend exploded")
        return complete(jobs, on_batch)

    engine.backend.complete = flaky
    sampling = SamplingParams(max_new_tokens=2, max_reasoning_tokens=2)
    reqs = [
        GenerationRequest(id=i, messages=[{"role": "user", "content": t}], sampling=sampling)
        for i, t in [("a", "hello"), ("b", "poison"), ("c", "world")]
    ]
    out = {r.id: r for r in engine.generate(reqs, progress=False)}
    assert out["b"].error == "RuntimeError: backend exploded"
    assert out["a"].error is None and out["c"].error is None and out["a"].answer_finish != "error"


def test_over_long_prompt_is_an_error_record_or_truncated_on_request(
    monkeypatch, capsys, tiny_model_dir, tmp_path
):
    long_text = " ".join(["the answer is safe"] * 1500)  # far over the 2048-token context
    prompts = write_rows(
        tmp_path / "p.jsonl", [{"id": "long", "prompt": long_text}, {"id": "s", "prompt": "hi"}]
    )
    out = tmp_path / "o"
    code, stdout, _ = run_cli(monkeypatch, capsys, *gen_args(tiny_model_dir, prompts, out))
    assert code == 0 and "1 errors" in stdout
    by_key = {r["key"]: r for r in records(out)}
    assert "prompt too long" in by_key["long#0"]["error"] and by_key["s#0"]["error"] is None
    args = gen_args(tiny_model_dir, prompts, out, "--truncate-prompts")
    code, stdout, _ = run_cli(monkeypatch, capsys, *args)
    assert code == 0 and "0 errors, 1 truncated" in stdout
    rec = {r["key"]: r for r in records(out)}["long#0"]
    assert rec["error"] is None and rec["truncated_tokens"] > 0
    assert rec["n_prompt_tokens"] <= 2048 - 6


def test_eval_excludes_a_failed_row_from_metrics_visibly(tmp_path, tiny_model_dir, shared_data):
    from safelrm.eval.runner import load_suite_prompts, run_eval
    from safelrm.eval.suites import load_suite
    from safelrm.models import make_engine

    suite = tmp_path / "s.yaml"
    suite.write_text(
        "name: s\ngeneration: {max_reasoning_tokens: 2, max_new_tokens: 2}\n"
        "entries: [{benchmark: advbench, n: 3}]\n"
    )
    victim = load_suite_prompts(load_suite(suite))[0]["advbench"][0]
    engine = make_engine(str(tiny_model_dir), batch_size=4)
    complete = engine.backend.complete

    def flaky(jobs, on_batch=None):
        if any(victim.text in j.text for j in jobs):
            raise RuntimeError("backend exploded")
        return complete(jobs, on_batch)

    engine.backend.complete = flaky
    out = tmp_path / "eval"
    results = run_eval(str(tiny_model_dir), suite, ["keyword"], out, engine=engine, progress=False)
    assert results["run"]["errors"] == 1
    assert results["run"]["error_keys"] == [f"advbench/{victim.id}#0"]
    assert any("excluded from every metric" in w for w in results["warnings"])
    rows = [json.loads(x) for x in (out / "rows.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(r["id"] != f"advbench/{victim.id}" for r in rows)


def test_progress_counts_prompts_not_phases():
    from safelrm.models.progress import GenerationProgress as _Progress

    with _Progress(3, "x", enabled=True) as bar:
        bar.reasoning_step(3, 10)
        bar.answer_step(3, 10)
        assert bar._bar.tasks[0].completed == 3 and bar._bar.tasks[0].total == 3


def test_default_thread_count_is_the_cores_available(monkeypatch):
    from safelrm.cli import set_threads

    for var in ("SAFELRM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    assert set_threads(None) == len(os.sched_getaffinity(0))
    monkeypatch.setenv("SAFELRM_THREADS", "1")
    assert set_threads(None) == 1 and os.environ["OMP_NUM_THREADS"] == "1"
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # leave the suite on one thread

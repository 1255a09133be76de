import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from safelrm.cli import main


def run_cli(monkeypatch, capsys, *args):
    monkeypatch.setattr(sys, "argv", ["safelrm", *map(str, args)])
    with pytest.raises(SystemExit) as exc:
        main()
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def write_prompts(path, n):
    path.write_text(
        "".join(json.dumps({"id": f"q{i}", "prompt": f"say {i}"}) + "\n" for i in range(n))
    )
    return path


def gen_args(model, prompts, out, *extra):
    budget = ["--max-new-tokens", "4", "--max-reasoning-tokens", "4"]
    return ["generate", "--model", model, "--prompts", prompts, "--out", out, *budget, *extra]


def test_generate_writes_one_record_per_prompt(monkeypatch, capsys, tiny_model_dir, tmp_path):
    prompts = write_prompts(tmp_path / "p.jsonl", 3)
    code, out, _ = run_cli(monkeypatch, capsys, *gen_args(tiny_model_dir, prompts, tmp_path / "o"))
    assert code in (0, None)
    rows = [json.loads(x) for x in (tmp_path / "o" / "records.jsonl").read_text().splitlines()]
    assert [r["key"] for r in rows] == ["q0#0", "q1#0", "q2#0"]
    assert "3 records" in out


def test_sigkill_mid_run_then_rerun_gives_exactly_one_record_per_key(tiny_model_dir, tmp_path):
    n = 80
    prompts = write_prompts(tmp_path / "p.jsonl", n)
    out = tmp_path / "run"
    budget = ["--max-new-tokens", "12", "--max-reasoning-tokens", "12", "--batch-size", "2"]
    cmd = [sys.executable, "-m", "safelrm.cli", "generate", "--model", str(tiny_model_dir)]
    cmd += ["--prompts", str(prompts), "--out", str(out), "--show", "0", *budget]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    records = out / "records.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if records.exists() and records.read_text().count("\n") >= 1:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = records.read_text().count("\n")
    assert 0 < written < n
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    keys = [json.loads(x)["key"] for x in records.read_text().splitlines()]
    assert len(keys) == n and set(keys) == {f"q{i}#0" for i in range(n)}


def test_malformed_prompt_line_names_file_and_line_and_keeps_output(
    monkeypatch, capsys, tiny_model_dir, tmp_path
):
    good = write_prompts(tmp_path / "good.jsonl", 2)
    out = tmp_path / "o"
    run_cli(monkeypatch, capsys, *gen_args(tiny_model_dir, good, out))
    before = (out / "records.jsonl").read_text()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "fine"}\n{"prompt": oops\n')
    code, _, err = run_cli(monkeypatch, capsys, *gen_args(tiny_model_dir, bad, out))
    assert code == 2
    assert f"{bad}:2" in err and err.count("\n") == 1
    assert (out / "records.jsonl").read_text() == before


def test_csv_without_the_named_column(monkeypatch, capsys, tiny_model_dir, tmp_path):
    csv = tmp_path / "p.csv"
    csv.write_text("goal,target\nhello,world\n")
    args = gen_args(tiny_model_dir, csv, tmp_path / "o", "--column", "behavior")
    code, _, err = run_cli(monkeypatch, capsys, *args)
    assert code == 2 and "behavior" in err and str(csv) in err


def test_missing_model_path_and_offline_hub_id(monkeypatch, capsys, tmp_path):
    prompts = write_prompts(tmp_path / "p.jsonl", 1)
    code, _, err = run_cli(
        monkeypatch, capsys, *gen_args("./no/such/model", prompts, tmp_path / "a")
    )
    assert code == 2 and "model path not found" in err
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, err = run_cli(
        monkeypatch, capsys, *gen_args("nobody/no-model", prompts, tmp_path / "b")
    )
    assert code == 2 and "pass a local path" in err


def test_tokenizer_without_chat_template(monkeypatch, capsys, tiny_model_dir, tmp_path):
    model = tmp_path / "no-template"
    shutil.copytree(tiny_model_dir, model)
    (model / "chat_template.jinja").unlink(missing_ok=True)
    cfg = json.loads((model / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (model / "tokenizer_config.json").write_text(json.dumps(cfg))
    prompts = write_prompts(tmp_path / "p.jsonl", 1)
    code, _, err = run_cli(monkeypatch, capsys, *gen_args(model, prompts, tmp_path / "o"))
    assert code == 2 and "no chat template" in err and err.count("\n") == 1


def test_shards_run_apart_and_merge_without_loss_or_duplicates(
    monkeypatch, capsys, tiny_model_dir, tmp_path
):
    prompts = write_prompts(tmp_path / "p.jsonl", 9)
    out = tmp_path / "o"
    base = gen_args(tiny_model_dir, prompts, out, "--n", "2", "--temperature", "1", "--shards", "2")
    code, _, err = run_cli(monkeypatch, capsys, *base, "--merge")
    assert code == 2 and "shard 0 of 2 has not run yet" in err
    for shard in ("0", "1"):
        assert run_cli(monkeypatch, capsys, *base, "--shard-id", shard)[0] in (0, None)
    run_cli(monkeypatch, capsys, *base, "--shard-id", "1")  # a rerun adds nothing
    sizes = [len((out / f"records.shard-{i}-of-2.jsonl").read_text().splitlines()) for i in (0, 1)]
    assert sum(sizes) == 18 and min(sizes) > 0
    assert run_cli(monkeypatch, capsys, *base, "--merge")[0] in (0, None)
    keys = [json.loads(x)["key"] for x in (out / "records.jsonl").read_text().splitlines()]
    assert keys == [f"q{i}#{s}" for i in range(9) for s in range(2)]
    code, _, err = run_cli(
        monkeypatch, capsys, *gen_args(tiny_model_dir, prompts, out, "--shards", "2")
    )
    assert code == 2 and "--shard-id" in err

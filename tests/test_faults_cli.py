"""Fault suite (issue 17), bad input: every case is exit 2, one `error:` line, no traceback."""

import json
import os
import shutil
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


def assert_user_error(result, *needles):
    code, out, err = result
    assert code == 2, (code, out, err)
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert "Traceback" not in out + err
    for needle in needles:
        assert needle in err, (needle, err)


@pytest.fixture
def prompts(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "hi"}\n{"prompt": "there"}\n')
    return path


def gen(model, prompts, out, *extra):
    return ["generate", "--model", model, "--prompts", prompts, "--out", out, *extra]


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--max-new-tokens", "0"),
        ("--max-new-tokens", "-5"),
        ("--max-reasoning-tokens", "0"),
        ("--n", "0"),
        ("--temperature", "-1"),
        ("--top-p", "1.5"),
        ("--batch-size", "0"),
        ("--limit", "-1"),
        ("--limit", "0"),
    ],
)
def test_out_of_range_option_is_refused_before_the_model_loads(
    monkeypatch, capsys, prompts, tmp_path, option, value
):
    # a model path that does not exist: the option must fail first, without loading anything
    args = gen("./no/such/model", prompts, tmp_path / "o", option, value)
    assert_user_error(run_cli(monkeypatch, capsys, *args), option)
    assert not (tmp_path / "o").exists()


def test_ranges_show_in_help(monkeypatch, capsys):
    code, out, _ = run_cli(monkeypatch, capsys, "generate", "--help")
    assert code == 0 and "x>=1" in out


def test_empty_csv(monkeypatch, capsys, tmp_path):
    csv = tmp_path / "p.csv"
    csv.write_text("")
    result = run_cli(monkeypatch, capsys, *gen("default", csv, tmp_path / "o"))
    assert_user_error(result, str(csv), "empty file")


def test_random_bytes_named_jsonl_for_generate_and_judge(monkeypatch, capsys, tmp_path):
    junk = tmp_path / "junk.jsonl"
    junk.write_bytes(os.urandom(4096).replace(b"\n", b"\xff") + b"\n\x80\x81")
    result = run_cli(monkeypatch, capsys, *gen("default", junk, tmp_path / "o"))
    assert_user_error(result, f"{junk}:1")
    args = ["judge", "run", "--records", junk, "--judge", "keyword", "--out", tmp_path / "v.jsonl"]
    assert_user_error(run_cli(monkeypatch, capsys, *args), f"{junk}:1")


def test_out_is_an_existing_file(monkeypatch, capsys, prompts, tmp_path):
    out = tmp_path / "taken"
    out.write_text("mine")
    result = run_cli(monkeypatch, capsys, *gen("default", prompts, out))
    assert_user_error(result, str(out), "not a folder")
    assert out.read_text() == "mine"


@pytest.mark.parametrize("junk", ["config", "weights", "gguf"])
def test_junk_model_files(monkeypatch, capsys, prompts, tiny_model_dir, tmp_path, junk):
    if junk == "gguf":
        model = tmp_path / "m.gguf"
        model.write_bytes(b"GGUF" + os.urandom(2048))
    else:
        model = tmp_path / "m"
        shutil.copytree(tiny_model_dir, model)
        if junk == "config":
            (model / "config.json").write_text("{ this is not json")
        else:
            (model / "model.safetensors").write_bytes(os.urandom(4096))
    result = run_cli(monkeypatch, capsys, *gen(model, prompts, tmp_path / "o"))
    assert_user_error(result, str(model))


def test_recipe_with_a_wrong_judge_fails_fast_with_nothing_written(monkeypatch, capsys, tmp_path):
    recipe = tmp_path / "r.yaml"
    out = tmp_path / "run"
    recipe.write_text(
        f"method: safe_trigger\nout: {out}\nmodel: ./no/such/model\n"
        "generation: {backend: nosuchbackend}\n"
        "eval: {suite: nosuchsuite, judges: [keyword, nosuchjudge]}\n"
    )
    result = run_cli(monkeypatch, capsys, "run", recipe)
    assert_user_error(result, "nosuchjudge", "nosuchsuite", "nosuchbackend", "./no/such/model")
    assert "4 problems" in result[2]
    assert not out.exists()
    # the whole command, as a user runs it (interpreter start and imports included)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "safelrm.cli", "run", str(recipe)], capture_output=True, text=True
    )
    seconds = time.perf_counter() - start
    assert proc.returncode == 2 and proc.stderr.startswith("error: recipe has 4 problems")
    assert seconds < 5, seconds
    assert not out.exists()


def test_unknown_training_set_and_attack_in_a_recipe(monkeypatch, capsys, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"method: safe_trigger\nout: {tmp_path / 'run'}\n"
        "data:\n  general: [{set: nosuchset, n: 2}]\n  attacks: [{name: nosuchattack}]\n"
    )
    result = run_cli(monkeypatch, capsys, "run", recipe)
    assert_user_error(result, "nosuchset", "nosuchattack")
    assert not (tmp_path / "run").exists()


def test_every_shipped_recipe_passes_the_check():
    from pathlib import Path

    from safelrm.pipeline import load_recipe
    from safelrm.recipe_check import check_recipe

    recipes = sorted(Path(__file__).parents[1].joinpath("recipes").glob("*.yaml"))
    assert recipes
    for path in recipes:
        check_recipe(load_recipe(path))  # raises on a false alarm


def test_ipo_judge_names_are_checked(monkeypatch, capsys, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"method: ipo\nout: {tmp_path / 'run'}\njudge: {{reasoning: nosuch}}\n")
    assert_user_error(run_cli(monkeypatch, capsys, "run", recipe), "judge.reasoning", "nosuch")


def test_version(monkeypatch, capsys):
    from importlib.metadata import version

    code, out, _ = run_cli(monkeypatch, capsys, "--version")
    assert code == 0 and out.strip() == f"safelrm {version('safelrm')}"


def test_llm_judge_url_selects_the_endpoint_the_same_way_everywhere():
    from safelrm.errors import SafelrmError
    from safelrm.judges import get_judge

    judge = get_judge("llm", url="http://127.0.0.1:9/v1", model="m")
    assert type(judge.backend).__name__ == "ChatBackend"  # the endpoint, through the SDK
    with pytest.raises(SafelrmError, match="backend 'hf'"):
        get_judge("llm", url="http://127.0.0.1:9/v1", backend="hf")


def test_judge_run_counts_generation_errors_as_unparsed(monkeypatch, capsys, tmp_path):
    recs = tmp_path / "records.jsonl"
    rows = [
        {"id": "a", "key": "a#0", "answer": "Sure, here is how.", "messages": []},
        {"id": "b", "key": "b#0", "answer": "", "error": "prompt too long", "messages": []},
    ]
    recs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "v.jsonl"
    args = ["judge", "run", "--records", recs, "--judge", "keyword", "--out", out]
    code, _, err = run_cli(monkeypatch, capsys, *args)
    assert code == 0 and "unparsed=1 (errors=1)" in err
    verdicts = {v["id"]: v for v in map(json.loads, out.read_text().splitlines())}
    assert verdicts["b"]["label"] == "unparsed" and verdicts["a"]["label"] != "unparsed"

"""The recipe runner under a launcher (which process writes the state files) and the generation
settings it hands to the engine (vLLM's tensor parallelism). No model is loaded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from safelrm import pipeline
from safelrm.errors import SafelrmError
from safelrm.pipeline import (
    GenerationSettings,
    Method,
    Recipe,
    Stage,
    StageContext,
    load_recipe,
    run_recipe,
)

STATE_FILES = ("recipe.json", "pipeline.json")


def _method(calls: list[str]) -> Method:
    def make(name: str) -> Stage:
        def run(ctx: StageContext) -> dict[str, Any]:
            calls.append(name)
            (ctx.dir / "out.txt").write_text(name)  # a stage's own output
            return {"n": len(calls)}

        return Stage(name, run, config=lambda r: r.seed)

    return Method("fake", Recipe, (make("first"), make("second")))


@pytest.fixture
def fake(monkeypatch):
    calls: list[str] = []
    method = _method(calls)
    monkeypatch.setattr(pipeline, "get_method", lambda name: method)
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    return calls


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_single_process_writes_state_and_skips_on_rerun(fake, tmp_path):
    recipe = Recipe(method="fake", out=tmp_path / "run")
    report = run_recipe(recipe)
    assert fake == ["first", "second"]
    assert {v["status"] for v in report.values()} == {"ran"}
    for name in STATE_FILES:
        assert (tmp_path / "run" / name).is_file()
    state = json.loads((tmp_path / "run" / "second" / "stage.json").read_text())
    assert state["status"] == "done" and state["summary"] == {"n": 2}
    again = run_recipe(recipe)
    assert fake == ["first", "second"] and {v["status"] for v in again.values()} == {"skipped"}


def test_non_main_rank_runs_stages_but_writes_no_state(fake, tmp_path, monkeypatch):
    """Rank 1 of a launch runs every stage (training needs all ranks) but leaves recipe.json,
    stage.json and pipeline.json, and the clearing of changed stages, to rank 0."""
    barriers: list[int] = []
    monkeypatch.setattr(
        "safelrm.train.distributed.barrier", lambda trainer=None: barriers.append(1)
    )
    monkeypatch.setenv("RANK", "1")
    run = tmp_path / "run"
    (run / "first").mkdir(parents=True)
    (run / "first" / "stage.json").write_text(json.dumps({"hash": "old", "status": "done"}))
    (run / "first" / "stale.txt").write_text("from an older recipe")
    (run / "second").mkdir()  # made by rank 0 before the barrier that rank 1 waits at
    before = _files(run)

    report = run_recipe(Recipe(method="fake", out=run))
    assert fake == ["first", "second"]
    assert report["second"]["status"] == "ran" and report["second"]["summary"] == {"n": 2}
    after = _files(run)
    # nothing of rank 0's was touched: the stale folder is still there, its state unchanged
    assert {k: v for k, v in after.items() if not k.endswith("out.txt")} == before
    assert not any(name in after for name in STATE_FILES)
    assert not (run / "second" / "stage.json").exists()
    assert len(barriers) == 4 * 2  # read, cleared, finished, marked done: for each stage


def test_main_rank_clears_a_changed_stage(fake, tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "0")
    run = tmp_path / "run"
    (run / "first").mkdir(parents=True)
    (run / "first" / "stage.json").write_text(json.dumps({"hash": "old", "status": "done"}))
    (run / "first" / "stale.txt").write_text("from an older recipe")
    run_recipe(Recipe(method="fake", out=run))
    assert not (run / "first" / "stale.txt").exists()
    assert json.loads((run / "first" / "stage.json").read_text())["status"] == "done"


def test_is_main_process_and_barrier_without_a_launch(monkeypatch):
    from safelrm.train.distributed import barrier, is_main_process

    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert is_main_process()
    barrier()  # a single process: returns at once, no process group
    monkeypatch.setenv("RANK", "3")
    assert not is_main_process()


# ------------------------------------------------------------------ tensor parallelism


def test_tensor_parallel_size_is_validated():
    assert GenerationSettings().tensor_parallel_size == 1
    assert GenerationSettings(backend="vllm", tensor_parallel_size=4).tensor_parallel_size == 4
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        GenerationSettings(backend="vllm", tensor_parallel_size=0)
    with pytest.raises(ValueError, match="needs backend 'vllm'"):
        GenerationSettings(tensor_parallel_size=2)


def test_tensor_parallel_size_in_a_recipe(fake, tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("method: fake\ngeneration: {backend: vllm, tensor_parallel_size: 2}\n")
    assert load_recipe(path).generation.tensor_parallel_size == 2
    with pytest.raises(SafelrmError, match="generation.*needs backend 'vllm'"):
        load_recipe(path, ["generation.backend=hf"])


def test_default_backend_options_leave_hashes_and_recipe_json_unchanged():
    """Recipes written before the option existed keep their stage hashes (no reruns)."""
    assert GenerationSettings().model_dump(mode="json") == {
        "backend": "hf",
        "batch_size": 16,
        "family": "auto",
    }
    dumped = GenerationSettings(backend="vllm", tensor_parallel_size=2).model_dump(mode="json")
    assert dumped["tensor_parallel_size"] == 2
    stage = Stage("s", lambda ctx: None, config=lambda r: r.generation)
    one = pipeline.stage_hash(stage, Recipe(method="x", generation={"backend": "vllm"}), {})
    two = pipeline.stage_hash(
        stage, Recipe(method="x", generation={"backend": "vllm", "tensor_parallel_size": 2}), {}
    )
    assert one != two


@pytest.mark.parametrize(
    ("generation", "expected"),
    [
        ({}, {"prefix_cache_gb": 2.0}),
        ({"prefix_cache_gb": 0}, {"prefix_cache_gb": 0}),
        ({"backend": "vllm"}, {"tensor_parallel_size": 1}),
        ({"backend": "vllm", "tensor_parallel_size": 4}, {"tensor_parallel_size": 4}),
    ],
)
def test_engine_gets_the_options_of_its_backend(monkeypatch, tmp_path, generation, expected):
    seen: list[dict[str, Any]] = []

    def fake_make_engine(model: str, **kwargs: Any) -> object:
        seen.append(kwargs)
        return object()

    monkeypatch.setattr("safelrm.models.make_engine", fake_make_engine)
    recipe = Recipe(method="x", generation=generation)
    stage = Stage("s", lambda ctx: None, config=lambda r: None)
    ctx = StageContext(recipe, tmp_path, stage, Method("x", Recipe, (stage,)))
    ctx.engine("some-model", device="cpu")
    (kwargs,) = seen
    g = recipe.generation
    assert kwargs == {
        "backend": g.backend,
        "family": g.family,
        "batch_size": g.batch_size,
        "device": "cpu",
        **expected,
    }


def test_two_processes_share_one_run_folder(tmp_path):
    """A real 2-process launch (CPU, gloo; no model): both run every stage, each sees its stage
    cleared and marked running and the previous stage done; state files are written once."""
    import os
    import subprocess

    from launching import launch_2cpu

    root = Path(__file__).resolve().parents[1]
    run = tmp_path / "run"
    (run / "first").mkdir(parents=True)
    (run / "first" / "stage.json").write_text(json.dumps({"hash": "old", "status": "done"}))
    (run / "first" / "stale.txt").write_text("from an older recipe")
    cmd = [
        *launch_2cpu(),
        str(Path(__file__).parent / "pipeline_launch.py"),
        str(run),
    ]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=env, cwd=root, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    for stage in ("first", "second"):
        assert sorted(p.name for p in (run / stage).iterdir()) == [
            "rank0.txt",
            "rank1.txt",
            "stage.json",
        ]
        state = json.loads((run / stage / "stage.json").read_text())
        assert state["status"] == "done" and state["summary"] == {"stage": stage}
    for rank in (0, 1):
        report = json.loads((run / f"report{rank}.json").read_text())
        assert [v["status"] for v in report.values()] == ["ran", "ran"]
    assert (run / "recipe.json").is_file() and (run / "pipeline.json").is_file()

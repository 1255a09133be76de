"""Recipes: a method's stages chained, skipped when unchanged, resumed when interrupted.

A method is a folder ``safelrm/methods/<name>/`` whose package exposes ``METHOD`` (a
:class:`Method`: its recipe class and its ordered stages). A recipe is a YAML file validated by
that class (unknown keys and wrong types are rejected before any work starts).

Each stage writes into ``<out>/<stage>/`` and ends by writing ``stage.json`` with a content hash
of the recipe part it reads plus the hashes of the stages it reads from. A rerun skips a stage
whose hash is unchanged and finished; an unfinished stage with the same hash resumes in place
(its stores skip finished work); a stage whose hash changed starts over in an empty folder.
Code changes are not part of the hash: use ``--force STAGE`` after changing a method's code.

Under ``accelerate launch`` every process runs the stages (a training stage needs them all), but
only the main process (global rank 0) clears stage folders and writes ``recipe.json``,
``stage.json`` and ``pipeline.json``; barriers keep the others from seeing a half-cleared folder or
a stage marked done before every process finished it. A single process writes the same files.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, model_validator
from rich.console import Console

from safelrm.config import StrictModel, load_yaml, parse_config
from safelrm.errors import SafelrmError
from safelrm.io import read_json, write_json
from safelrm.locking import FolderLock

console = Console()


class GenerationSettings(StrictModel):
    backend: str = "hf"
    batch_size: int = Field(16, ge=1)
    family: str = "auto"
    tensor_parallel_size: int = Field(1, ge=1)  # vLLM: GPUs per engine (tensor parallelism)
    # hf: memory for automatic prefix caching, 0 = off (vLLM manages its own). It should hold the
    # KV of one engine chunk (4 x batch_size rows) for the reuse to pay.
    prefix_cache_gb: float = Field(2.0, ge=0.0)

    omit_at_default = ("tensor_parallel_size", "prefix_cache_gb")

    @model_validator(mode="after")
    def _check_backend_options(self) -> GenerationSettings:
        if self.tensor_parallel_size != 1 and self.backend != "vllm":
            raise ValueError(
                f"tensor_parallel_size {self.tensor_parallel_size} needs backend 'vllm' "
                f"(backend is '{self.backend}')"
            )
        return self

    def backend_options(self) -> dict[str, Any]:
        """Options for the backend beyond make_engine's own."""
        if self.backend == "vllm":
            return {"tensor_parallel_size": self.tensor_parallel_size}
        if self.backend == "hf":
            return {"prefix_cache_gb": self.prefix_cache_gb}
        return {}


class EvalSettings(StrictModel):
    suite: str = "safety-small"
    judges: list[str] = Field(default_factory=lambda: ["keyword", "classifier"])
    limit: int | None = None


class Recipe(StrictModel):
    """Fields every recipe has; a method's recipe class adds its own sections."""

    method: str
    model: str = "default"
    out: Path | None = None
    seed: int = 0
    generation: GenerationSettings = Field(default_factory=GenerationSettings)
    eval: EvalSettings = Field(default_factory=EvalSettings)


@dataclass(frozen=True)
class Stage:
    """``run(ctx)`` does the work and returns a JSON-able summary; ``reads`` names the upstream
    stages whose outputs it uses; ``config(recipe)`` returns the recipe part that affects it."""

    name: str
    run: Callable[[StageContext], dict[str, Any] | None]
    config: Callable[[Any], Any]
    reads: tuple[str, ...] = ()


@dataclass(frozen=True)
class TrainedModel:
    """A model a method's run produces: ``label`` (a column in comparisons, e.g. ``ST-D``), the
    ``stage`` that writes it, and ``path`` inside that stage's folder: a model folder, or a JSON
    file whose ``"model"`` names one (e.g. ``model.json``)."""

    label: str
    stage: str
    path: str


@dataclass(frozen=True)
class Method:
    name: str
    recipe: type[Recipe]
    stages: tuple[Stage, ...]
    describe: str = ""
    # The trained models of a run, in order; the last is the method's final model (what
    # `safelrm compare RUN_DIR` evaluates).
    models: tuple[TrainedModel, ...] = ()


@dataclass
class StageContext:
    recipe: Any
    run_dir: Path
    stage: Stage
    method: Method
    _engines: dict[str, Any] = field(default_factory=dict)

    @property
    def dir(self) -> Path:
        return self.run_dir / self.stage.name

    def path(self, stage: str, name: str) -> Path:
        """An upstream stage's output; a missing one names the file and the stage that makes it."""
        p = self.run_dir / stage / name
        if not p.exists():
            raise SafelrmError(
                f"stage '{self.stage.name}' needs {p}, which stage '{stage}' makes: "
                f"run it first (safelrm run RECIPE --only {stage})"
            )
        return p

    def summary(self, stage: str) -> dict[str, Any]:
        return read_json(self.path(stage, "stage.json")).get("summary") or {}

    def engine(self, model: str, **kwargs: Any) -> Any:
        """A loaded engine for ``model``, cached; loading another model frees the previous one."""
        from safelrm.models import make_engine

        if model not in self._engines:
            self._engines.clear()
            g = self.recipe.generation
            options = {**g.backend_options(), **kwargs}
            self._engines[model] = make_engine(
                model, backend=g.backend, family=g.family, batch_size=g.batch_size, **options
            )
        return self._engines[model]

    def log(self, message: str) -> None:
        console.print(f"[dim]{self.stage.name}:[/] {message}", highlight=False)


def stage_hash(stage: Stage, recipe: Recipe, upstream: dict[str, str]) -> str:
    payload = {
        "stage": stage.name,
        "config": _jsonable(stage.config(recipe), {"stage_hash": True}),
        "model": recipe.model,
        "seed": recipe.seed,
        "reads": {name: upstream[name] for name in stage.reads},
    }
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _jsonable(obj: Any, context: dict[str, Any] | None = None) -> Any:
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json", context=context)
    if isinstance(obj, list | tuple):
        return [_jsonable(o, context) for o in obj]
    if isinstance(obj, dict):
        return {k: _jsonable(v, context) for k, v in obj.items()}
    return obj


def get_method(name: str) -> Method:
    try:
        module = importlib.import_module(f"safelrm.methods.{name}")
    except ModuleNotFoundError as e:
        if e.name and e.name.startswith("safelrm.methods"):
            known = ", ".join(list_methods())
            raise SafelrmError(f"unknown method '{name}' (known: {known})") from None
        raise
    return module.METHOD


def list_methods() -> list[str]:
    root = Path(__file__).parent / "methods"
    return sorted(p.name for p in root.iterdir() if (p / "__init__.py").is_file())


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``key.sub=value`` overrides (values parsed as YAML), e.g. ``sft.max_steps=4``."""
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SafelrmError(f"--set '{item}': expected KEY=VALUE (e.g. sft.max_steps=4)")
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise SafelrmError(f"--set '{item}': '{part}' is not a section")
        node[parts[-1]] = yaml.safe_load(value)
    return data


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    data = apply_overrides(load_yaml(path), overrides or [])
    if "method" not in data:
        raise SafelrmError(f"{path}: key 'method': field required")
    method = get_method(str(data["method"]))
    recipe = parse_config(method.recipe, data, str(path))
    if recipe.out is None:
        recipe.out = Path("runs") / method.name
    return recipe


def run_recipe(
    recipe: Recipe, only: list[str] | None = None, force: list[str] | None = None
) -> dict[str, Any]:
    """Run the recipe's stages in order; returns ``{stage: {status, seconds, summary}}``.

    Under a multi-process launch, every process runs the stages and returns the report; only the
    main one writes the state files (see the module docstring)."""
    from safelrm.train.distributed import is_main_process

    main = is_main_process()
    method = get_method(recipe.method)
    names = [s.name for s in method.stages]
    for name in (only or []) + (force or []):
        if name not in names:
            raise SafelrmError(f"unknown stage '{name}' (stages: {', '.join(names)})")
    run_dir = Path(recipe.out or Path("runs") / method.name)
    if not main:
        return _run_stages(recipe, method, run_dir, only, force)
    with FolderLock(run_dir, "run folder"):
        return _run_stages(recipe, method, run_dir, only, force)


def _run_stages(
    recipe: Recipe,
    method: Method,
    run_dir: Path,
    only: list[str] | None,
    force: list[str] | None,
) -> dict[str, Any]:
    from safelrm.train.distributed import barrier, is_main_process

    main = is_main_process()
    run_dir.mkdir(parents=True, exist_ok=True)
    if main:
        write_json(run_dir / "recipe.json", recipe.model_dump(mode="json"))
    hashes: dict[str, str] = {}
    report: dict[str, Any] = {}
    ctx_engines: dict[str, Any] = {}
    for stage in method.stages:
        h = stage_hash(stage, recipe, hashes)
        hashes[stage.name] = h
        stage_dir = run_dir / stage.name
        state_path = stage_dir / "stage.json"
        state = read_json(state_path) if state_path.exists() else None
        if only and stage.name not in only:
            report[stage.name] = {"status": "not selected"}
            continue
        if state and state.get("hash") == h and state.get("status") == "done":
            if stage.name not in (force or []):
                console.print(f"[green]✓[/] {stage.name}: unchanged, skipped")
                report[stage.name] = {"status": "skipped", **_timing(state)}
                continue
        clear = bool(state and (state.get("hash") != h or stage.name in (force or [])))
        resumed = bool(state) and not clear
        barrier()  # every process has read the stage's state before it changes
        if main:
            if clear:
                shutil.rmtree(stage_dir)
            stage_dir.mkdir(parents=True, exist_ok=True)
            write_json(state_path, {"hash": h, "status": "running"})
        barrier()  # the other processes start once the folder is cleared and marked running
        console.rule(f"[bold]{method.name}: {stage.name}" + (" (resuming)" if resumed else ""))
        ctx = StageContext(recipe, run_dir, stage, method, ctx_engines)
        start = time.perf_counter()
        summary = stage.run(ctx) or {}
        seconds = round(time.perf_counter() - start, 2)
        barrier()  # done only once every process has finished the stage
        if main:
            write_json(
                state_path,
                {"hash": h, "status": "done", "seconds": seconds, "summary": _jsonable(summary)},
            )
        barrier()  # and no process reads the next stage's inputs before that is written
        report[stage.name] = {"status": "ran", "seconds": seconds, "summary": summary}
    if main:
        write_json(run_dir / "pipeline.json", report)
    return report


def _timing(state: dict[str, Any]) -> dict[str, Any]:
    return {"seconds": state.get("seconds"), "summary": state.get("summary")}

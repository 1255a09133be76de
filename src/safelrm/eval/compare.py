"""``safelrm compare``: several models on one suite, one report with paired tests.

Each model is evaluated by :func:`safelrm.eval.runner.run_eval` in its own folder
``OUT/<label>/``, so its generations and verdicts are cached there: a rerun with one more model
only evaluates the new one. The report (``compare.json``, ``report.md``, plots) pairs every
model's rows with the reference model's (:mod:`safelrm.eval.compare_table`).

A model is given as ``[LABEL=]MODEL`` where MODEL is ``default``, a model folder, a ``.gguf``
file, a hub id, or a ``safelrm run`` folder. A run folder (it holds ``recipe.json``) stands for
its method's final model; ``RUN:STAGE`` picks another of its models by stage or label (e.g.
``runs/safe_trigger:sft`` or ``runs/safe_trigger:ST-S``) and ``RUN:base`` the model it started
from. Each method declares its models (``Method.models`` in ``safelrm.pipeline``): Safe Trigger
``sft/model.json`` (ST-S) then ``dpo/model.json`` (ST-D, final); IPO ``train/merged``; PreSafe
``train/merged``; star1 and safepath ``train/merged``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from safelrm.errors import SafelrmError
from safelrm.io import read_json, write_json

COMPARE_FILE = "compare.json"
console = Console(stderr=True)


@dataclass(frozen=True)
class ModelSpec:
    """A model to compare: its column ``label``, what the user wrote, what is loaded."""

    label: str
    spec: str
    model: str
    source: str

    @property
    def folder(self) -> str:
        return re.sub(r"[^A-Za-z0-9._+-]+", "_", self.label).strip("._") or "model"


def _run_model(run: Path, stage: str | None, spec: str) -> tuple[str, str, str]:
    """(label, model, source) of a ``safelrm run`` folder's model (final one by default)."""
    from safelrm.pipeline import get_method

    recipe = read_json(run / "recipe.json")
    method = get_method(str(recipe.get("method")))
    if stage and stage.lower() == "base":
        return f"{method.name}-base", str(recipe.get("model", "default")), f"{run}: base model"
    if not method.models:
        raise SafelrmError(f"{spec}: method '{method.name}' declares no trained model")
    if stage:
        found = [m for m in method.models if stage.lower() in (m.stage.lower(), m.label.lower())]
        if not found:
            known = ", ".join(f"{m.stage} ({m.label})" for m in method.models)
            raise SafelrmError(
                f"{spec}: method '{method.name}' has no model '{stage}' (known: {known}, base)"
            )
        chosen = found[0]
    else:
        chosen = method.models[-1]
    state_path = run / chosen.stage / "stage.json"
    state = read_json(state_path) if state_path.is_file() else {}
    if state.get("status") != "done":
        status = state.get("status", "not started")
        raise SafelrmError(
            f"{spec}: stage '{chosen.stage}' of this {method.name} run is {status}, so its "
            f"model ({chosen.label}) does not exist yet; finish it with "
            f"`safelrm run RECIPE --out {run}`"
        )
    path = run / chosen.stage / chosen.path
    if path.suffix == ".json":
        if not path.is_file():
            raise SafelrmError(f"{spec}: {path} is missing (stage '{chosen.stage}' writes it)")
        path = Path(str(read_json(path)["model"]))
    if not path.is_dir():
        raise SafelrmError(f"{spec}: model folder {path} is missing")
    source = f"{run}: {method.name} stage '{chosen.stage}'"
    return chosen.label, str(path.resolve()), source


def resolve_spec(text: str) -> ModelSpec:
    """``[LABEL=]MODEL[:STAGE]`` -> a ModelSpec; a bad folder fails here, before any work."""
    label, sep, rest = text.partition("=")
    if not sep:
        label, rest = "", text
    if not rest.strip():
        raise SafelrmError(f"model '{text}': expected [LABEL=]MODEL (e.g. base=default)")
    rest = rest.strip()
    stage = None
    head, colon, tail = rest.rpartition(":")
    if colon and (Path(head).expanduser() / "recipe.json").is_file():
        rest, stage = head, tail
    path = Path(rest).expanduser()
    if path.is_dir() and (path / "recipe.json").is_file():
        auto, model, source = _run_model(path, stage, text)
    elif path.is_dir():
        if not (path / "config.json").is_file():
            raise SafelrmError(
                f"{rest}: neither a model folder (no config.json) nor a safelrm run folder "
                "(no recipe.json)"
            )
        name = path.resolve().name
        auto = path.resolve().parent.name if name in ("merged", "model") else name
        model, source = str(path.resolve()), "model folder"
    else:
        auto, model, source = rest, rest, "named model" if rest == "default" else "model id/file"
    return ModelSpec(label=label.strip() or auto, spec=text, model=model, source=source)


def resolve_specs(texts: list[str]) -> list[ModelSpec]:
    specs = [resolve_spec(t) for t in texts]
    seen: dict[str, str] = {}
    for s in specs:
        if s.folder in seen:
            raise SafelrmError(
                f"models '{seen[s.folder]}' and '{s.spec}' get the same label '{s.label}': "
                "name them, e.g. LABEL=MODEL"
            )
        seen[s.folder] = s.spec
    return specs


def run_compare(
    models: list[str],
    suite: str,
    judges: str | list[str],
    out_dir: str | Path,
    *,
    reference: str | None = None,
    cot: bool = True,
    limit: int | None = None,
    batch_size: int = 16,
    backend: str = "hf",
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate every model (cached per model folder) and write the paired report."""
    from safelrm.eval.runner import parse_judges, run_eval
    from safelrm.eval.suites import load_suite

    if len(models) < 2:
        raise SafelrmError("compare needs at least two models")
    specs = resolve_specs(models)
    labels = [s.label for s in specs]
    if reference is not None and reference not in labels:
        raise SafelrmError(f"--reference '{reference}' is not a model label ({', '.join(labels)})")
    judge_names = parse_judges(judges)
    loaded = load_suite(suite)
    out_dir = Path(out_dir)
    for i, s in enumerate(specs, 1):
        console.print(f"[bold]model {i}/{len(specs)}: {s.label}[/] ({s.model})", highlight=False)
        run_eval(
            s.model,
            loaded,
            judge_names,
            out_dir / s.folder,
            cot=cot,
            backend=backend,
            batch_size=batch_size,
            limit=limit,
            progress=progress,
            title=f"{s.label} on {loaded.name}",
        )
    return compare_folders(
        {s.label: out_dir / s.folder for s in specs},
        out_dir,
        reference=reference,
        sources={s.label: (s.spec, s.source) for s in specs},
        limit=limit,
    )


def compare_folders(
    folders: dict[str, Path],
    out_dir: str | Path,
    *,
    reference: str | None = None,
    sources: dict[str, tuple[str, str]] | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    """The paired report over finished eval folders (``rows.jsonl`` + ``results.json`` each, one
    suite): ``compare.json``, ``report.md`` and plots in ``out_dir``; returns the report."""
    from safelrm.eval.compare_report import write_compare_report
    from safelrm.eval.compare_table import compare_rows
    from safelrm.eval.metrics import EvalRow
    from safelrm.eval.runner import load_results
    from safelrm.io import read_jsonl

    out_dir = Path(out_dir)
    labels = list(folders)
    reference = reference or labels[0]
    if reference not in folders:
        raise SafelrmError(f"reference '{reference}' is not a model label ({', '.join(labels)})")
    results = {lab: load_results(folder) for lab, folder in folders.items()}
    suites = {r["run"]["suite"] for r in results.values()}
    cots = {r["run"]["cot"] for r in results.values()}
    if len(suites) > 1 or len(cots) > 1:
        raise SafelrmError(f"cannot pair evaluations of different suites or CoT modes: {suites}")
    rows = {
        lab: [EvalRow.model_validate(r) for r in read_jsonl(Path(folder) / "rows.jsonl")]
        for lab, folder in folders.items()
    }
    judges = list(results[reference]["judges"])
    sources = sources or {}
    report = {
        "suite": suites.pop(),
        "judges": judges,
        "reference": reference,
        "cot": cots.pop(),
        "limit": limit,
        "models": [
            {
                "label": lab,
                "spec": sources.get(lab, (str(folder), ""))[0],
                "model": results[lab]["run"]["model"],
                "source": sources.get(lab, ("", f"eval folder {folder}"))[1],
                "folder": _relative(Path(folder), out_dir),
                "n_rows": len(rows[lab]),
                "new_generations": results[lab]["run"]["new_generations"],
                "seconds": results[lab]["run"]["seconds"],
                "warnings": results[lab].get("warnings", []),
            }
            for lab, folder in folders.items()
        ],
        "entries": compare_rows(rows, judges, reference),
    }
    write_json(out_dir / COMPARE_FILE, report)
    write_compare_report(report, results, out_dir)
    return report


def _relative(folder: Path, base: Path) -> str:
    """``folder`` relative to ``base`` (``safelrm view`` reads it; the run can be moved)."""
    return os.path.relpath(folder.resolve(), base.resolve())


def read_compare(out_dir: str | Path) -> dict[str, Any]:
    path = Path(out_dir) / COMPARE_FILE
    if not path.is_file():
        raise SafelrmError(f"{path}: missing (run `safelrm compare ... --out {out_dir}` first)")
    return read_json(path)

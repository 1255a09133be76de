"""What the baseline methods (``star1``, ``safepath``) share: their training-prompt sets, the
eval stages (base and trained model on the recipe's suite) and the paired report stage.

Not a method itself (methods are folders); each baseline's package wires these into its stages.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from safelrm.config import StrictModel
from safelrm.data import PromptRecord
from safelrm.errors import SafelrmError
from safelrm.pipeline import Stage, StageContext


class PromptSet(StrictModel):
    """One prompt set: a benchmark or training-set name (or a prompt file) and a sample size."""

    set: str
    n: int | None = Field(None, ge=1, description="prompts drawn by seed; None = all")
    options: dict[str, object] = Field(default_factory=dict)


def load_sets(
    sets: list[PromptSet], seed: int, what: str, kind: str | None = None
) -> list[PromptRecord]:
    """The prompts of ``sets`` (text duplicates dropped); ``kind`` overrides their kind."""
    from safelrm.data import combine, load_prompts

    loaded = []
    for i, spec in enumerate(sets):
        try:
            records = load_prompts(spec.set, n=spec.n, seed=seed, **spec.options)
        except SafelrmError as e:
            raise SafelrmError(f"{what}[{i}]: set '{spec.set}': {e}") from None
        loaded.append([r.model_copy(update={"kind": kind}) if kind else r for r in records])
    return combine(*loaded)


def eval_prompts(ctx: StageContext) -> dict[str, list[PromptRecord]]:
    """The recipe suite's prompts, for dropping training prompts that overlap them."""
    from safelrm.eval.runner import load_suite_prompts
    from safelrm.eval.suites import load_suite

    prompts, _ = load_suite_prompts(load_suite(ctx.recipe.eval.suite), ctx.recipe.eval.limit)
    return prompts


def drop_overlaps(
    ctx: StageContext, prompts: list[PromptRecord], jaccard: float
) -> tuple[list[PromptRecord], int]:
    """``prompts`` without those equal or close (Jaccard >= ``jaccard``) to an eval prompt."""
    from safelrm.data import filter_overlapping

    kept = filter_overlapping(prompts, eval_prompts(ctx), jaccard=jaccard)
    return kept, len(prompts) - len(kept)


def reasoning_family(model: str, tokenizer: Any, family: str) -> Any:
    """The model's reasoning format, chosen as the engine chooses it (``auto``: detected)."""
    from safelrm.models import resolve_model
    from safelrm.reasoning import detect_family, get_family

    if family != "auto":
        return get_family(family)
    return get_family(
        detect_family(f"{model} {resolve_model(model)}", getattr(tokenizer, "chat_template", None))
    )


def evaluate(ctx: StageContext, model: str, title: str) -> dict[str, Any]:
    """``model`` on the recipe's suite with its judges, in the stage folder; a short summary."""
    from safelrm.eval.runner import run_eval

    r, g = ctx.recipe, ctx.recipe.generation
    results = run_eval(
        model,
        r.eval.suite,
        r.eval.judges,
        ctx.dir,
        backend=g.backend,
        batch_size=g.batch_size,
        engine=ctx.engine(model),
        limit=r.eval.limit,
        title=title,
    )
    overall = results["overall"]
    return {
        "model": model,
        "n_rows": results["n_rows"],
        "seconds": results["run"]["seconds"],
        "answer_asr": {
            j: m["answer_asr"]["pooled"]["value"]
            for group in ("harmful", "jailbreak")
            for j, m in overall.get(group, {}).items()
            if "answer_asr" in m
        },
        "warnings": results.get("warnings", []),
    }


def paired_report(ctx: StageContext, stages: dict[str, str]) -> dict[str, Any]:
    """``safelrm compare``'s report over this run's eval stages (label -> stage), first label
    the reference; returns the headline figures for the stage summary."""
    from safelrm.eval.compare import compare_folders
    from safelrm.eval.compare_table import find_entry

    folders = {label: ctx.path(stage, "results.json").parent for label, stage in stages.items()}
    report = compare_folders(folders, ctx.dir)
    out: dict[str, Any] = {"report": str(Path(ctx.dir) / "report.md")}
    for judge in report["judges"]:
        for scope, metric in (
            ("ALL harmful+jailbreak", "answer_asr"),
            ("ALL benign", "over_refusal"),
        ):
            e = find_entry(report["entries"], scope, metric, judge)
            if e:
                out[f"{judge}.{metric}"] = {
                    lab: cell["value"] for lab, cell in e["models"].items()
                } | {
                    f"diff.{lab}": [p["diff"], p["low"], p["high"], p["mcnemar_p"]]
                    for lab, p in e["paired"].items()
                }
    return out


def eval_stages(label: str, stage: str) -> tuple[Stage, Stage, Stage]:
    """``eval_base``, ``stage`` (the model of stage ``train``, ``train/merged``, as ``label``)
    and ``report`` (base as the reference)."""

    def config(r: Any) -> tuple:
        return (r.eval, r.generation)

    return (
        Stage("eval_base", lambda ctx: evaluate(ctx, ctx.recipe.model, "base"), config),
        Stage(
            stage,
            lambda ctx: evaluate(ctx, str(ctx.path("train", "merged")), label),
            config,
            reads=("train",),
        ),
        Stage(
            "report",
            lambda ctx: paired_report(ctx, {"base": "eval_base", label: stage}),
            lambda r: r.eval.judges,
            reads=("eval_base", stage),
        ),
    )


def train_summary(result: Any, **extra: Any) -> dict[str, Any]:
    """A training stage's summary: rows, steps, seconds, first/last loss, the merged model."""
    losses = result.loss_history
    return {
        "rows": result.n_rows,
        **extra,
        "steps": result.steps,
        "seconds": round(result.seconds, 1),
        "loss_first": losses[0] if losses else None,
        "loss_last": losses[-1] if losses else None,
        "merged": str(result.merged_dir),
    }

"""``safelrm eval``: evaluate a model on a suite and report (wire with
``app.command("eval")(eval_command)`` in the root CLI)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
import yaml
from rich.console import Console

from safelrm.errors import SafelrmError

err_console = Console(stderr=True)


def _parse_paths(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise SafelrmError(f"--data '{item}': expected NAME=PATH (e.g. wildjailbreak=eval.tsv)")
        out[name.strip()] = path.strip()
    return out


def _parse_judge_options(items: list[str]) -> dict[str, dict[str, Any]]:
    """``llm.url=http://host:8000/v1`` -> ``{"llm": {"url": "http://host:8000/v1"}}``; values
    are read as YAML scalars (numbers, true/false)."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        judge, dot, option = key.strip().partition(".")
        if not sep or not dot or not judge or not option:
            raise SafelrmError(
                f"--judge-option '{item}': expected JUDGE.KEY=VALUE (e.g. llm.url=http://h:8000/v1)"
            )
        try:
            parsed = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            parsed = value
        out.setdefault(judge, {})[option] = parsed
    return out


def eval_command(
    model: str = typer.Option("default", help="'default', a local folder, a .gguf, a hub id"),
    suite: str = typer.Option("safety-small", help="a shipped suite name or a suite .yaml file"),
    judge: str = typer.Option("keyword", help="comma-separated judges, e.g. keyword,classifier"),
    out: Path = typer.Option(..., help="output folder; resumed when run again"),
    baseline: Path | None = typer.Option(
        None, help="an earlier eval folder (results.json) to compare against"
    ),
    cot: str = typer.Option("on", help="chain of thought: on, off, or on,off for both"),
    limit: int | None = typer.Option(None, min=1, help="at most N prompts per suite entry"),
    batch_size: int = typer.Option(16, min=1),
    backend: str = typer.Option("hf", help="generation backend: hf | vllm"),
    data: list[str] = typer.Option(
        [], help="benchmark file by entry or benchmark name: NAME=PATH (repeatable)"
    ),
    train_prompts: Path | None = typer.Option(
        None,
        help="JSONL of training prompts for the overlap check "
        "(default: safelrm_train_prompts.jsonl in the model folder)",
    ),
    judge_option: list[str] = typer.Option(
        [], help="judge constructor option JUDGE.KEY=VALUE (repeatable), e.g. llm.backend=openai"
    ),
    quiet: bool = typer.Option(False, help="no progress bars"),
) -> None:
    """Evaluate a model on a suite: ASR, over-refusal, math accuracy, with 95% CIs."""
    try:
        _eval(
            model, suite, judge, out, baseline, cot, limit, batch_size, backend, data,
            train_prompts, quiet, judge_option,
        )  # fmt: skip
    except SafelrmError as e:
        err_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        raise typer.Exit(e.exit_code) from None


def _eval(
    model: str,
    suite: str,
    judge: str,
    out: Path,
    baseline: Path | None,
    cot: str,
    limit: int | None,
    batch_size: int,
    backend: str,
    data: list[str],
    train_prompts: Path | None,
    quiet: bool,
    judge_option: list[str],
) -> None:
    from safelrm.eval.paired import load_rows
    from safelrm.eval.report import render_table
    from safelrm.eval.runner import (
        load_results,
        parse_judges,
        read_train_prompts,
        run_eval,
        run_eval_cot,
    )

    cots = [c.strip() for c in cot.split(",") if c.strip()]
    judges = parse_judges(judge)
    base = load_results(baseline) if baseline else None
    train = read_train_prompts(train_prompts) if train_prompts else None
    options = dict(
        limit=limit,
        batch_size=batch_size,
        backend=backend,
        train_prompts=train,
        progress=not quiet,
        baseline=base,
        baseline_rows=load_rows(baseline) if baseline else None,
        paths=_parse_paths(data),
        judge_options=_parse_judge_options(judge_option),
    )
    if len(cots) == 1 and cots[0] in ("on", "off"):
        by_label = {"model": run_eval(model, suite, judges, out, cot=cots[0] == "on", **options)}
        folders = {"model": out}
    else:
        by_label = run_eval_cot(model, suite, judges, out, cots=cots, **options)
        folders = {label: out / label for label in by_label}
    console = Console()
    for label, results in by_label.items():
        run = results["run"]
        title = f"{model} — {run['suite']} (CoT {'on' if run['cot'] else 'off'})"
        console.print(render_table(results, baseline=base, title=title))
        for w in results.get("warnings", []):
            console.print(f"[bold red]WARNING:[/] {w}", highlight=False)
        rate = f", {run['tokens_per_second']} tok/s" if run["tokens_per_second"] else ""
        console.print(
            f"{label}: {run['new_generations']} new generations{rate}, {run['seconds']} s; "
            f"report: {folders[label] / 'report.md'}",
            highlight=False,
        )
    if len(by_label) > 1:
        console.print(
            render_table(by_label[list(by_label)[-1]], models=by_label, title="CoT on vs off")
        )
        console.print(f"comparison: {out / 'report.md'}", highlight=False)


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.command("eval")(eval_command)

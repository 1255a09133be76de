"""``safelrm compare`` and ``safelrm view`` (wired in the root CLI)."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console

from safelrm.errors import SafelrmError

err_console = Console(stderr=True)


def compare_command(
    models: list[str] = typer.Argument(
        ...,
        help="[LABEL=]MODEL: 'default', a model folder, a hub id, or a `safelrm run` folder "
        "(its final model; RUN:STAGE for another, RUN:base for its base)",
    ),
    suite: str = typer.Option("safety-small", help="a shipped suite name or a suite .yaml file"),
    judge: str = typer.Option("keyword", help="comma-separated judges, e.g. keyword,classifier"),
    out: Path = typer.Option(..., help="output folder; one subfolder per model, resumed"),
    reference: str | None = typer.Option(None, help="label of the reference (default: first)"),
    cot: str = typer.Option("on", help="chain of thought: on or off"),
    limit: int | None = typer.Option(None, min=1, help="at most N prompts per suite entry"),
    batch_size: int = typer.Option(16, min=1),
    backend: str = typer.Option("hf", help="generation backend: hf | vllm"),
    quiet: bool = typer.Option(False, help="no progress bars"),
) -> None:
    """Evaluate several models on one suite; paired differences to a reference model."""
    from safelrm.eval.compare import run_compare
    from safelrm.eval.compare_report import render_table

    try:
        if cot not in ("on", "off"):
            raise SafelrmError(f"--cot must be on or off (got '{cot}')")
        start = time.perf_counter()
        report = run_compare(
            models,
            suite,
            judge,
            out,
            reference=reference,
            cot=cot == "on",
            limit=limit,
            batch_size=batch_size,
            backend=backend,
            progress=not quiet,
        )
    except SafelrmError as e:
        err_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        raise typer.Exit(e.exit_code) from None
    console = Console()
    for j in report["judges"]:
        console.print(render_table(report, j))
    console.print(
        f"{len(report['models'])} models in {time.perf_counter() - start:.0f} s; "
        f"report: {out / 'report.md'}; browse: safelrm view {out}",
        highlight=False,
    )


def view_command(
    folder: Path = typer.Argument(..., help="an eval or compare output folder"),
    out: Path | None = typer.Option(None, help="HTML file to write (default: FOLDER/view.html)"),
    title: str | None = typer.Option(None, help="page title"),
) -> None:
    """Write one static HTML page to browse the samples (no server, no network)."""
    from safelrm.eval.viewer import write_view

    try:
        path = write_view(folder, out, title)
    except SafelrmError as e:
        err_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        raise typer.Exit(e.exit_code) from None
    size = path.stat().st_size / 1e6
    Console().print(f"wrote {path} ({size:.1f} MB); open it in a browser", highlight=False)

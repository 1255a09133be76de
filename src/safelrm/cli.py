"""The ``safelrm`` command. Each pipeline area owns a sub-app; heavy imports stay in commands."""

from __future__ import annotations

import os
import sys
import time
from enum import StrEnum
from pathlib import Path

import typer
from rich.console import Console

from safelrm.errors import SafelrmError

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
err_console = Console(stderr=True)
console = Console()


@app.callback()
def root() -> None:
    """safelrm: make reasoning models safer without hand-labelled data, and measure it."""


class Cot(StrEnum):
    on = "on"
    off = "off"


@app.command()
def generate(
    prompts: Path = typer.Option(..., help="JSONL (prompt|messages), CSV (see --column) or .txt"),
    out: Path = typer.Option(..., help="run folder; records.jsonl there is resumed"),
    model: str = typer.Option("default", help="'default', a local folder, a .gguf file, a hub id"),
    column: str | None = typer.Option(None, help="CSV column with the prompt (prompt, text)"),
    backend: str = typer.Option("hf", help="generation backend: hf | vllm"),
    family: str = typer.Option(
        "auto", help="reasoning family: auto | generic | r1-distill | qwen3"
    ),
    cot: Cot = typer.Option(Cot.on, help="chain of thought on or off"),
    n: int = typer.Option(1, help="samples per prompt"),
    temperature: float = typer.Option(0.0),
    top_p: float = typer.Option(1.0),
    max_new_tokens: int = typer.Option(256, help="answer budget"),
    max_reasoning_tokens: int = typer.Option(256, help="reasoning budget (budget forcing)"),
    seed: int = typer.Option(0),
    batch_size: int = typer.Option(16),
    limit: int | None = typer.Option(None, help="only the first N prompts"),
    show: int = typer.Option(2, help="print reasoning and answer of the first N records"),
    shards: int = typer.Option(1, help="split the prompts into N shards (one per process/GPU)"),
    shard_id: int | None = typer.Option(None, help="run only this shard (0..N-1)"),
    merge: bool = typer.Option(False, help="merge finished shards into records.jsonl"),
) -> None:
    """Generate reasoning and answers for a prompts file (resumable, optionally sharded).

    Under `accelerate launch` (or torchrun) with several processes, each process takes one shard
    on its own device and the main process merges when all are done."""
    from safelrm.data.prompts import load_prompt_file
    from safelrm.models import GenerationRequest, SamplingParams, make_engine
    from safelrm.models.engine import record_key
    from safelrm.models.shards import launched_shard, merge_shards, select_shard, shard_path
    from safelrm.store import RecordStore

    records = load_prompt_file(prompts, column=column)[:limit]
    sampling = SamplingParams(
        temperature=temperature,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
        max_reasoning_tokens=max_reasoning_tokens,
        n=n,
        seed=seed,
    )
    fingerprint = {"model": model, "backend": backend, "family": family, "cot": cot.value}
    fingerprint |= sampling.model_dump()
    requests = [
        GenerationRequest(
            id=r.id, messages=r.chat(), prefix=r.prefix or "", cot=cot == Cot.on, sampling=sampling
        )
        for r in records
    ]
    expected = [record_key(r.id, s) for r in requests for s in range(n)]
    launched = launched_shard()
    if launched:
        shards, shard_id = launched
    if merge:
        path = merge_shards(out, shards, expected)
        console.print(f"{len(expected)} records merged from {shards} shards into {path}")
        return
    store_path = out / "records.jsonl"
    if shards > 1 or shard_id is not None:
        if shard_id is None:
            raise SafelrmError("--shards N needs --shard-id I (or run under accelerate launch)")
        requests = select_shard(requests, [r.id for r in requests], shards, shard_id)
        store_path = shard_path(out, shards, shard_id)
    store = RecordStore(store_path, fingerprint | {"shards": shards})
    device = None
    if launched:
        import torch

        if torch.cuda.is_available():
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', shard_id))}"
    placement = {"device": device} if device else {}
    engine = make_engine(model, backend=backend, family=family, batch_size=batch_size, **placement)
    start = time.perf_counter()
    results = engine.generate(requests, store=store)
    seconds = time.perf_counter() - start
    if launched:
        import torch
        from accelerate import PartialState

        state = PartialState(cpu=not torch.cuda.is_available())
        state.wait_for_everyone()
        if state.is_main_process:
            merge_shards(out, shards, expected)
    for rec in results[:show]:
        console.rule(f"[bold]{rec.key}")
        console.print(f"[bold]prompt:[/] {rec.messages[-1]['content']}", highlight=False)
        console.print(f"[bold cyan]reasoning:[/] {rec.reasoning}", highlight=False)
        console.print(f"[bold green]answer:[/] {rec.answer}", highlight=False)
    tokens = sum(r.n_reasoning_tokens + r.n_answer_tokens for r in results)
    console.print(
        f"{len(results)} records in {store_path} ({tokens} tokens, {seconds:.1f} s this run)"
    )


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:  # pragma: no cover - transformers is a hard dependency
        pass
    try:
        app()
    except SafelrmError as e:
        err_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        sys.exit(e.exit_code)


@app.command()
def run(
    recipe: Path = typer.Argument(..., help="a recipe YAML, e.g. recipes/safe_trigger.yaml"),
    out: Path | None = typer.Option(None, help="run folder (default: the recipe's `out`)"),
    model: str | None = typer.Option(None, help="override the recipe's model"),
    only: str | None = typer.Option(None, help="comma-separated stages to run"),
    force: str | None = typer.Option(None, help="comma-separated stages to rerun"),
    set_: list[str] = typer.Option([], "--set", help="override a recipe key: sft.max_steps=4"),
) -> None:
    """Run a method's recipe: every stage in order, skipping unchanged ones, resuming the rest."""
    from safelrm.pipeline import load_recipe, run_recipe

    overrides = list(set_)
    if out is not None:
        overrides.append(f"out={out}")
    if model is not None:
        overrides.append(f"model={model}")
    parsed = load_recipe(recipe, overrides)
    split = lambda s: [x.strip() for x in s.split(",") if x.strip()] if s else None  # noqa: E731
    report = run_recipe(parsed, only=split(only), force=split(force))
    total = sum(v.get("seconds") or 0 for v in report.values() if v.get("status") == "ran")
    console.print(f"done: {parsed.out} ({total:.0f} s of stage work this run)")


def _register_subapps() -> None:
    import importlib
    import importlib.util

    from safelrm.data.cli import app as data_app
    from safelrm.eval.cli import eval_command
    from safelrm.eval.compare_cli import compare_command, view_command
    from safelrm.judges.cli import app as judge_app
    from safelrm.pipeline import list_methods
    from safelrm.train.cli import app as train_app

    app.command("eval")(eval_command)
    app.command("compare")(compare_command)
    app.command("view")(view_command)
    app.add_typer(data_app, name="data", help="Benchmarks, training sets, attacks, overlap.")
    app.add_typer(judge_app, name="judge", help="Judges: train, validate, run on records.")
    app.add_typer(train_app, name="train", help="SFT and DPO on rows (TRL + PEFT).")
    # A method folder with a cli.py exposing `app` becomes `safelrm <method> ...`.
    for method in list_methods():
        name = f"safelrm.methods.{method}.cli"
        if importlib.util.find_spec(name) is not None:
            app.add_typer(importlib.import_module(name).app, name=method)


_register_subapps()


if __name__ == "__main__":
    main()

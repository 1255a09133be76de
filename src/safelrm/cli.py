"""The ``safelrm`` command. Each pipeline area owns a sub-app; heavy imports stay in commands."""

from __future__ import annotations

import os
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from safelrm.errors import SafelrmError

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
err_console = Console(stderr=True)
console = Console()


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        console.print(f"safelrm {version('safelrm')}")
        raise typer.Exit()


def set_threads(threads: int | None) -> int:
    """CPU threads for torch: ``threads``, else $SAFELRM_THREADS, else $OMP_NUM_THREADS, else
    the cores this process may run on (``os.sched_getaffinity``, which honours taskset and
    container CPU sets, unlike torch's own default of every physical core)."""
    if threads is None:
        env = os.environ.get("SAFELRM_THREADS") or os.environ.get("OMP_NUM_THREADS")
        threads = int(env) if env and env.isdigit() and int(env) > 0 else None
    if threads is None:
        affinity = getattr(os, "sched_getaffinity", None)
        threads = len(affinity(0)) if affinity else os.cpu_count() or 1
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    return threads


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", is_eager=True, callback=_version, help="print the version and exit"
    ),
    threads: int | None = typer.Option(
        None,
        "--threads",
        min=1,
        help="CPU threads for torch (default: $SAFELRM_THREADS, $OMP_NUM_THREADS, else the "
        "cores available to this process)",
    ),
) -> None:
    """safelrm: make reasoning models safer without hand-labelled data, and measure it."""
    set_threads(threads)


class Cot(StrEnum):
    on = "on"
    off = "off"


@app.command()
def generate(
    prompts: Path = typer.Option(..., help="JSONL (prompt|messages), CSV (see --column) or .txt"),
    out: Path = typer.Option(..., help="run folder; records.jsonl there is resumed"),
    model: str = typer.Option("default", help="'default', a local folder, a .gguf file, a hub id"),
    column: str | None = typer.Option(None, help="CSV column with the prompt (prompt, text)"),
    backend: str = typer.Option("hf", help="generation backend: hf | vllm | openai"),
    base_url: str | None = typer.Option(
        None, help="openai backend: the server's URL, e.g. http://127.0.0.1:8000/v1"
    ),
    api_key_env: str = typer.Option(
        "OPENAI_API_KEY", help="openai backend: environment variable holding the API key"
    ),
    tokenizer: str | None = typer.Option(
        None, help="openai backend: local tokenizer of the served model (default: --model)"
    ),
    family: str = typer.Option(
        "auto", help="reasoning family: auto | generic | r1-distill | qwen3"
    ),
    cot: Cot = typer.Option(Cot.on, help="chain of thought on or off"),
    n: int = typer.Option(1, min=1, help="samples per prompt"),
    temperature: float = typer.Option(0.0, min=0.0, help="0 = greedy"),
    top_p: float = typer.Option(1.0, min=0.0, max=1.0, help="nucleus mass, in (0, 1]"),
    max_new_tokens: int = typer.Option(256, min=1, help="answer budget"),
    max_reasoning_tokens: int = typer.Option(256, min=1, help="reasoning budget (budget forcing)"),
    seed: int = typer.Option(0),
    batch_size: int = typer.Option(16, min=1),
    limit: int | None = typer.Option(None, min=1, help="only the first N prompts"),
    show: int = typer.Option(2, min=0, help="print reasoning and answer of the first N records"),
    shards: int = typer.Option(
        1, min=1, help="split the prompts into N shards (one per process/GPU)"
    ),
    shard_id: int | None = typer.Option(None, min=0, help="run only this shard (0..N-1)"),
    merge: bool = typer.Option(False, help="merge finished shards into records.jsonl"),
    truncate_prompts: bool = typer.Option(
        False,
        help="cut prompts too long for the model's context to fit (default: such a prompt "
        "becomes an error record)",
    ),
) -> None:
    """Generate reasoning and answers for a prompts file (resumable, optionally sharded).

    Under `accelerate launch` (or torchrun) with several processes, each process takes one shard
    on its own device and the main process merges when all are done."""
    from safelrm.data.prompts import load_prompt_file
    from safelrm.locking import FolderLock
    from safelrm.models import GenerationRequest, SamplingParams
    from safelrm.models.engine import record_key
    from safelrm.models.shards import launched_shard, merge_shards, select_shard, shard_path

    if top_p == 0.0:
        raise SafelrmError("--top-p must be in (0, 1], not 0")
    served: dict[str, Any] = {}
    if backend == "openai":
        served = {"base_url": base_url, "api_key_env": api_key_env, "tokenizer": tokenizer}
    elif base_url or tokenizer:
        raise SafelrmError("--base-url and --tokenizer are options of --backend openai")
    if out.exists() and not out.is_dir():
        raise SafelrmError(f"--out {out}: exists and is not a folder")
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
        with FolderLock(out):
            path = merge_shards(out, shards, expected)
        console.print(f"{len(expected)} records merged from {shards} shards into {path}")
        return
    store_path = out / "records.jsonl"
    lock = FolderLock(out)
    if shards > 1 or shard_id is not None:
        if shard_id is None:
            raise SafelrmError("--shards N needs --shard-id I (or run under accelerate launch)")
        requests = select_shard(requests, [r.id for r in requests], shards, shard_id)
        store_path = shard_path(out, shards, shard_id)
        lock = FolderLock(out, f"shard {shard_id} of {shards}", f"shard-{shard_id}-of-{shards}")
    with lock:
        _generate_locked(
            requests, store_path, fingerprint | {"shards": shards}, model, backend, family,
            batch_size, truncate_prompts, served, launched, shards, shard_id, out, expected, show,
        )  # fmt: skip


def _generate_locked(
    requests: list,
    store_path: Path,
    fingerprint: dict,
    model: str,
    backend: str,
    family: str,
    batch_size: int,
    truncate_prompts: bool,
    served: dict[str, Any],
    launched: tuple[int, int] | None,
    shards: int,
    shard_id: int | None,
    out: Path,
    expected: list[str],
    show: int,
) -> None:
    from safelrm.models import make_engine
    from safelrm.models.shards import merge_shards
    from safelrm.store import RecordStore

    store = RecordStore(store_path, fingerprint)
    device = None
    if launched:
        import torch

        if torch.cuda.is_available():
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', shard_id))}"
    placement: dict[str, Any] = {"device": device} if device else {}
    if served:
        placement = served
    engine = make_engine(
        model,
        backend=backend,
        family=family,
        batch_size=batch_size,
        truncate_prompts=truncate_prompts,
        **placement,
    )
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
    for rec in [r for r in results if not r.error][:show]:
        console.rule(f"[bold]{rec.key}")
        console.print(f"[bold]prompt:[/] {rec.messages[-1]['content']}", highlight=False)
        console.print(f"[bold cyan]reasoning:[/] {rec.reasoning}", highlight=False)
        console.print(f"[bold green]answer:[/] {rec.answer}", highlight=False)
    tokens = sum(r.n_reasoning_tokens + r.n_answer_tokens for r in results)
    errors = [r for r in results if r.error]
    truncated = sum(1 for r in results if r.truncated_tokens)
    notes = f", {truncated} truncated" if truncated else ""
    console.print(
        f"{len(results)} records in {store_path} ({len(errors)} errors{notes}; "
        f"{tokens} tokens, {seconds:.1f} s this run)",
        soft_wrap=True,
    )
    for r in errors[:5]:
        err_console.print(
            f"[yellow]row {r.key} failed:[/] {r.error}", highlight=False, soft_wrap=True
        )


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    # read by transformers when it is first imported (importing it here would cost seconds on
    # commands that fail or finish before any model is touched); HF_HUB_DISABLE_PROGRESS_BARS
    # above also turns off transformers' own progress bars
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if "transformers" in sys.modules:  # already imported (in-process callers): same effect
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    try:
        code = app(standalone_mode=False)
    except SafelrmError as e:
        _error(str(e), e.exit_code)
    except typer.TyperException as e:  # a bad option value or usage: one line, like ours
        if type(e).__name__ == "NoArgsIsHelpError":
            e.show()  # type: ignore[attr-defined]
            sys.exit(2)
        _error(e.format_message(), e.exit_code)
    except typer.Abort:
        _error("aborted", 1)
    sys.exit(code if isinstance(code, int) else 0)


def _error(message: str, code: int) -> None:
    err_console.print(
        f"[bold red]error:[/] {' '.join(message.split())}", highlight=False, soft_wrap=True
    )
    sys.exit(code)


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
    from safelrm.recipe_check import check_recipe

    overrides = list(set_)
    if out is not None:
        overrides.append(f"out={out}")
    if model is not None:
        overrides.append(f"model={model}")
    parsed = load_recipe(recipe, overrides)
    check_recipe(parsed)  # every name and path, before any stage writes anything
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

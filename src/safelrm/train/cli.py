"""``safelrm train``: SFT / DPO on JSONL rows (formats: train/README.md), loss-mask view."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
import yaml
from rich.console import Console
from rich.text import Text

from safelrm.errors import SafelrmError

app = typer.Typer(no_args_is_help=True, help="Fine-tune (SFT) and preference-train (DPO) models.")
console = Console()

MODEL = typer.Option("default", "--model", "-m", help="Model folder, .gguf file or 'default'.")
DATA = typer.Option(..., "--data", "-d", help="JSONL rows (see safelrm/train/README.md).")
OUT = typer.Option(..., "--out", "-o", help="Output folder (adapter/, merged/, train_log.json).")
CONFIG = typer.Option(None, "--config", "-c", help="YAML file of settings.")
SET = typer.Option(None, "--set", help="Setting override KEY=VALUE, dotted for nesting (lora.r=8).")


def settings_from(cls: type, config: Path | None, overrides: list[str] | None) -> Any:
    """Settings = YAML file (optional) + ``KEY=VALUE`` overrides, validated strictly."""
    from safelrm.config import load_yaml, parse_config

    data: dict[str, Any] = load_yaml(config) if config else {}
    for pair in overrides or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise SafelrmError(f"--set '{pair}': expected KEY=VALUE")
        *parents, leaf = key.strip().split(".")
        node = data
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise SafelrmError(f"--set '{pair}': '{p}' is not a section")
        node[leaf] = yaml.safe_load(value) if value else ""
    return parse_config(cls, data, str(config) if config else "--set")


def _run(kind: str, model: str, data: Path, out: Path, config: Path | None, sets: Any) -> None:
    from safelrm.io import read_jsonl
    from safelrm.models import load_model
    from safelrm.train import DPOSettings, SFTSettings, train_dpo, train_sft
    from safelrm.train.formats import render_dpo_rows, render_sft_rows

    settings = settings_from(SFTSettings if kind == "sft" else DPOSettings, config, sets)
    rows = read_jsonl(data)
    loaded = load_model(model)
    render = render_sft_rows if kind == "sft" else render_dpo_rows
    rows = render(loaded.tokenizer, rows, source=str(data))
    train = train_sft if kind == "sft" else train_dpo
    result = train(loaded.model, loaded.tokenizer, rows, settings, out)
    losses = result.loss_history
    console.print(
        f"{kind}: {result.steps} steps on {result.n_rows} rows in {result.seconds:.1f} s; "
        f"loss {losses[0]:.4f} -> {losses[-1]:.4f}"
        if losses
        else f"{kind}: no steps logged"
    )
    console.print(f"merged model: {result.merged_dir}")


@app.command()
def sft(
    data: Path = DATA,
    out: Path = OUT,
    model: str = MODEL,
    config: Path = CONFIG,
    sets: list[str] = SET,
) -> None:
    """Supervised fine-tuning on {"prompt", "completion"} rows."""
    _run("sft", model, data, out, config, sets)


@app.command()
def dpo(
    data: Path = DATA,
    out: Path = OUT,
    model: str = MODEL,
    config: Path = CONFIG,
    sets: list[str] = SET,
) -> None:
    """Preference training on {"prompt", "chosen", "rejected"} rows."""
    _run("dpo", model, data, out, config, sets)


@app.command()
def mask(
    data: Path = DATA,
    model: str = MODEL,
    max_length: int = typer.Option(1024, help="Tokens per row, as in training."),
    rows: int = typer.Option(2, "--rows", "-n", help="How many rows to show."),
) -> None:
    """Show which tokens of SFT rows are in the loss (bold green) as the trainer builds them."""
    from safelrm.io import read_jsonl
    from safelrm.models import load_tokenizer
    from safelrm.train import completion_mask_report, render_sft_rows

    tokenizer = load_tokenizer(model)
    text_rows = render_sft_rows(tokenizer, read_jsonl(data)[:rows], source=str(data))
    for r in completion_mask_report(tokenizer, text_rows, max_length):
        line = Text(f"row {r.index + 1}: {sum(r.in_loss)}/{len(r.in_loss)} tokens in loss\n")
        line.append(r.prompt_text, style="dim")
        line.append(r.loss_text, style="bold green")
        console.print(line)

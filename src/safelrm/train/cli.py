"""``safelrm train``: SFT / DPO on a file, dataset folder or hub dataset (formats: train/README.md),
settings in TRL's names (a TRL script YAML is read as is), and the loss-mask view."""

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

MODEL = typer.Option(
    None, "--model", "-m", help="Model folder, .gguf file, hub id or 'default' (the default)."
)
DATASET = typer.Option(
    None,
    "--dataset",
    "--data",
    "-d",
    help="JSONL, parquet or CSV file, dataset folder, or hub dataset id (rows: train/README.md).",
)
SPLIT = typer.Option(None, "--split", help="Dataset split (default: train).")
DATASET_CONFIG = typer.Option(None, "--dataset-config", help="Hub dataset configuration name.")
OUT = typer.Option(None, "--out", "-o", help="Output folder (adapter/, merged/, train_log.json).")
CONFIG = typer.Option(
    None, "--config", "-c", help="YAML of settings in TRL's names (a TRL `trl sft` YAML works)."
)
SET = typer.Option(None, "--set", help="Setting override KEY=VALUE, dotted for nesting (lora.r=8).")

# Keys of a TRL script YAML (ScriptArguments, ModelConfig, output_dir) that name what to train
# rather than how: they fill the command's options when those are not given.
SCRIPT_KEYS = {
    "model_name_or_path": "model",
    "dataset_name": "dataset",
    "dataset_config": "dataset_config",
    "dataset_train_split": "split",
    "output_dir": "out",
}


def read_settings(
    cls: type, config: Path | None, overrides: list[str] | None
) -> tuple[Any, dict[str, Any]]:
    """Settings = YAML file (optional) + ``KEY=VALUE`` overrides, validated strictly; and the
    script keys of the YAML (``SCRIPT_KEYS``) by option name."""
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
    script = {opt: data.pop(key) for key, opt in SCRIPT_KEYS.items() if key in data}
    return parse_config(cls, data, str(config) if config else "--set"), script


def settings_from(cls: type, config: Path | None, overrides: list[str] | None) -> Any:
    return read_settings(cls, config, overrides)[0]


def _run(kind: str, options: dict[str, Any], config: Path | None, sets: Any) -> None:
    from safelrm.models import load_tokenizer
    from safelrm.train import DPOSettings, SFTSettings, train_dpo, train_sft
    from safelrm.train.dataset import load_rows
    from safelrm.train.formats import render_dpo_rows, render_sft_rows

    settings, script = read_settings(SFTSettings if kind == "sft" else DPOSettings, config, sets)
    given = {k: v for k, v in options.items() if v is not None}
    opts = {"model": "default", "split": "train", **script, **given}
    for required, flag in (("dataset", "--dataset"), ("out", "--out")):
        if not opts.get(required):
            raise SafelrmError(f"{flag}: required (or dataset_name / output_dir in --config)")
    dataset = str(opts["dataset"])
    rows = load_rows(dataset, split=opts["split"], name=opts.get("dataset_config"))
    tok_options = {k: v for k, v in settings.load_options().items() if k != "attn_implementation"}
    tokenizer = load_tokenizer(str(opts["model"]), **tok_options)
    render = render_sft_rows if kind == "sft" else render_dpo_rows
    rows = render(tokenizer, rows, source=dataset)
    train = train_sft if kind == "sft" else train_dpo
    result = train(str(opts["model"]), tokenizer, rows, settings, Path(opts["out"]))
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
    dataset: str = DATASET,
    out: Path = OUT,
    model: str = MODEL,
    config: Path = CONFIG,
    sets: list[str] = SET,
    split: str = SPLIT,
    dataset_config: str = DATASET_CONFIG,
) -> None:
    """Supervised fine-tuning on prompt/completion or messages rows."""
    options = dict(
        dataset=dataset, out=out, model=model, split=split, dataset_config=dataset_config
    )
    _run("sft", options, config, sets)


@app.command()
def dpo(
    dataset: str = DATASET,
    out: Path = OUT,
    model: str = MODEL,
    config: Path = CONFIG,
    sets: list[str] = SET,
    split: str = SPLIT,
    dataset_config: str = DATASET_CONFIG,
) -> None:
    """Preference training on prompt/chosen/rejected rows (or implicit-prompt conversations)."""
    options = dict(
        dataset=dataset, out=out, model=model, split=split, dataset_config=dataset_config
    )
    _run("dpo", options, config, sets)


@app.command()
def mask(
    data: Path = typer.Option(..., "--data", "-d", help="JSONL rows (see train/README.md)."),
    model: str = typer.Option("default", "--model", "-m", help="Model folder, .gguf or name."),
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

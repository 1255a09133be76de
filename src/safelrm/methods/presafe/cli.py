"""``safelrm presafe ...``: PreSafe tools outside the recipe."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="PreSafe tools.", no_args_is_help=True)


@app.callback()
def main() -> None:
    """PreSafe tools (the method itself runs with `safelrm run recipes/presafe.yaml`)."""


@app.command()
def norms(
    adapter: Annotated[
        Path,
        typer.Argument(help="LoRA adapter folder, or a PreSafe run folder (uses train/adapter)"),
    ],
    out: Annotated[
        Path | None, typer.Option(help="output folder (default: beside the adapter)")
    ] = None,
    metric: Annotated[str, typer.Option(help="rms (size-normalised, default) or fro")] = "rms",
) -> None:
    """Per-layer, per-module norms of the LoRA updates (||B@A|| x scale), as JSON and PNGs."""
    from rich.console import Console
    from rich.table import Table

    from safelrm.errors import SafelrmError
    from safelrm.methods.presafe.norms import write_norms

    if metric not in ("rms", "fro"):
        raise SafelrmError(f"--metric: '{metric}' is not rms or fro")
    if (adapter / "train" / "adapter").is_dir():
        adapter = adapter / "train" / "adapter"
    out = out or adapter.parent / "norms"
    result = write_norms(adapter, out, metric)  # type: ignore[arg-type]
    summary = result["summary"]
    table = Table(title=f"LoRA update norms ({metric}) - {adapter}")
    table.add_column("module")
    table.add_column("mean over layers", justify="right")
    table.add_column("deeper / shallower half", justify="right")
    for mod in summary["ranking"]:
        v = summary["modules"][mod]
        ratio = v["deep_over_shallow"]
        table.add_row(mod, f"{v['mean']:.4g}", "n/a" if ratio is None else f"{ratio:.2f}")
    console = Console()
    console.print(table)
    for p in result["plots"]:
        console.print(f"wrote {p}")
    console.print(f"wrote {out / 'lora_norms.json'}")

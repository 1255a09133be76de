"""``safelrm data``: list, show and export prompt sets; check train/eval overlap."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
import yaml
from rich.console import Console
from rich.table import Table

from safelrm.errors import SafelrmError

app = typer.Typer(no_args_is_help=True, help="Benchmarks, training sets, overlap, attacks.")
console = Console()


def _options(pairs: list[str] | None) -> dict[str, Any]:
    """``KEY=VALUE`` pairs, values parsed as YAML scalars (true, 3, a,b stays a string)."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise SafelrmError(f"option '{pair}': expected KEY=VALUE")
        out[key.strip()] = yaml.safe_load(value) if value else ""
    return out


def _load(spec: str, n: int | None, seed: int, options: dict[str, Any]) -> list:
    from safelrm.data.train_sets import load_prompts

    return load_prompts(spec, n=n, seed=seed, **options)


def _label(spec: str) -> str:
    """A set's name, or a file's name (not its whole path) for tables."""
    return Path(spec).name if Path(spec).is_file() else spec


@app.command("list")
def list_command() -> None:
    """List the benchmarks and training sets, with their default files."""
    from safelrm.data.benchmarks import BENCHMARKS
    from safelrm.data.paths import data_root
    from safelrm.data.train_sets import TRAIN_SETS

    root = data_root(required=False)
    for registry in (BENCHMARKS, TRAIN_SETS):
        table = Table(title=f"{registry.what}s", title_justify="left")
        for col in ("name", "default file", "present", "description"):
            table.add_column(col)
        for name in registry.names():
            ds = registry.get(name)
            base = (root / registry.subdir) if root and registry.subdir else root
            present = "yes" if base and (base / ds.default).exists() else "no"
            table.add_row(name, ds.default, present, ds.description)
        console.print(table)
    from safelrm.attacks import ATTACKS

    table = Table(title="attacks", title_justify="left")
    table.add_column("name")
    table.add_column("description")
    for name in sorted(ATTACKS):
        table.add_row(name, ATTACKS[name].description)
    console.print(table)


@app.command("show")
def show_command(
    name: str = typer.Argument(..., help="benchmark or training-set name, or a prompt file"),
    n: int = typer.Option(5, "--n", help="how many records"),
    seed: int = typer.Option(0, help="subsampling seed"),
    attack: str | None = typer.Option(None, help="wrap the records with this attack"),
    option: list[str] | None = typer.Option(None, "--option", "-o", help="loader KEY=VALUE"),
    width: int = typer.Option(300, help="characters of text shown per record"),
) -> None:
    """Print a few records of a prompt set."""
    records = _load(name, n, seed, _options(option))
    if attack:
        from safelrm.attacks import apply_attack

        records = apply_attack(attack, records, seed=seed)
    for r in records:
        head = f"[bold]{r.id}[/]  kind={r.kind}  category={r.category}"
        if r.reference is not None:
            head += f"  reference={r.reference}"
        console.print(head, highlight=False)
        text = r.text if len(r.text) <= width else r.text[:width] + " ..."
        if r.messages:
            text = f"({len(r.messages)} messages) ... {text}"
        console.print(text, markup=False, highlight=False)
        if r.prefix:
            console.print(f"prefix: {r.prefix!r}", markup=False, highlight=False)
        console.print()


@app.command("export")
def export_command(
    name: str = typer.Argument(..., help="benchmark or training-set name, or a prompt file"),
    out: Path = typer.Option(..., "--out", help="JSONL file of PromptRecords"),
    n: int | None = typer.Option(None, "--n", help="subsample this many"),
    seed: int = typer.Option(0, help="subsampling and attack seed"),
    attack: str | None = typer.Option(None, help="wrap the records with this attack"),
    option: list[str] | None = typer.Option(None, "--option", "-o", help="loader KEY=VALUE"),
) -> None:
    """Write a prompt set (optionally attacked) as PromptRecord JSONL."""
    from safelrm.io import write_jsonl

    records = _load(name, n, seed, _options(option))
    if attack:
        from safelrm.attacks import apply_attack

        records = apply_attack(attack, records, seed=seed)
    write_jsonl(out, (r.model_dump(exclude_none=True) for r in records))
    console.print(f"wrote {len(records)} records to {out}", highlight=False)


@app.command("overlap")
def overlap_command(
    train: str = typer.Argument(..., help="training set name, benchmark name or prompt file"),
    evals: list[str] = typer.Argument(..., help="evaluation set names or prompt files"),
    jaccard: float = typer.Option(0.8, help="near-duplicate token Jaccard threshold"),
    ngram: int = typer.Option(1, help="1 = word tokens, n > 1 = word n-grams"),
    option: list[str] | None = typer.Option(
        None, "--option", "-o", help="training loader KEY=VALUE (e.g. include_strongreject=true)"
    ),
    out: Path | None = typer.Option(None, "--out", help="write the full report as JSON"),
    show: int = typer.Option(10, help="matching pairs to print"),
) -> None:
    """Exact and near-duplicate prompts between a training set and evaluation sets."""
    from safelrm.data.overlap import find_overlaps
    from safelrm.io import write_json

    train_records = _load(train, None, 0, _options(option))
    eval_records = {_label(name): _load(name, None, 0, {}) for name in evals}
    with console.status("comparing prompts"):
        report = find_overlaps(train_records, eval_records, jaccard=jaccard, ngram=ngram)
    table = Table(title=f"{train} ({report.n_train} prompts) vs evaluation sets")
    for col in ("eval set", "prompts", "exact", "near", "train prompts hit"):
        table.add_column(col, justify="left" if col == "eval set" else "right")
    for name, c in report.counts.items():
        table.add_row(name, str(c.n_eval), str(c.exact), str(c.near), str(c.train_prompts))
    console.print(table)
    for p in report.pairs[:show]:
        console.print(
            f"{p.kind} ({p.jaccard:.2f}) {p.train_id} ~ {p.eval_id}: "
            f"{p.train_text[:80]!r} | {p.eval_text[:80]!r}",
            markup=False,
            highlight=False,
        )
    if len(report.pairs) > show:
        console.print(f"... {len(report.pairs) - show} more pairs", highlight=False)
    if out is not None:
        write_json(out, report.model_dump())
        console.print(f"report written to {out}", highlight=False)

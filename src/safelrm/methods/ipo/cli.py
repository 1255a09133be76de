"""``safelrm ipo ...``: IPO's analysis commands (the training pipeline runs via ``safelrm run``)."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(no_args_is_help=True, help="IPO analysis: continuation safety ratios.")


@app.callback()
def _group() -> None:
    """IPO analysis commands (training runs via `safelrm run recipes/ipo.yaml`)."""


@app.command()
def csr(
    records: Path = typer.Argument(..., help="trajectories: generation records JSONL"),
    out: Path = typer.Option(Path("runs/ipo-csr"), help="output folder (csr.jsonl, csr.png)"),
    model: str = typer.Option("default", help="the policy that continues the prefixes"),
    n: int = typer.Option(3, min=1, help="trajectories analysed (the first n)"),
    k: int = typer.Option(4, min=1, help="continuations sampled per sentence boundary"),
    max_reasoning_tokens: int = typer.Option(48, min=1),
    max_new_tokens: int = typer.Option(48, min=1),
    temperature: float = typer.Option(0.6, min=0.0),
    top_p: float = typer.Option(0.95, min=0.0, max=1.0),
    seed: int = typer.Option(0),
    answer_judge: str = typer.Option("keyword", help="judge of the sampled answers"),
    reasoning_judge: str | None = typer.Option(
        None, help="also judge the sampled reasoning (unsafe if either is flagged)"
    ),
    markers_file: Path | None = typer.Option(
        None, help="compliance markers for the lexical cue detector marked on the plot"
    ),
    cued_only: bool = typer.Option(False, help="analyse only trajectories with a detected cue"),
    window: int = typer.Option(15, min=0, help="tokens the ratio must stay past a point"),
    high: float = typer.Option(0.9, help="trigger threshold"),
    low: float = typer.Option(0.1, help="compliance-cue threshold"),
    batch_size: int = typer.Option(16, min=1),
) -> None:
    """Estimate continuation safety ratios along trajectories and plot them with the cue."""
    from rich.console import Console

    from safelrm.errors import SafelrmError
    from safelrm.io import write_jsonl
    from safelrm.judges import get_judge
    from safelrm.methods.ipo.csr import csr_curve, load_trajectories, mark, plot_curves
    from safelrm.methods.ipo.detector import LexicalDetector
    from safelrm.methods.ipo.intervene import detect_cues
    from safelrm.models import make_engine

    console = Console(stderr=True)
    trajectories = [t for t in load_trajectories(records) if t["reasoning"].strip()]
    engine = make_engine(model, batch_size=batch_size)
    cues = detect_cues(engine, LexicalDetector(markers_file), trajectories)
    keep = [i for i, c in enumerate(cues) if c.check.status == "cue" or not cued_only][:n]
    trajectories, cues = [trajectories[i] for i in keep], [cues[i] for i in keep]
    if not trajectories:
        raise SafelrmError(f"{records}: no trajectory with reasoning (and a cue, if asked)")
    answer = get_judge(answer_judge)
    reasoning = get_judge(reasoning_judge) if reasoning_judge else None
    curves = []
    for i, (traj, cue) in enumerate(zip(trajectories, cues, strict=True), 1):
        console.print(f"[{i}/{len(trajectories)}] {traj['id']}: {len(cue.sentences)} sentences")
        curve = csr_curve(
            engine,
            answer,
            traj,
            k,
            max_reasoning_tokens,
            max_new_tokens,
            temperature,
            top_p,
            seed,
            reasoning_judge=reasoning,
        )
        curve.triggers, curve.cues = mark(curve.points, high, low, window)
        curve.detector_status = cue.check.status
        curve.detector_cue = cue.sentence.token if cue.sentence else None
        curves.append(curve)
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / "csr.jsonl", [c.to_json() for c in curves])
    png = plot_curves(curves, out / "csr.png", title=f"Continuation safety ratio ({model}, k={k})")
    for c in curves:
        ratios = " ".join("-" if p.ratio is None else f"{p.ratio:.2f}" for p in c.points)
        console.print(f"{c.id}: CSR {ratios}; triggers {c.triggers}; cues {c.cues}")
    console.print(f"wrote {out / 'csr.jsonl'} and {png}")

"""``safelrm judge``: train the classifier, validate judges on XSTest, judge generation records."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Judges: train, validate, run.")
console = Console(stderr=True)


@app.command()
def train(
    data: list[Path] = typer.Option(
        None,
        "--data",
        help="CSV/JSONL with prompt, completion, label (repeatable); "
        "default: the XSTest labelled completions",
    ),
    out: Path = typer.Option(None, "--out", help="output folder (default: the judge cache)"),
    name: str = typer.Option("minilm-refusal", help="cache name under $SAFELRM_CACHE/judges/"),
    method: str = typer.Option("linear", help="linear (frozen encoder + LR) or finetune"),
    epochs: int = typer.Option(1, help="fine-tuning epochs (method finetune)"),
    seed: int = typer.Option(0),
) -> None:
    """Train the refusal/compliance classifier judge."""
    from safelrm.judges.classifier import (
        default_model_dir,
        load_labelled,
        load_xstest_labelled,
        xstest_folder,
    )
    from safelrm.judges.classifier import train_classifier as _train

    if data:
        examples = [ex for path in data for ex in load_labelled(path)]
        source = ", ".join(map(str, data))
    else:
        examples, source = load_xstest_labelled(), str(xstest_folder())
    dest = out or default_model_dir(name)
    meta = _train(examples, dest, method=method, epochs=epochs, seed=seed, data_source=source)
    console.print(
        f"trained {method} classifier on {meta['n_train']} examples "
        f"in {meta['train_seconds']} s -> {dest}"
    )


@app.command()
def validate(
    out: Path = typer.Option(..., "--out", help="folder for agreement.json and agreement.md"),
    data_dir: Path = typer.Option(None, help="XSTest labelled_completions folder"),
    method: str = typer.Option("linear", help="classifier method: linear or finetune"),
    epochs: int = typer.Option(1, help="fine-tuning epochs per fold (method finetune)"),
) -> None:
    """Leave-one-model-out agreement of the keyword and classifier judges with human labels."""
    from safelrm.judges.classifier import load_xstest_labelled
    from safelrm.judges.validate import leave_one_model_out, write_validation

    examples = load_xstest_labelled(data_dir)
    result = leave_one_model_out(examples, method=method, epochs=epochs)  # type: ignore[arg-type]
    json_path, md_path = write_validation(result, out)
    console.print(f"wrote {json_path} and {md_path} ({result['seconds']:.0f} s)")


@app.command()
def agree(
    judge: str = typer.Option(..., "--judge", help="a registered judge, e.g. llm or llama_guard"),
    out: Path = typer.Option(..., "--out", help="folder for agreement-<judge>.json and .md"),
    option: list[str] = typer.Option([], "--option", help="judge option KEY=VALUE (repeatable)"),
    per_model: int = typer.Option(None, min=1, help="completions drawn per model (default all)"),
    data_dir: Path = typer.Option(None, help="XSTest labelled_completions folder"),
) -> None:
    """Agreement of any judge with the XSTest human labels (the validate protocol, no training)."""
    from safelrm.eval.cli import _parse_judge_options
    from safelrm.io import write_atomic, write_json
    from safelrm.judges.base import get_judge
    from safelrm.judges.classifier import load_xstest_labelled
    from safelrm.judges.validate import agreement_markdown, judge_agreement

    opts = _parse_judge_options([f"{judge}.{o}" for o in option]).get(judge, {})
    result = judge_agreement(
        get_judge(judge, **opts), judge, load_xstest_labelled(data_dir), per_model
    )
    result["options"] = opts
    stem = "agreement-" + "-".join([judge, *(f"{k}={v}" for k, v in opts.items())]).replace(
        "/", "_"
    )
    write_json(out / f"{stem}.json", result)
    write_atomic(out / f"{stem}.md", agreement_markdown(result))
    console.print(agreement_markdown(result))


@app.command("run")
def run_judges(
    records: Path = typer.Option(..., "--records", help="JSONL of generation Records"),
    judge: str = typer.Option("keyword,classifier", "--judge", help="comma-separated judges"),
    out: Path = typer.Option(..., "--out", help="JSONL of verdicts"),
    part: str = typer.Option("answer", help="answer, reasoning or both"),
    url: str = typer.Option(None, help="OpenAI-compatible endpoint for llm judges"),
    model: str = typer.Option(None, help="judge model for llm judges (local path or name)"),
) -> None:
    """Judge generation records; writes one verdict row per (record, judge, part)."""
    from safelrm.errors import SafelrmError, where
    from safelrm.io import iter_jsonl, write_jsonl
    from safelrm.judges.base import JudgeItem, Verdict, judge_part, make_judges, summarize
    from safelrm.locking import FolderLock

    if part not in ("answer", "reasoning", "both"):
        raise SafelrmError(f"--part must be answer, reasoning or both, not '{part}'")
    if out.is_dir():
        raise SafelrmError(f"--out {out}: is a folder (--out names the verdicts JSONL file)")
    items, keys, errors = [], [], []
    for line, rec in iter_jsonl(records):
        if "id" not in rec or "answer" not in rec:
            field = "id" if "id" not in rec else "answer"
            raise SafelrmError(f"{where(records, line, field)}: missing (not a generation record)")
        items.append(JudgeItem.from_record(rec))
        errors.append(rec.get("error"))
        keys.append({"id": rec["id"], "sample": rec.get("sample", 0), "key": rec.get("key")})
    llm_opts = {k: v for k, v in {"url": url, "model": model}.items() if v}
    if url:
        llm_opts["backend"] = "openai"
    ref_opts = {"model": model} if model else {}  # reference judges: the judge model
    judges = make_judges(
        judge, llm=llm_opts, strongreject_safelrm=llm_opts, harmbench_cls=ref_opts,
        llama_guard=ref_opts,
    )  # fmt: skip
    parts = ["answer", "reasoning"] if part == "both" else [part]
    ok = [i for i, e in enumerate(errors) if not e]
    rows = []
    with FolderLock(out.parent):
        for j in judges:
            for p in parts:
                start = time.perf_counter()
                verdicts = [
                    Verdict.unparsed("", f"generation error: {e}") if e else None for e in errors
                ]
                judged = judge_part(j, p, [items[i] for i in ok])
                for i, v in zip(ok, judged, strict=True):
                    verdicts[i] = v
                s = summarize(v for v in verdicts if v is not None)
                failed = sum(1 for v in verdicts if v and "error" in v.extra.get("reason", ""))
                console.print(
                    f"{j.name} on {p}: n={s['n']} unparsed={s['unparsed']} (errors={failed}) "
                    f"flagged={s['flagged']} ({time.perf_counter() - start:.1f} s)"
                )
                rows += [
                    k | {"judge": j.name, "part": p} | v.model_dump()
                    for k, v in zip(keys, verdicts, strict=True)
                    if v is not None
                ]
        write_jsonl(out, rows)
    console.print(f"wrote {len(rows)} verdicts to {out}")

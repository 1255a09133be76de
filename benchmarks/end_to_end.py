"""Wall time of each stage of a finished recipe run (``make demo`` = Safe Trigger by default),
read from the run folder: ``pipeline.json`` and each stage's ``stage.json``. Runs nothing itself.

    .venv/bin/python benchmarks/end_to_end.py [--run runs/safe_trigger]

A stage skipped in the last invocation keeps the time it took when it ran (from its
``stage.json``); a stage still running or never run is listed without a time.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from common import ROOT, machine_load, save

DEFAULT_RUN = ROOT / "runs" / "safe_trigger"


def stage_order(run: Path) -> list[str]:
    """Stage names in pipeline order: from pipeline.json, else from the method of recipe.json,
    else the stage folders by modification time."""
    pipeline = run / "pipeline.json"
    if pipeline.is_file():
        return list(json.loads(pipeline.read_text()))
    recipe = run / "recipe.json"
    if recipe.is_file():
        from safelrm.pipeline import get_method

        method = get_method(json.loads(recipe.read_text())["method"])
        return [s.name for s in method.stages]
    dirs = [p for p in run.iterdir() if (p / "stage.json").is_file()]
    return [p.name for p in sorted(dirs, key=lambda p: p.stat().st_mtime)]


def stage_times(run: Path) -> list[dict[str, Any]]:
    last = (
        json.loads((run / "pipeline.json").read_text()) if (run / "pipeline.json").is_file() else {}
    )
    rows = []
    for name in stage_order(run):
        path = run / name / "stage.json"
        state = json.loads(path.read_text()) if path.is_file() else {}
        summary = state.get("summary") or {}
        rows.append(
            {
                "stage": name,
                "status": state.get("status", "not run"),
                "last_invocation": last.get(name, {}).get("status"),
                "seconds": state.get("seconds"),
                "summary_keys": sorted(summary)[:12],
            }
        )
    total = sum(r["seconds"] or 0 for r in rows)
    for r in rows:
        r["share"] = round((r["seconds"] or 0) / total, 3) if total else None
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=DEFAULT_RUN, help="a recipe's run folder")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    load = machine_load()
    if not args.run.is_dir():
        result = {"benchmark": "end_to_end", "run": str(args.run), "skipped": "no run folder"}
        print(f"end_to_end: {args.run} does not exist: run `make demo` first (skipped)")
        save("end_to_end", result, args.out)
        return
    rows = stage_times(args.run)
    total = sum(r["seconds"] or 0 for r in rows)
    recipe = args.run / "recipe.json"
    result = {
        "benchmark": "end_to_end",
        "run": str(args.run),
        "recipe": json.loads(recipe.read_text()) if recipe.is_file() else None,
        "complete": all(r["status"] == "done" for r in rows),
        "total_seconds": round(total, 1),
        "stages": rows,
        "note": "stage times are those of the run itself; the machine load during the run is "
        "not recorded by the pipeline, only the load when this report was read",
        "load_when_read": load,
    }
    path = save("end_to_end", result, args.out)
    width = max((len(r["stage"]) for r in rows), default=5)
    for r in rows:
        secs = f"{r['seconds']:9.1f} s" if r["seconds"] is not None else "          -"
        share = f"{100 * r['share']:5.1f}%" if r["share"] is not None else ""
        print(f"{r['stage']:<{width}}  {r['status']:<8} {secs}  {share}")
    print(f"{'total':<{width}}  {'':<8} {total:9.1f} s   complete={result['complete']}")
    print(f"written: {path}")


if __name__ == "__main__":
    main()

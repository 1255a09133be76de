"""``run_recipe`` under `accelerate launch` with two stages and no model (used by
tests/test_pipeline.py; not a test).

Usage: accelerate launch ... tests/pipeline_launch.py OUT_DIR
Each stage checks what every process must see: its folder cleared and marked running, the
summary of the stage before it, and no stage marked done before both finished it. One process is
slow in each stage on purpose, so that a missing barrier shows. Every process writes
OUT_DIR/<stage>/rank<RANK>.txt and OUT_DIR/report<RANK>.json.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any


def main() -> None:
    from safelrm import pipeline
    from safelrm.io import read_json, write_json
    from safelrm.pipeline import Method, Recipe, Stage, StageContext, run_recipe
    from safelrm.train.distributed import launch_env

    _, rank, _ = launch_env()

    def run(ctx: StageContext) -> dict[str, Any]:
        state = read_json(ctx.dir / "stage.json")
        assert state["status"] == "running", state
        assert not (ctx.dir / "stale.txt").exists(), "the changed stage was not cleared"
        if ctx.stage.name == "second":
            assert ctx.summary("first") == {"stage": "first"}, "first not marked done yet"
        if (rank, ctx.stage.name) in ((0, "first"), (1, "second")):
            time.sleep(1.0)  # the other process must wait, not go on
        (ctx.dir / f"rank{rank}.txt").write_text(ctx.stage.name)
        state = read_json(ctx.dir / "stage.json")
        assert state["status"] == "running", "marked done before every process finished"
        return {"stage": ctx.stage.name}

    stages = tuple(Stage(n, run, config=lambda r: r.seed) for n in ("first", "second"))
    method = Method("fake", Recipe, stages)
    pipeline.get_method = lambda name: method
    out = Path(sys.argv[1])
    report = run_recipe(Recipe(method="fake", out=out))
    write_json(out / f"report{rank}.json", report)
    print(json.dumps({"rank": rank, "statuses": [v["status"] for v in report.values()]}))


if __name__ == "__main__":
    main()

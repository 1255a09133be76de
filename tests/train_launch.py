"""Training entry points that a test can kill mid-run (used by tests/test_faults_training.py; not
a test).

Usage: python tests/train_launch.py cli ARGS...       runs `safelrm ARGS...` (safelrm.cli.main)
       python tests/train_launch.py recipe RECIPE.yaml  runs a one-stage recipe whose stage trains
                                                        with train_sft (safelrm.pipeline)
With SAFELRM_TEST_STEP_SLEEP=S every optimizer step also sleeps S seconds, so that a kill lands
between checkpoints; nothing else about training changes.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any


def slow_steps(seconds: float) -> None:
    from transformers.trainer_callback import DefaultFlowCallback

    step_end = DefaultFlowCallback.on_step_end

    def on_step_end(self: Any, *args: Any, **kwargs: Any) -> Any:
        time.sleep(seconds)
        return step_end(self, *args, **kwargs)

    DefaultFlowCallback.on_step_end = on_step_end


def run_one_stage_recipe(path: str) -> None:
    from pydantic import Field

    from safelrm import pipeline
    from safelrm.io import read_jsonl
    from safelrm.pipeline import Method, Recipe, Stage, StageContext, load_recipe, run_recipe
    from safelrm.train import SFTSettings, train_sft

    class TrainRecipe(Recipe):
        rows: Path
        sft: SFTSettings = Field(default_factory=SFTSettings)

    def run(ctx: StageContext) -> dict[str, Any]:
        rows = read_jsonl(ctx.recipe.rows)
        result = train_sft(ctx.recipe.model, None, rows, ctx.recipe.sft, ctx.dir / "train")
        return {"steps": result.steps}

    method = Method("train_only", TrainRecipe, (Stage("sft", run, config=lambda r: r.sft),))
    pipeline.get_method = lambda name: method
    run_recipe(load_recipe(path))


def main() -> None:
    if os.environ.get("SAFELRM_TEST_STEP_SLEEP"):
        slow_steps(float(os.environ["SAFELRM_TEST_STEP_SLEEP"]))
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "cli":
        from safelrm.cli import main as cli_main

        sys.argv = ["safelrm", *args]
        cli_main()
    else:
        run_one_stage_recipe(args[0])


if __name__ == "__main__":
    main()

"""STAR-1 (arXiv 2504.01903): SFT on 1,000 policy-grounded DeepSeek-R1 safety reasoning traces, the
usual baseline of safety-reasoning papers.

Stages: ``data`` (STAR-1 rows minus HarmBench behaviours and eval-suite overlaps, reasoning cut
to the CPU budget) -> ``train`` (LoRA SFT) -> ``eval_base`` -> ``eval_star1`` -> ``report``
(paired comparison, as ``safelrm compare``). See README.md in this folder.
"""

from safelrm.methods import baselines
from safelrm.methods.star1.config import Star1Recipe
from safelrm.methods.star1.stages import run_data, run_train
from safelrm.pipeline import Method, Stage, TrainedModel

METHOD = Method(
    name="star1",
    recipe=Star1Recipe,
    describe="STAR-1 baseline: SFT on policy-grounded R1 safety reasoning (1k rows)",
    stages=(
        Stage("data", run_data, lambda r: (r.data, r.eval.suite, r.eval.limit, r.sft.max_length)),
        Stage("train", run_train, lambda r: r.sft, reads=("data",)),
        *baselines.eval_stages("STAR-1", "eval_star1"),
    ),
    models=(TrainedModel("STAR-1", "train", "merged"),),
)

__all__ = ["METHOD", "Star1Recipe"]

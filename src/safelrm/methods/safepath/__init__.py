"""SafePath (arXiv 2505.14667): train the model to open its reasoning with a short fixed safety
primer on harmful prompts, the rest of the reasoning left unsupervised; benign prompts keep
their own responses.

Stages: ``prompts`` (trigger = harmful, retain = benign; eval overlaps dropped) -> ``retain``
(the policy's own CoT-on responses to the retain prompts) -> ``train`` (loss on the primer only
for trigger rows, no end of turn; whole responses for retain rows) -> ``eval_base`` ->
``eval_safepath`` -> ``report`` (paired comparison, as ``safelrm compare``). See README.md.
"""

from safelrm.methods import baselines
from safelrm.methods.safepath.config import SafePathRecipe
from safelrm.methods.safepath.stages import primer_text, run_prompts, run_retain, run_train
from safelrm.pipeline import Method, Stage, TrainedModel

METHOD = Method(
    name="safepath",
    recipe=SafePathRecipe,
    describe="SafePath baseline: a fixed safety primer opens the reasoning on harmful prompts",
    stages=(
        Stage("prompts", run_prompts, lambda r: (r.data, r.eval.suite, r.eval.limit)),
        Stage(
            "retain",
            run_retain,
            lambda r: (r.retain, r.generation.backend, r.generation.family),
            reads=("prompts",),
        ),
        Stage(
            "train",
            run_train,
            lambda r: (r.train, primer_text(r.primer.file), r.generation.family),
            reads=("prompts", "retain"),
        ),
        *baselines.eval_stages("SafePath", "eval_safepath"),
    ),
    models=(TrainedModel("SafePath", "train", "merged"),),
)

__all__ = ["METHOD", "SafePathRecipe"]

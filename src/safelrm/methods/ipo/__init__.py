"""IPO (Intervened Preference Optimization): replace the first compliance cue of an unsafe
reasoning with a safety trigger, let the policy continue, and prefer the intervened trajectory
over the original with DPO on the tokens from the intervention point on (plus NLL, weight 0.2).

Stages: rollouts -> intervene -> overrefusal -> pairs -> train -> train_ablations -> eval_base
-> eval_ipo -> eval_ablations -> report. ``safelrm ipo csr`` plots continuation safety ratios.
"""

from safelrm.methods.ipo.config import IPORecipe
from safelrm.methods.ipo.stages import (
    run_eval_ablations,
    run_eval_base,
    run_eval_ipo,
    run_intervene,
    run_overrefusal,
    run_pairs,
    run_report,
    run_rollouts,
    run_train,
    run_train_ablations,
)
from safelrm.pipeline import Method, Stage, TrainedModel

METHOD = Method(
    name="ipo",
    recipe=IPORecipe,
    describe="Intervened Preference Optimization (safety triggers at compliance cues + DPO)",
    models=(TrainedModel("IPO", "train", "merged"),),
    stages=(
        Stage(
            "rollouts",
            run_rollouts,
            config=lambda r: (r.rollouts, r.judge, r.eval.suite, r.generation),
        ),
        Stage(
            "intervene",
            run_intervene,
            config=lambda r: (r.detector, r.intervene, r.judge),
            reads=("rollouts",),
        ),
        Stage(
            "overrefusal",
            run_overrefusal,
            config=lambda r: (r.overrefusal, r.rollouts, r.eval.suite, r.generation),
        ),
        Stage(
            "pairs",
            run_pairs,
            config=lambda r: (r.pairs, r.overrefusal.ratio),
            reads=("rollouts", "intervene", "overrefusal"),
        ),
        Stage("train", run_train, config=lambda r: (r.dpo, r.pairs.loss_scope), reads=("pairs",)),
        Stage(
            "train_ablations",
            run_train_ablations,
            config=lambda r: (r.ablations, r.dpo, r.sft),
            reads=("pairs",),
        ),
        Stage("eval_base", run_eval_base, config=lambda r: (r.eval, r.generation)),
        Stage("eval_ipo", run_eval_ipo, config=lambda r: (r.eval, r.generation), reads=("train",)),
        Stage(
            "eval_ablations",
            run_eval_ablations,
            config=lambda r: (r.eval, r.generation, r.ablations),
            reads=("train_ablations",),
        ),
        Stage(
            "report",
            run_report,
            config=lambda r: r.eval,
            reads=("eval_base", "eval_ipo", "eval_ablations", "pairs", "train"),
        ),
    ),
)

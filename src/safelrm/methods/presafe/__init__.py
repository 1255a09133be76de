"""PreSafe: distil the CoT-off safety decision into a classifier, and supervise the policy's
state before it starts reasoning with an auxiliary head on that signal (arXiv 2603.17368).

Stages: ``teacher`` (CoT-off answers of the policy, judged refuse/comply) -> ``classifier``
(BERT-family, cross-fitted soft labels p(refuse | query)) -> ``responses`` (decision-first
refusals for harmful prompts, the model's own CoT-on answers for benign ones) -> ``eval_base``
(CoT on and off) -> ``train`` (LoRA SFT + head loss, head saved apart) -> ``eval_presafe`` ->
``norms`` (LoRA update norms per layer/module) -> ``report``.
"""

from safelrm.methods.presafe.config import PreSafeRecipe
from safelrm.methods.presafe.stages import (
    run_classifier,
    run_eval_base,
    run_eval_presafe,
    run_norms,
    run_report,
    run_responses,
    run_teacher,
    run_train,
)
from safelrm.pipeline import Method, Stage, TrainedModel


def _teacher_config(r: PreSafeRecipe) -> dict:
    # `teacher.decision` only changes the classifier's target: changing it keeps the generations.
    # The suite decides which training prompts are dropped as eval overlaps.
    return {
        "data": r.data,
        "teacher": r.teacher.model_dump(exclude={"decision"}),
        "suite": r.eval.suite,
    }


METHOD = Method(
    name="presafe",
    recipe=PreSafeRecipe,
    describe="CoT-off teacher -> classifier soft labels -> SFT with a pre-reasoning safety head",
    models=(TrainedModel("PreSafe", "train", "merged"),),
    stages=(
        Stage("teacher", run_teacher, _teacher_config),
        Stage(
            "classifier",
            run_classifier,
            lambda r: {"classifier": r.classifier, "decision": r.teacher.decision},
            reads=("teacher",),
        ),
        Stage("responses", run_responses, lambda r: r.responses, reads=("teacher",)),
        Stage("eval_base", run_eval_base, lambda r: r.eval),
        Stage(
            "train",
            run_train,
            lambda r: {"train": r.train, "head": r.head},
            reads=("classifier", "responses"),
        ),
        Stage("eval_presafe", run_eval_presafe, lambda r: r.eval, reads=("train",)),
        Stage("norms", run_norms, lambda r: None, reads=("train",)),
        Stage(
            "report",
            run_report,
            lambda r: r.eval.judges,
            reads=(
                "teacher",
                "classifier",
                "responses",
                "eval_base",
                "train",
                "eval_presafe",
                "norms",
            ),
        ),
    ),
)

__all__ = ["METHOD", "PreSafeRecipe"]

"""Safe Trigger: self-generated safety analysis (``<safe>`` blocks) learned by SFT, then DPO.

Stages (``safelrm run recipes/safe_trigger.yaml``)::

    prompts   training mix (general / harmful / jailbreak) + disjoint DPO queries, decontaminated
    pass1     self-generation: think1, answer1 (judged)
    audit     latent safety awareness: does the model flag its own risky reasoning? (RISR)
    pass2     query + think1 + safety instruction -> think2, <safe> block, answer2 (validated)
    sft_data  general rows + safety rows whose answer2 is safe, balanced
    sft       LoRA SFT -> ST-S
    dpo_data  4 samples per DPO query from ST-S, four-indicator reward, delta filter, pairs
    dpo       LoRA DPO from ST-S -> ST-D
    eval_*    base, ST-S, ST-D on the recipe's suite (CoT on); report: the comparison
"""

from __future__ import annotations

from typing import Any

from safelrm.methods.safe_trigger import stages
from safelrm.methods.safe_trigger.evaluation import suite_fingerprint
from safelrm.methods.safe_trigger.recipe import SafeTriggerRecipe
from safelrm.methods.safe_trigger.templates import prompt_file_text
from safelrm.pipeline import Method, Stage, TrainedModel


def _gen(r: SafeTriggerRecipe) -> dict[str, Any]:
    return {"backend": r.generation.backend, "family": r.generation.family}


def _eval(r: SafeTriggerRecipe) -> dict[str, Any]:
    return {"eval": r.eval, "suite": suite_fingerprint(r.eval.suite), **_gen(r)}


METHOD = Method(
    name="safe_trigger",
    recipe=SafeTriggerRecipe,
    describe=__doc__ or "",
    models=(TrainedModel("ST-S", "sft", "model.json"), TrainedModel("ST-D", "dpo", "model.json")),
    stages=(
        Stage("prompts", stages.run_prompts, lambda r: [r.data, suite_fingerprint(r.eval.suite)]),
        Stage("pass1", stages.run_pass1, lambda r: [r.pass1, r.data_judges, _gen(r)], ("prompts",)),
        Stage(
            "audit",
            stages.run_audit,
            lambda r: [r.audit, prompt_file_text(r.audit.prompt_file, "audit.txt"), _gen(r)],
            ("pass1",),
        ),
        Stage(
            "pass2",
            stages.run_pass2,
            lambda r: [
                r.pass2,
                prompt_file_text(r.pass2.prompt_file, "pass2.yaml"),
                r.data_judges,
                _gen(r),
            ],
            ("pass1",),
        ),
        Stage("sft_data", stages.run_sft_data, lambda r: r.sft_data, ("pass1", "pass2")),
        Stage("sft", stages.run_sft, lambda r: r.sft, ("sft_data",)),
        Stage(
            "dpo_data",
            stages.run_dpo_data,
            lambda r: [
                r.dpo_data,
                r.pass2.min_part_words,
                r.data_judges,
                prompt_file_text(r.pass2.prompt_file, "pass2.yaml"),
                _gen(r),
            ],
            ("prompts", "sft"),
        ),
        Stage("dpo", stages.run_dpo, lambda r: r.dpo, ("dpo_data", "sft")),
        Stage("eval_base", stages.run_eval_base, _eval),
        Stage("eval_sts", stages.run_eval_sts, _eval, ("sft",)),
        Stage("eval_std", stages.run_eval_std, _eval, ("dpo",)),
        Stage(
            "report",
            stages.run_report,
            lambda r: r.eval.judges,
            ("eval_base", "eval_sts", "eval_std", "audit", "pass2", "sft_data", "dpo_data"),
        ),
    ),
)

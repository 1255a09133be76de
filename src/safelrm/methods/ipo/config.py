"""The IPO recipe: every section strict (unknown keys and wrong types fail before work starts).

Defaults follow the paper where it publishes a value (6 triggers, one intervention round per
trigger, NLL weight 0.2 on the chosen side, decoding at temperature 0.6 / top-p 0.95) and are
otherwise sized for the embedded default model on a CPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from safelrm.config import StrictModel
from safelrm.pipeline import Recipe
from safelrm.train import DPOSettings, SFTSettings


class RolloutSettings(StrictModel):
    """Policy rollouts on harmful training prompts (overlap with the eval suite removed)."""

    sets: list[str] = Field(
        default_factory=lambda: ["star1"],
        min_length=1,
        description="training-set names or prompt files (JSONL PromptRecords may carry a prefix)",
    )
    paths: dict[str, str] = Field(default_factory=dict, description="set name -> its file")
    n: int | None = Field(1000, ge=1, description="prompts drawn (seeded); None = all")
    seed: int = 0
    temperature: float = Field(0.6, ge=0.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    max_reasoning_tokens: int = Field(1024, ge=1)
    max_new_tokens: int = Field(512, ge=1)
    overlap_jaccard: float = Field(0.8, gt=0.0, le=1.0)


class JudgeSettings(StrictModel):
    """Reasoning and answer are judged separately; a trajectory is unsafe if either is."""

    reasoning: str = "keyword"
    answer: str = "keyword"
    options: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="judge name -> constructor options"
    )
    intervened_reasoning: Literal["continuation", "full"] = Field(
        "continuation",
        description="what of an intervened reasoning is judged: the model's own text after the "
        "trigger (default: the trigger itself would read as safety talk), or all of it",
    )


class DetectorSettings(StrictModel):
    backend: Literal["lexical", "policy", "hf", "endpoint"] = "lexical"
    model: str | None = Field(None, description="hf: model spec; endpoint: model name")
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    prompt_file: Path | None = None
    markers_file: Path | None = None
    max_new_tokens: int = Field(24, ge=1)
    timeout_s: float = Field(60.0, gt=0)

    @model_validator(mode="after")
    def _needs(self) -> DetectorSettings:
        if self.backend == "hf" and not self.model:
            raise ValueError("detector.backend 'hf' needs detector.model (a model spec)")
        if self.backend == "endpoint" and not (self.base_url and self.model):
            raise ValueError("detector.backend 'endpoint' needs detector.base_url and model")
        return self


class InterveneSettings(StrictModel):
    triggers: list[str] | None = Field(None, description="inline triggers (replace the file)")
    triggers_file: Path | None = None
    rounds: int = Field(1, ge=1, description="interventions per trigger while still unsafe")
    max_reasoning_tokens: int | None = Field(None, ge=1, description="None: rollout budget")
    max_new_tokens: int | None = Field(None, ge=1, description="None: rollout budget")
    kv_reuse: Literal["auto", "on", "off"] = Field(
        "auto", description="continue from the prefix's KV cache (auto: on the hf backend)"
    )
    prompts_per_chunk: int = Field(8, ge=1)


class OverRefusalSettings(StrictModel):
    """Benign borderline prompts: the policy's answer preferred over a prefilled refusal."""

    enabled: bool = True
    set: str = "coconot"
    path: str | None = None
    n: int | None = Field(915, ge=1)
    seed: int = 0
    ratio: float = Field(1.0, ge=0.0, description="over-refusal pairs per IPO pair (at most)")
    refusal_judge: str = "keyword"
    refusal_prefills_file: Path | None = None
    max_reasoning_tokens: int | None = Field(None, ge=1, description="None: rollout budget")
    max_new_tokens: int | None = Field(None, ge=1, description="None: rollout budget")


class PairSettings(StrictModel):
    loss_scope: Literal["part", "full"] = Field(
        "part", description="part: shared prefix in the DPO prompt (masked); full: prompt only"
    )
    require_safe_chosen: bool = Field(True, description="keep only interventions judged safe")
    max_pairs_per_prompt: int | None = Field(None, ge=1)
    drop_unclean_boundary: bool = True


class AblationSettings(StrictModel):
    full_trajectory: bool = Field(False, description="DPO with the prompt only as DPO prompt")
    sft: bool = Field(False, description="SFT on the intervened trajectories")


def _default_dpo() -> DPOSettings:
    return DPOSettings(nll_weight=0.2)


class IPORecipe(Recipe):
    method: Literal["ipo"] = "ipo"
    rollouts: RolloutSettings = Field(default_factory=RolloutSettings)
    judge: JudgeSettings = Field(default_factory=JudgeSettings)
    detector: DetectorSettings = Field(default_factory=DetectorSettings)
    intervene: InterveneSettings = Field(default_factory=InterveneSettings)
    overrefusal: OverRefusalSettings = Field(default_factory=OverRefusalSettings)
    pairs: PairSettings = Field(default_factory=PairSettings)
    dpo: DPOSettings = Field(default_factory=_default_dpo)
    sft: SFTSettings = Field(default_factory=SFTSettings)
    ablations: AblationSettings = Field(default_factory=AblationSettings)

"""The Safe Trigger recipe: every section strict (unknown keys and wrong types are rejected).

Defaults are the paper's choices where it publishes them (LoRA r=64/alpha=16/dropout=0.05, 4 DPO
samples, w_a > w_b > w_c, DPO beta 0.1) and documented choices where it does not (marked
"not published"). ``recipes/safe_trigger.yaml`` shrinks the budgets to a CPU demo.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from safelrm.config import StrictModel
from safelrm.pipeline import Recipe
from safelrm.train import DPOSettings, SFTSettings

IndicatorJudge = Literal["self", "keyword", "classifier", "llm"]


class SourceSpec(StrictModel):
    """One prompt source: a training-set or benchmark loader by name, optionally on another file,
    folder or hub id (``path``), e.g. ``{set: wildjailbreak, path: allenai/wildjailbreak}``."""

    set: str
    n: int | None = Field(None, ge=1, description="records drawn by seed; None = all")
    path: str | None = None
    options: dict[str, Any] = Field(default_factory=dict, description="loader options")
    kind: Literal["general", "harmful", "jailbreak"] | None = Field(
        None, description="override the loader's kind (e.g. a benchmark used as training data)"
    )


class AttackSpec(StrictModel):
    """A jailbreak attack applied to harmful training prompts; ``share`` is its relative weight."""

    name: str
    share: float = Field(1.0, gt=0)
    options: dict[str, Any] = Field(default_factory=dict)


def _sources(*names: str) -> list[SourceSpec]:
    return [SourceSpec(set=n) for n in names]


class DataSettings(StrictModel):
    """Stage ``prompts``. The paper: 10k each of general (UltraFeedback), harmful (PKU-SafeRLHF)
    and jailbreak (WildJailbreak) for SFT, plus 20k disjoint WildJailbreak queries for DPO."""

    general: list[SourceSpec] = Field(default_factory=lambda: _sources("gsm8k_train", "dolly"))
    harmful: list[SourceSpec] = Field(
        default_factory=lambda: _sources("do_not_answer", "catqa", "star1")
    )
    jailbreak: list[SourceSpec] = Field(
        default_factory=list,
        description="ready-made jailbreak prompts (e.g. WildJailbreak adversarial_harmful); "
        "they fill the jailbreak and DPO pools before attacked harmful prompts do",
    )
    attacks: list[AttackSpec] = Field(
        default_factory=lambda: [
            AttackSpec(name="mixed", share=3.0, options={"k": 2}),
            AttackSpec(name="gptfuzz", share=1.0),
        ]
    )
    n_general: int = Field(10_000, ge=0)
    n_harmful: int = Field(10_000, ge=0)
    n_jailbreak: int = Field(10_000, ge=0)
    n_dpo: int = Field(20_000, ge=0)
    n_dpo_general: int = Field(
        0,
        ge=0,
        description="general queries, disjoint from the SFT ones, added to stage dpo_data as "
        "contrast pairs (an answer without <safe> preferred to a refusal); not in the paper",
    )
    max_prompt_chars: int | None = Field(
        None, ge=1, description="drop prompts longer than this (all turns); keeps CPU runs short"
    )
    overlap_jaccard: float = Field(0.8, gt=0.0, le=1.0)

    omit_at_default = ("n_dpo_general",)


class GenSettings(StrictModel):
    """A generation budget (tokens) and sampling for one stage."""

    max_reasoning_tokens: int = Field(1024, ge=1)
    max_new_tokens: int = Field(1024, ge=1)
    temperature: float = Field(0.0, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)


class AuditSettings(StrictModel):
    """Stage ``audit`` (latent safety awareness, RISR). Audit prompt: not published."""

    enabled: bool = True
    prompt_file: str | None = Field(None, description="default: prompts/audit.txt")
    cot: bool = Field(True, description="let the model reason before its verdict")
    max_reasoning_tokens: int = Field(512, ge=1)
    max_new_tokens: int = Field(64, ge=1)
    scaffold: bool = Field(
        False, description="prefill the verdict line 'RISKY:' so that a small model answers it"
    )
    general_control: bool = Field(
        True, description="also audit the general prompts: the false-alarm rate behind RISR"
    )


class Pass2Settings(StrictModel):
    """Stage ``pass2``: think2, the ``<safe>`` block and answer2 (instruction: not published)."""

    prompt_file: str | None = Field(None, description="default: prompts/pass2.yaml")
    scaffold: Literal["auto", "on", "off"] = Field(
        "auto", description="prefill each <safe> section header; auto = on below 1B parameters"
    )
    max_reasoning_tokens: int = Field(1024, ge=1)
    section_tokens: int = Field(128, ge=1, description="per <safe> part when scaffolded")
    max_new_tokens: int = Field(
        1024, ge=1, description="answer (plus <safe> block if unscaffolded)"
    )
    temperature: float = Field(0.0, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    min_part_words: int = Field(4, ge=1, description="validator: words per <safe> part")
    retries: int = Field(2, ge=0, description="new-seed attempts for rows that fail")
    retry_temperature: float = Field(0.7, gt=0.0, description="used by retries when temperature=0")
    retry_unsafe: bool = Field(
        False, description="also retry rows whose answer2 the judges flag (rejection sampling)"
    )


class SFTDataSettings(StrictModel):
    """Stage ``sft_data``."""

    reasoning_source: Literal["think1", "think2"] = Field(
        "think1", description="the paper's text keeps think1; its figure shows think2"
    )
    general_ratio: float = Field(
        1.0, ge=0.0, description="general rows per safety row (capped by what is available)"
    )
    drop_refusing_general: bool = Field(
        True, description="leave out general rows whose answer1 the judges read as a refusal"
    )


class RewardWeights(StrictModel):
    """R = F*S*(T + Sf + w_a) + F*(1-S)*w_b + (1-F)*S*w_c, with w_a > w_b > w_c (not published)."""

    w_a: float = 2.0
    w_b: float = 1.0
    w_c: float = 0.5

    @model_validator(mode="after")
    def _ordered(self) -> RewardWeights:
        if not self.w_a > self.w_b > self.w_c:
            raise ValueError(
                f"weights must satisfy w_a > w_b > w_c, got {self.w_a}, {self.w_b}, {self.w_c}"
            )
        return self


class DPODataSettings(StrictModel):
    """Stage ``dpo_data``: sample ST-S, score four indicators, keep informative queries, pair."""

    samples: int = Field(4, ge=2)
    temperature: float = Field(1.0, gt=0.0, description="'high temperature' (not published)")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_reasoning_tokens: int = Field(1024, ge=1)
    max_new_tokens: int = Field(1024, ge=1, description="<safe> block plus answer")
    weights: RewardWeights = Field(default_factory=RewardWeights)
    delta: float = Field(1.0, ge=0.0, description="keep a query if max R - min R >= delta")
    reasoning_judge: IndicatorJudge = Field("keyword", description="decides T_full")
    analysis_judge: IndicatorJudge = Field("keyword", description="decides S_full")
    analysis_min_words: int = Field(6, ge=1, description="keyword S_full: words per <safe> part")
    analysis_min_terms: int = Field(
        3, ge=1, description="keyword S_full: distinct safety terms in the block"
    )


class SafeTriggerRecipe(Recipe):
    method: Literal["safe_trigger"] = "safe_trigger"
    data_judges: list[str] = Field(
        default_factory=lambda: ["keyword"],
        min_length=1,
        description="judges for attack success (audit), answer2 safety and F_safe; a response "
        "is safe only when every judge reads it as safe/refusal",
    )
    data: DataSettings = Field(default_factory=DataSettings)
    pass1: GenSettings = Field(default_factory=lambda: GenSettings(temperature=0.6, top_p=0.95))
    audit: AuditSettings = Field(default_factory=AuditSettings)
    pass2: Pass2Settings = Field(default_factory=Pass2Settings)
    sft_data: SFTDataSettings = Field(default_factory=SFTDataSettings)
    sft: SFTSettings = Field(default_factory=SFTSettings)
    dpo_data: DPODataSettings = Field(default_factory=DPODataSettings)
    dpo: DPOSettings = Field(default_factory=DPOSettings)

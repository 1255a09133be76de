"""The safepath recipe: its sections, validated before any work starts."""

from __future__ import annotations

from pydantic import Field

from safelrm.config import StrictModel
from safelrm.methods.baselines import PromptSet
from safelrm.pipeline import Recipe
from safelrm.train import SFTSettings


class SafePathData(StrictModel):
    """``trigger``: harmful prompts, trained to open the reasoning with the primer (SafePath's
    Safety Trigger Set). ``retain``: benign prompts whose own CoT-on responses are trained whole
    (its Reasoning Retain Set). Prompts equal or close (Jaccard >= ``overlap_jaccard``) to an
    eval prompt are dropped. ``retain_ratio``: retain rows per trigger row (the mix is shuffled,
    so the two interleave at that ratio)."""

    trigger: list[PromptSet] = Field(
        default_factory=lambda: [
            PromptSet(set="do_not_answer", n=24),
            PromptSet(set="catqa", n=20),
            PromptSet(set="star1", n=20),
        ]
    )
    retain: list[PromptSet] = Field(
        default_factory=lambda: [
            PromptSet(set="gsm8k_train", n=16),
            PromptSet(set="dolly", n=16),
            PromptSet(set="coconot", n=16),
        ]
    )
    overlap_jaccard: float = Field(0.8, gt=0.0, le=1.0)
    retain_ratio: float = Field(0.75, ge=0.0)


class PrimerSettings(StrictModel):
    """``file``: the primer text (None = the shipped ``prompts/primer.txt``; ours, 9 tokens
    for SmolLM2's tokenizer; SafePath's is 8 tokens)."""

    file: str | None = None


class RetainSettings(StrictModel):
    """Budgets of the retain responses (the policy's own, greedy, chain of thought on)."""

    max_reasoning_tokens: int = Field(64, ge=1)
    max_new_tokens: int = Field(64, ge=1)


class SafePathRecipe(Recipe):
    data: SafePathData = Field(default_factory=SafePathData)
    primer: PrimerSettings = Field(default_factory=PrimerSettings)
    retain: RetainSettings = Field(default_factory=RetainSettings)
    train: SFTSettings = Field(
        default_factory=lambda: SFTSettings(
            learning_rate=2e-4, max_steps=24, per_device_train_batch_size=4, max_length=256
        )
    )

"""The star1 recipe: its sections, validated before any work starts."""

from __future__ import annotations

from pydantic import Field

from safelrm.config import StrictModel
from safelrm.pipeline import Recipe
from safelrm.train import SFTSettings


class Star1Data(StrictModel):
    """STAR-1 rows to train on.

    ``folder``: the STAR-1 folder (``STAR-1.json`` + ``star1_prompts.csv``; default
    ``<data root>/train/star1``). ``include_harmbench``: keep the 32 questions that are HarmBench
    behaviours (dropped by default). Rows equal or close (Jaccard >= ``overlap_jaccard``) to a
    prompt of the eval suite are dropped, then ``n`` rows are drawn by the recipe's seed.
    ``max_reasoning_tokens``: the R1 reasoning is cut to this many tokens (at the last sentence
    end within them), keeping ``</think>`` and the answer, so that a row fits a CPU-sized
    ``sft.max_length``; None keeps it whole. Rows that still do not fit are dropped.
    """

    folder: str | None = None
    include_harmbench: bool = False
    n: int | None = Field(64, ge=1)
    overlap_jaccard: float = Field(0.8, gt=0.0, le=1.0)
    max_reasoning_tokens: int | None = Field(160, ge=8)


class Star1Recipe(Recipe):
    data: Star1Data = Field(default_factory=Star1Data)
    sft: SFTSettings = Field(
        default_factory=lambda: SFTSettings(
            learning_rate=2e-4, max_steps=32, per_device_train_batch_size=2, max_length=384
        )
    )

"""Shared training layer: SFT and DPO with TRL (LoRA or full), rendered text rows, atomic export.

Data formats are documented in ``README.md`` next to this file. Typical use::

    from safelrm.train import SFTSettings, train_sft
    result = train_sft("path/to/model", None, rows, SFTSettings(max_steps=20), "runs/sft")
    result.merged_dir  # plain transformers model + tokenizer
"""

from safelrm.train.config import DPOSettings, LoraSettings, SFTSettings, TrainResult
from safelrm.train.dpo import build_dpo_trainer, train_dpo
from safelrm.train.formats import end_of_turn, render_dpo_rows, render_prompt, render_sft_rows
from safelrm.train.sft import MaskRow, build_sft_trainer, completion_mask_report, train_sft

__all__ = [
    "DPOSettings",
    "LoraSettings",
    "MaskRow",
    "SFTSettings",
    "TrainResult",
    "build_dpo_trainer",
    "build_sft_trainer",
    "completion_mask_report",
    "end_of_turn",
    "render_dpo_rows",
    "render_prompt",
    "render_sft_rows",
    "train_dpo",
    "train_sft",
]

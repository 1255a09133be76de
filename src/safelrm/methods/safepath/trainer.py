"""SafePath training: loss on the primer tokens only for trigger rows, on the whole response for
retain rows.

TRL appends EOS to every text completion, which would teach the model to stop right after the
primer; so rows are tokenized here (as TRL tokenizes text rows: prompt masked, special tokens
on) and TRL takes the pre-tokenized ``input_ids``/``labels`` as they are. A trigger row ends
where the primer ends: no end of turn, no EOS, the rest of the reasoning unsupervised.

Rows: ``{"prompt": messages, "completion": str, "open_ended": bool, "prefill": str}``. For an
open-ended row ``prefill`` (the reasoning opener, ``<think>\\n``) goes after the rendered prompt
and is not trained (the engine writes it at generation time too; a template whose generation
prompt already ends with it keeps its own).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from safelrm.errors import SafelrmError
from safelrm.train import SFTSettings, TrainResult, render_prompt
from safelrm.train.export import load_for_training
from safelrm.train.formats import common_prefix_length, end_of_turn, join_completion
from safelrm.train.runner import run_training


def tokenize_rows(tokenizer: Any, rows: list[dict[str, Any]], max_length: int) -> list[dict]:
    """``input_ids`` and ``labels`` (-100 outside the trained part), cut at ``max_length``;
    rows with nothing left to train are dropped."""
    eot, eos = end_of_turn(tokenizer), tokenizer.eos_token or ""
    out = []
    for row in rows:
        prompt = render_prompt(tokenizer, row["prompt"])
        if row.get("open_ended"):
            prefill = row.get("prefill", "")
            if not prompt.rstrip().endswith(prefill.strip()):  # templates that open it already
                prompt += prefill
            completion = row["completion"]
        else:
            completion = join_completion(prompt, row["completion"], eot)
            if eos and not completion.endswith(eos):
                completion += eos  # as TRL does for text rows
        full = tokenizer(prompt + completion)["input_ids"]
        n_prompt = common_prefix_length(tokenizer(prompt)["input_ids"], full)
        labels = ([-100] * n_prompt + full[n_prompt:])[:max_length]
        if any(x != -100 for x in labels):
            out.append({"input_ids": full[:max_length], "labels": labels})
    if not out:
        raise SafelrmError(f"train.max_length: {max_length} tokens leave no row anything to train")
    return out


def build_safepath_trainer(
    model: Any,
    tokenizer: Any,
    rows: list[dict[str, Any]],
    settings: SFTSettings,
    work_dir: Path,
    progress: bool = True,
) -> Any:
    from datasets import Dataset
    from trl import SFTTrainer

    from safelrm.train.lean import build_lean

    make = partial(
        SFTTrainer,
        model=model,
        args=settings.to_trl(work_dir, progress),
        train_dataset=Dataset.from_list(tokenize_rows(tokenizer, rows, settings.max_length)),
        processing_class=tokenizer,
        peft_config=settings.lora.peft_config() if settings.lora.enabled else None,
    )
    return build_lean(settings, make)


def train_safepath(
    model: Any, rows: list[dict[str, Any]], settings: SFTSettings, out_dir: str | Path
) -> TrainResult:
    """LoRA/full SFT on trigger + retain rows; writes ``adapter/``, ``merged/`` and
    ``train_log.json`` into ``out_dir``."""
    model, tokenizer = load_for_training(model, None, settings)
    return run_training(
        "sft", build_safepath_trainer, model, tokenizer, rows, settings, Path(out_dir), True
    )

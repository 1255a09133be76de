"""The loop shared by SFT and DPO: build the trainer, train, save outputs and the step log."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from safelrm.io import write_json
from safelrm.train.config import TrainResult
from safelrm.train.export import step_log


@contextmanager
def progress_bars(enabled: bool) -> Iterator[None]:
    """Silence the datasets/transformers progress bars for the block when ``enabled`` is False."""
    import datasets
    from transformers.utils import logging as hf_logging

    if enabled:
        yield
        return
    ds_was, hf_was = datasets.is_progress_bar_enabled(), hf_logging.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if ds_was:
            datasets.enable_progress_bars()
        if hf_was:
            hf_logging.enable_progress_bar()


def _train(trainer: Any, progress: bool) -> float:
    if not progress:
        from transformers import PrinterCallback

        trainer.remove_callback(PrinterCallback)  # disable_tqdm adds it; it prints every log
    start = time.perf_counter()
    trainer.train()
    return time.perf_counter() - start


def run_training(
    kind: Literal["sft", "dpo"],
    build: Callable[..., Any],
    model: Any,
    tokenizer: Any,
    rows: list[dict[str, Any]],
    settings: Any,
    out_dir: Path,
    progress: bool,
) -> TrainResult:
    """Build the trainer with ``build``, train, write outputs and ``train_log.json``.

    Under ``accelerate launch`` every rank trains and returns the same result; only the main
    process writes (see ``safelrm.train.distributed``).
    """
    from transformers import set_seed

    from safelrm.train.distributed import barrier, export_trained, is_main_process

    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=out_dir, prefix=".trainer."))
    try:
        with progress_bars(progress):
            # A fresh adapter's random init must not depend on what ran before in the process,
            # so that runs with 1 and N processes start from the same weights.
            set_seed(settings.seed)
            trainer = build(model, tokenizer, rows, settings, work, progress)
            seconds = _train(trainer, progress)
            adapter_dir, merged_dir = export_trained(trainer, tokenizer, out_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    steps = step_log(trainer.state.log_history)
    log_path = out_dir / "train_log.json"
    result = TrainResult(
        kind=kind,
        out_dir=out_dir,
        merged_dir=merged_dir,
        adapter_dir=adapter_dir,
        log_path=log_path,
        loss_history=[float(e["loss"]) for e in steps],
        steps=int(trainer.state.global_step),
        seconds=round(seconds, 3),
        n_rows=len(trainer.train_dataset),
    )
    if is_main_process(trainer):
        write_json(
            log_path,
            {
                **result.model_dump(mode="json", exclude={"loss_history"}),
                "settings": settings.model_dump(mode="json"),
                "device": str(trainer.args.device),
                "bf16": bool(trainer.args.bf16),
                "world_size": int(trainer.accelerator.num_processes),
                "distributed_type": str(trainer.accelerator.distributed_type).split(".")[-1],
                "log": steps,
            },
        )
    barrier(trainer)
    return result

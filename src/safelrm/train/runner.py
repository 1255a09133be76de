"""The loop shared by SFT and DPO: build the trainer, train (resuming from the last checkpoint of
an interrupted run), save outputs and the step log."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from safelrm.errors import SafelrmError
from safelrm.io import read_json, write_json
from safelrm.train.config import TrainResult
from safelrm.train.export import step_log

log = logging.getLogger(__name__)
CHECKPOINTS = "checkpoints"


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


def _train(trainer: Any, progress: bool, resume: str | None) -> float:
    if not progress:
        from transformers import PrinterCallback

        trainer.remove_callback(PrinterCallback)  # disable_tqdm adds it; it prints every log
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=resume)
    return time.perf_counter() - start


def last_checkpoint(folder: Path) -> Path | None:
    """The newest complete ``checkpoint-N`` in ``folder`` (Trainer writes trainer_state.json last,
    so a checkpoint cut short by a kill has none and is passed over)."""
    found = []
    for d in folder.glob("checkpoint-*") if folder.is_dir() else []:
        step = d.name.split("-", 1)[1]
        if step.isdigit() and _readable_json(d / "trainer_state.json"):
            found.append((int(step), d))
    return max(found)[1] if found else None


def _readable_json(path: Path) -> bool:
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return True


def _fingerprint(model: Any, rows: list[dict[str, Any]], settings: Any) -> str:
    """What a checkpoint was made from: the starting model, the rows and the training math
    (settings that only say where to write or log are left out)."""
    where = {"save_strategy", "save_steps", "save_total_limit", "resume_from_checkpoint"}
    where |= {"report_to", "logging_dir"}
    payload = {
        "model": str(getattr(model, "name_or_path", "")),
        "rows": rows,
        "settings": settings.model_dump(mode="json", exclude=where),
    }
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _resume_point(
    ckpt_dir: Path, settings: Any, fingerprint: str, resumable: bool, main: bool
) -> str | None:
    """The checkpoint to resume from, or None; a folder left by other data or settings is
    cleared (by the main process) so that nothing stale is resumed."""
    wanted = settings.resume_from_checkpoint
    if isinstance(wanted, str):
        if not (Path(wanted) / "trainer_state.json").is_file():
            raise SafelrmError(f"resume_from_checkpoint: {wanted}: not a checkpoint folder")
        return wanted
    stamp = ckpt_dir / "run.json"
    same = stamp.is_file() and read_json(stamp).get("fingerprint") == fingerprint
    last = last_checkpoint(ckpt_dir) if same and wanted and resumable else None
    if main:
        if last is None and ckpt_dir.exists():
            shutil.rmtree(ckpt_dir)
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        write_json(stamp, {"fingerprint": fingerprint})
    if last is not None:
        log.warning("resuming from %s", last)
    return str(last) if last is not None else None


def _log_to(trainer: Any, log_dir: Path) -> None:
    """Point TensorBoard at ``log_dir`` (transformers 5 has no ``logging_dir`` argument)."""
    for cb in trainer.callback_handler.callbacks:
        if type(cb).__name__ == "TensorBoardCallback":
            cb.logging_dir = str(log_dir)


def run_training(
    kind: Literal["sft", "dpo"],
    build: Callable[..., Any],
    model: Any,
    tokenizer: Any,
    rows: list[dict[str, Any]],
    settings: Any,
    out_dir: Path,
    progress: bool,
    resumable: bool = True,
) -> TrainResult:
    """Build the trainer with ``build``, train, write outputs and ``train_log.json``.

    The trainer writes checkpoints into ``out_dir/checkpoints``; a rerun after a kill resumes
    from the last complete one when the model, rows and settings are the same (``resumable``
    False: always start over, for trainers whose checkpoints miss state). The folder is removed
    once the outputs are written. Under ``accelerate launch`` every rank trains and returns the
    same result; only the main process writes (see ``safelrm.train.distributed``).
    """
    from transformers import set_seed

    from safelrm.train.distributed import barrier, export_trained, is_main_process

    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_dir = out_dir / CHECKPOINTS
    fingerprint = _fingerprint(model, rows, settings)
    barrier()  # every process has looked at the checkpoints before the main one clears them
    resume = _resume_point(ckpt_dir, settings, fingerprint, resumable, is_main_process())
    barrier()
    with progress_bars(progress):
        # A fresh adapter's random init must not depend on what ran before in the process,
        # so that runs with 1 and N processes start from the same weights.
        set_seed(settings.seed)
        trainer = build(model, tokenizer, rows, settings, ckpt_dir, progress)
        _log_to(trainer, settings.log_dir(out_dir))
        seconds = _train(trainer, progress, resume)
        adapter_dir, merged_dir = export_trained(trainer, tokenizer, out_dir)
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
                "resumed_from": resume,
                "trl_config": json.loads(trainer.args.to_json_string()),
                "device": str(trainer.args.device),
                "bf16": bool(trainer.args.bf16),
                "world_size": int(trainer.accelerator.num_processes),
                "distributed_type": str(trainer.accelerator.distributed_type).split(".")[-1],
                "log": steps,
            },
        )
        shutil.rmtree(ckpt_dir, ignore_errors=True)  # resume state, not needed once exported
    barrier(trainer)
    return result

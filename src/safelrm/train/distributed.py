"""Training under ``accelerate launch`` / ``torchrun``: DDP, DeepSpeed ZeRO-2/3, FSDP.

TRL's trainers are accelerate-aware: launched with several processes they shard the batches,
all-reduce the gradients and average the logged loss over the processes. What a multi-process run
must do once is the export, and that is here. Every rank trains; at a barrier, sharded weights
(ZeRO-3, FSDP) are gathered by a collective call that every rank joins; only the main process
writes ``adapter/``, ``merged/`` and ``train_log.json`` (each atomically); a second barrier keeps
the other ranks from going on before those exist. Single-process runs take the same path, where
the barriers do nothing.

Entry point (configs in ``configs/accelerate/``; the commands are in ``docs/scaling.md``)::

    accelerate launch --config_file configs/accelerate/ddp.yaml -m safelrm.train.distributed \\
        sft --model MODEL --data rows.jsonl --out runs/sft --set per_device_train_batch_size=4
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import typer

from safelrm.errors import SafelrmError
from safelrm.train.export import _is_peft, save_outputs

RESULT_FILE = "distributed.json"


def launch_env() -> tuple[int, int, int]:
    """``(world_size, rank, local_rank)`` as set by ``accelerate launch``/``torchrun`` (1, 0, 0
    when not launched)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    return world, rank, int(os.environ.get("LOCAL_RANK", str(rank)))


def bind_local_device() -> None:
    """Make ``cuda:LOCAL_RANK`` the current GPU under a multi-process launch.

    ``load_model`` places weights on ``"cuda"``, the current device: without this every rank would
    load its copy onto GPU 0 before the Trainer moves it (8 copies of an 8B model on one GPU).
    """
    world, _, local_rank = launch_env()
    if world <= 1:
        return
    import torch

    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)


def training_device() -> str | None:
    """Where a training process loads its model: ``cuda:LOCAL_RANK`` under a multi-process launch
    with CUDA (made the current device as well), else None (``load_model``'s default)."""
    world, _, local_rank = launch_env()
    if world <= 1:
        return None
    import torch

    if not torch.cuda.is_available():
        return None
    bind_local_device()
    return f"cuda:{local_rank}"


def is_main_process(trainer: Any = None) -> bool:
    """Whether this process writes shared files: the trainer's main process or, without a
    trainer, global rank 0 of the launch (``RANK``; a single process is rank 0)."""
    if trainer is not None:
        return bool(trainer.accelerator.is_main_process)
    return launch_env()[1] == 0


def barrier(trainer: Any = None) -> None:
    """Wait for every process: the trainer's or, without a trainer, those of the launch.

    Without a trainer, a single process returns at once; under a launcher (``WORLD_SIZE`` > 1)
    this joins accelerate's process group first if none exists yet (the Trainer reuses it).
    """
    if trainer is not None:
        trainer.accelerator.wait_for_everyone()
        return
    if launch_env()[0] <= 1:
        return
    from datetime import timedelta

    import torch
    from accelerate import PartialState

    # The Trainer's default ddp_timeout, so that a long stage on one rank does not time out.
    state = PartialState(cpu=not torch.cuda.is_available(), timeout=timedelta(seconds=1800))
    state.wait_for_everyone()


def shards_weights(accelerator: Any) -> bool:
    """Whether a rank holds only a shard of the weights (ZeRO-3, FSDP): export must gather."""
    from accelerate.utils import DistributedType

    kind = accelerator.distributed_type
    if kind == DistributedType.FSDP:
        return True
    if kind == DistributedType.DEEPSPEED:
        return int(accelerator.state.deepspeed_plugin.zero_stage) == 3
    return False


def rebuild_from_state_dict(template: Any, state: dict[str, Any]) -> Any:
    """A CPU model of ``template``'s architecture (PEFT wrapper included) holding ``state``.

    Used on the main process after a gather: the sharded ``template`` itself cannot be merged or
    saved. The copy is allocated without random initialisation (it is overwritten anyway); a key
    absent from ``state`` is accepted only when its tensor is tied to one that was loaded.
    """
    import torch
    from transformers import AutoModelForCausalLM

    peft = _is_peft(template)
    base = template.get_base_model() if peft else template
    floats = [v.dtype for v in state.values() if torch.is_tensor(v) and v.is_floating_point()]
    dtype = floats[0] if floats else torch.float32
    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # older transformers: initialise, then overwrite
        from contextlib import nullcontext as no_init_weights
    with no_init_weights():
        fresh = AutoModelForCausalLM.from_config(base.config, dtype=dtype)
    fresh.tie_weights()  # skipped along with the initialisation
    if peft:
        from peft import get_peft_model

        fresh = get_peft_model(fresh, template.peft_config[template.active_adapter])
    result = fresh.load_state_dict(state, strict=False)
    if result.unexpected_keys:
        raise SafelrmError(
            f"gathered weights do not fit the model: unexpected key {result.unexpected_keys[0]}"
        )
    params = dict(fresh.named_parameters(remove_duplicate=False))
    loaded = {params[k].data_ptr() for k in state if k in params}
    untied = [
        k for k in result.missing_keys if k not in params or params[k].data_ptr() not in loaded
    ]
    if untied:
        raise SafelrmError(f"gathered weights do not fit the model: missing key {untied[0]}")
    return fresh


def model_for_export(trainer: Any) -> Any | None:
    """The trained model as one full copy on the main process; None on the other ranks.

    Every rank must call this: with sharded weights the gather is a collective operation.
    """
    acc = trainer.accelerator
    template = acc.unwrap_model(trainer.model)
    if shards_weights(acc):
        state = acc.get_state_dict(trainer.model_wrapped)
        return rebuild_from_state_dict(template, state) if acc.is_main_process else None
    return template if acc.is_main_process else None


def export_trained(trainer: Any, tokenizer: Any, out_dir: Path) -> tuple[Path | None, Path]:
    """Write ``adapter/`` (LoRA) and ``merged/`` from the main process; every rank returns the
    paths once they exist."""
    acc = trainer.accelerator
    template = acc.unwrap_model(trainer.model)
    adapter_dir = out_dir / "adapter" if _is_peft(template) else None
    merged_dir = out_dir / "merged"
    barrier(trainer)  # all ranks finished their last step before weights are gathered and read
    model = model_for_export(trainer)
    if model is not None:
        model.eval()
        adapter_dir, merged_dir = save_outputs(model, tokenizer, out_dir)
    barrier(trainer)
    return adapter_dir, merged_dir


# ---------------------------------------------------------------------------------------------
# Command line: `python -m safelrm.train.distributed sft|dpo ...`, run by a launcher (or alone).

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="SFT / DPO on JSONL rows, one process per device under `accelerate launch`.",
)
MODEL = typer.Option("default", "--model", "-m", help="Model folder, .gguf file or 'default'.")
DATA = typer.Option(
    ..., "--data", "-d", help="Rows: JSONL/parquet/CSV file, dataset folder or hub id."
)
OUT = typer.Option(..., "--out", "-o", help="Output folder (adapter/, merged/, train_log.json).")
ROWS = typer.Option(None, "--rows", "-n", help="Train on the first N rows only.")
CONFIG = typer.Option(None, "--config", "-c", help="YAML file of settings.")
SET = typer.Option(None, "--set", help="Setting override KEY=VALUE, dotted for nesting (lora.r=8).")


def launch_training(
    kind: str,
    model: str,
    data: Path,
    out: Path,
    rows: int | None = None,
    config: Path | None = None,
    sets: list[str] | None = None,
) -> dict[str, Any]:
    """Train on this process's share; the main process writes ``out/distributed.json``."""
    from rich.console import Console

    from safelrm.io import write_json
    from safelrm.train import DPOSettings, SFTSettings, train_dpo, train_sft
    from safelrm.train.cli import settings_from
    from safelrm.train.dataset import load_rows

    bind_local_device()
    settings = settings_from(SFTSettings if kind == "sft" else DPOSettings, config, sets)
    train_rows = load_rows(str(data))[:rows]
    train = train_sft if kind == "sft" else train_dpo
    world, rank, _ = launch_env()
    result = train(model, None, train_rows, settings, out, progress=rank == 0)
    summary = {
        "kind": kind,
        "world_size": world,
        "per_device_train_batch_size": settings.per_device_train_batch_size,
        "gradient_accumulation_steps": settings.gradient_accumulation_steps,
        "global_batch_size": settings.per_device_train_batch_size
        * settings.gradient_accumulation_steps
        * world,
        "steps": result.steps,
        "seconds": result.seconds,
        "n_rows": result.n_rows,
        "loss_history": result.loss_history,
        "merged_dir": str(result.merged_dir),
    }
    if rank == 0:
        write_json(out / RESULT_FILE, summary)
        losses = result.loss_history
        Console().print(
            f"{kind}: {world} process(es), global batch {summary['global_batch_size']}, "
            f"{result.steps} steps in {result.seconds:.1f} s"
            + (f"; loss {losses[0]:.4f} -> {losses[-1]:.4f}" if losses else "")
        )
    return summary


@app.command()
def sft(
    data: Path = DATA,
    out: Path = OUT,
    model: str = MODEL,
    rows: int = ROWS,
    config: Path = CONFIG,
    sets: list[str] = SET,
) -> None:
    """Supervised fine-tuning on {"prompt", "completion"} rows."""
    launch_training("sft", model, data, out, rows, config, sets)


@app.command()
def dpo(
    data: Path = DATA,
    out: Path = OUT,
    model: str = MODEL,
    rows: int = ROWS,
    config: Path = CONFIG,
    sets: list[str] = SET,
) -> None:
    """Preference training on {"prompt", "chosen", "rejected"} rows."""
    launch_training("dpo", model, data, out, rows, config, sets)


@app.command()
def check(
    sft_data: Path = typer.Option(..., "--sft-data", help="JSONL SFT rows."),
    dpo_data: Path = typer.Option(..., "--dpo-data", help="JSONL DPO rows."),
    out: Path = OUT,
    model: str = MODEL,
    rows: int = ROWS,
    sets: list[str] = SET,
) -> None:
    """Smoke-check a launch config: SFT then DPO (same --set for both) in one launch, into
    OUT/sft and OUT/dpo. Compare their distributed.json with a 1-process run of the same
    global batch: the loss curves should agree to float precision."""
    launch_training("sft", model, sft_data, out / "sft", rows, None, sets)
    launch_training("dpo", model, dpo_data, out / "dpo", rows, None, sets)


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        app()
    except SafelrmError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)


if __name__ == "__main__":
    main()

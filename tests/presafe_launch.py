"""PreSafe training under `accelerate launch` (used by tests/test_presafe_head.py; not a test).

Usage: accelerate launch ... tests/presafe_launch.py MODEL_DIR ROWS_JSONL OUT_DIR SETTINGS_JSON
Every rank saves its own trainer's head to OUT_DIR/head_rank{RANK}.pt, so that the test can check
that the ranks agree; the main process also writes OUT_DIR/result.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> None:
    import torch

    from safelrm.io import read_jsonl, write_json
    from safelrm.methods.presafe import trainer as presafe_trainer
    from safelrm.methods.presafe.config import HeadSettings
    from safelrm.methods.presafe.trainer import train_presafe
    from safelrm.train import SFTSettings
    from safelrm.train.distributed import launch_env

    model_dir, rows_path, out, settings = sys.argv[1:5]
    torch.set_num_threads(1)
    cfg = json.loads(settings)
    built = []
    build = presafe_trainer.build_presafe_trainer

    def keep(*args, **kwargs):
        built.append(build(*args, **kwargs))
        return built[-1]

    presafe_trainer.build_presafe_trainer = keep  # to read this rank's own head afterwards
    result, _ = train_presafe(
        model_dir,
        None,
        read_jsonl(Path(rows_path)),
        SFTSettings(**cfg["train"]),
        HeadSettings(**cfg["head"]),
        Path(out),
        progress=False,
    )
    world, rank, _ = launch_env()
    own = {k: v.detach().cpu() for k, v in built[0].head.state_dict().items()}
    torch.save(own, Path(out) / f"head_rank{rank}.pt")
    if rank == 0:
        write_json(
            Path(out) / "result.json",
            {"world_size": world, "loss_history": result.loss_history, "steps": result.steps},
        )


if __name__ == "__main__":
    main()

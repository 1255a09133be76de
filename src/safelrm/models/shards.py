"""Sharded generation: requests split across processes by a stable hash of their id.

Each shard writes its own resumable store ``records.shard-I-of-N.jsonl``; merging checks that every
expected key is present exactly once and writes ``records.jsonl`` atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

from safelrm.errors import SafelrmError
from safelrm.io import write_jsonl

T = TypeVar("T")


def shard_of(request_id: str, n_shards: int) -> int:
    digest = hashlib.sha256(request_id.encode()).digest()
    return int.from_bytes(digest[:8], "little") % n_shards


def select_shard(items: Sequence[T], ids: Sequence[str], n_shards: int, shard_id: int) -> list[T]:
    if not 0 <= shard_id < n_shards:
        raise SafelrmError(f"--shard-id {shard_id} is out of range for --shards {n_shards}")
    return [x for x, i in zip(items, ids, strict=True) if shard_of(i, n_shards) == shard_id]


def shard_path(out_dir: Path, n_shards: int, shard_id: int) -> Path:
    return out_dir / f"records.shard-{shard_id}-of-{n_shards}.jsonl"


def launched_shard() -> tuple[int, int] | None:
    """``(n_processes, process_index)`` under ``accelerate launch``/``torchrun``, else None."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    return world, int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")))


def merge_shards(out_dir: Path, n_shards: int, expected_keys: Sequence[str]) -> Path:
    """Merge shard stores into ``records.jsonl`` in ``expected_keys`` order; a missing shard or key
    is an error naming it, and duplicates across shards are dropped (first wins)."""
    by_key: dict[str, dict] = {}
    for i in range(n_shards):
        path = shard_path(out_dir, n_shards, i)
        if not path.is_file():
            raise SafelrmError(f"{path}: shard {i} of {n_shards} has not run yet")
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                rec = json.loads(line)
                by_key.setdefault(rec["key"], rec)
    missing = [k for k in expected_keys if k not in by_key]
    if missing:
        raise SafelrmError(
            f"{out_dir}: {len(missing)} records missing from the shards (first: {missing[0]}); "
            "rerun the unfinished shards"
        )
    target = out_dir / "records.jsonl"
    write_jsonl(target, [by_key[k] for k in expected_keys])
    return target

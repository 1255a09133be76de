"""Resumable stage output: JSONL records appended and fsynced in batches, keyed by ``key``.

A run killed at any point (SIGKILL included) leaves at most one partial last line; reopening the
store cuts it off, so a rerun that skips finished keys ends with exactly one record per key.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from safelrm.errors import SafelrmError
from safelrm.io import read_json, write_atomic, write_json


class RecordStore:
    def __init__(self, path: str | Path, fingerprint: dict[str, Any] | None = None) -> None:
        """Open (or create) ``path``. With ``fingerprint``, a store made with other settings is
        refused instead of silently mixing records from two configurations."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if fingerprint is not None:
            self._check_fingerprint(fingerprint)
        self._repair_tail()
        self._records: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            with self.path.open(encoding="utf-8") as f:
                for n, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError:
                        raise SafelrmError(f"{self.path}:{n}: corrupt record line") from None
                    self._records.setdefault(rec["key"], rec)

    def _check_fingerprint(self, fingerprint: dict[str, Any]) -> None:
        meta = self.path.with_suffix(".meta.json")
        normal = json.loads(json.dumps(fingerprint, default=str))
        if meta.exists():
            old = read_json(meta)
            diff = sorted(k for k in set(old) | set(normal) if old.get(k) != normal.get(k))
            if diff and self.path.exists() and self.path.stat().st_size > 0:
                raise SafelrmError(
                    f"{self.path}: made with other settings ({', '.join(diff)} differ); "
                    "use a new output folder or delete it to start over"
                )
        write_json(meta, normal)

    def _repair_tail(self) -> None:
        if not self.path.exists():
            return
        with self.path.open("r+b") as f:
            data = f.read()
            if data and not data.endswith(b"\n"):
                f.truncate(data.rfind(b"\n") + 1)

    def __contains__(self, key: str) -> bool:
        return key in self._records

    def __len__(self) -> int:
        return len(self._records)

    def keys(self) -> set[str]:
        return set(self._records)

    def get(self, key: str) -> dict[str, Any] | None:
        return self._records.get(key)

    def records(self) -> list[dict[str, Any]]:
        return list(self._records.values())

    def discard(self, keys: Iterable[str]) -> None:
        """Drop records (stale or failed ones about to be regenerated); the file is rewritten
        atomically, so a kill leaves either the old or the new file."""
        keys = set(keys) & set(self._records)
        if not keys:
            return
        for key in keys:
            del self._records[key]
        write_atomic(self.path, "".join(_line(r) for r in self._records.values()))

    def append(self, records: Iterable[dict[str, Any]]) -> None:
        new = [r for r in records if r["key"] not in self._records]
        if not new:
            return
        text = "".join(_line(r) for r in new)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        for r in new:
            self._records[r["key"]] = r


def _line(record: dict[str, Any]) -> str:
    """One JSONL line, UTF-8 as is; a text no UTF-8 can hold (a lone surrogate from a bad
    prompt) is written with JSON escapes instead, which read back the same."""
    line = json.dumps(record, ensure_ascii=False, default=str) + "\n"
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        line = json.dumps(record, default=str) + "\n"
    return line

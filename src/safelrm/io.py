"""Atomic file writes and JSONL helpers shared by every stage."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from safelrm.errors import SafelrmError, where


def write_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see either the old or the new file, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, obj: Any) -> None:
    write_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise SafelrmError(f"{path}: not UTF-8 text (expected JSON)") from None
    except FileNotFoundError:
        raise SafelrmError(f"{path}: file not found") from None
    except json.JSONDecodeError as e:
        raise SafelrmError(f"{where(path, e.lineno)}: invalid JSON ({e.msg})") from None


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line; a bad line is a SafelrmError."""
    path = Path(path)
    try:
        f = path.open(encoding="utf-8")
    except FileNotFoundError:
        raise SafelrmError(f"{path}: file not found") from None
    with f:
        for n, line in _numbered_lines(f, path):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise SafelrmError(f"{where(path, n)}: malformed JSON ({e.msg})") from None
            if not isinstance(obj, dict):
                raise SafelrmError(f"{where(path, n)}: expected a JSON object per line")
            yield n, obj


def _numbered_lines(f: Any, path: Path) -> Iterator[tuple[int, str]]:
    n = 0
    while True:
        try:
            line = f.readline()
        except UnicodeDecodeError:
            raise SafelrmError(
                f"{where(path, n + 1)}: not UTF-8 text (expected one JSON object per line)"
            ) from None
        if not line:
            return
        n += 1
        yield n, line


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    return [obj for _, obj in iter_jsonl(path)]


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    """Write all rows at once, atomically."""
    text = "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows)
    write_atomic(path, text)

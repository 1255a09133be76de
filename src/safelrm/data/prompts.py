"""Read a user's prompt file (for ``safelrm generate`` and ``load_prompts``) into ``PromptRecord``s.

Formats, by suffix: ``.jsonl`` (one object per line), ``.json`` (a list of objects, or JSONL),
``.csv``/``.tsv`` (a header row; the prompt column matches in any case), anything else plain
text with one prompt per line. A JSON row is a full ``PromptRecord`` (it has ``id``, ``text`` and
``kind``), or has ``messages`` (a chat), or ``prompt``/``text``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

from pydantic import ValidationError

from safelrm.data.records import Kind, PromptRecord
from safelrm.data.tables import Table, lower_keys, read_table
from safelrm.errors import SafelrmError, where

_TEXT_COLUMNS = ("prompt", "text")
_RECORD_FIELDS = {"id", "text", "kind"}

# each record with the line it came from, for the duplicate-id message
Located = list[tuple[PromptRecord, int | None]]


def load_prompt_file(
    path: str | Path, column: str | None = None, kind: str = "general"
) -> list[PromptRecord]:
    """Prompts from ``path``; ids are the file's ``id`` values, else ``<stem>-<row index>``.

    ``column`` names the CSV/TSV prompt column (default ``prompt``, then ``text``). ``kind`` is
    given to rows that carry no ``kind`` of their own.
    """
    path = Path(path)
    if not path.is_file():
        raise SafelrmError(f"{path}: prompts file not found")
    if kind not in get_args(Kind):
        raise SafelrmError(f"unknown prompt kind '{kind}'; known: {', '.join(get_args(Kind))}")
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        records = _from_csv(path, column, kind)
    elif suffix in (".jsonl", ".json"):
        records = _from_json(path, kind)
    else:
        records = _from_text(path, kind)
    seen: set[str] = set()
    for record, line in records:
        if record.id in seen:
            raise SafelrmError(f"{where(path, line, 'id')}: duplicate id '{record.id}'")
        seen.add(record.id)
    return [record for record, _ in records]


def _from_json(path: Path, kind: str) -> Located:
    table = _read_json_rows(path)
    out: Located = []
    for i, line, row in table.items():
        if _RECORD_FIELDS <= set(row):
            fields = {**row, "id": str(row["id"])}
        else:
            fields = _json_prompt_row(table, i, line, row, kind)
        out.append((_validate(table, i, line, fields), line))
    return out


def _read_json_rows(path: Path) -> Table:
    """``.json`` holds a list of objects or, as often written, one object per line."""
    if path.suffix.lower() == ".json" and path.read_bytes().lstrip()[:1] == b"[":
        return read_table(path)
    from safelrm.io import iter_jsonl

    pairs = list(iter_jsonl(path))
    return Table(str(path), [lower_keys(o) for _, o in pairs], [n for n, _ in pairs])


def _json_prompt_row(
    table: Table, i: int, line: int | None, row: dict[str, Any], kind: str
) -> dict[str, Any]:
    messages = row.get("messages")
    if messages is not None:
        text = _last_user_turn(table, i, line, messages)
    else:
        field = next((c for c in _TEXT_COLUMNS if c in row), "prompt")
        text = row.get(field)
        if not isinstance(text, str) or not text.strip():
            raise SafelrmError(
                f"{_loc(table, i, line, field)}: missing or empty "
                "(need 'prompt', 'text' or 'messages')"
            )
    return {
        "id": _row_id(row, Path(table.source), i),
        "text": text,
        "kind": row.get("kind") or kind,
        "category": row.get("category"),
        "reference": row.get("reference"),
        "messages": messages,
        "source": Path(table.source).stem,
    }


def _last_user_turn(table: Table, i: int, line: int | None, messages: Any) -> str:
    if not (
        isinstance(messages, list)
        and messages
        and all(
            isinstance(m, dict)
            and isinstance(m.get("role"), str)
            and isinstance(m.get("content"), str)
            for m in messages
        )
    ):
        raise SafelrmError(
            f"{_loc(table, i, line, 'messages')}: expected a list of {{role, content}}"
        )
    text = next((m["content"] for m in reversed(messages) if m["role"] == "user"), None)
    if text is None:
        raise SafelrmError(f"{_loc(table, i, line, 'messages')}: no user turn")
    return text


def _from_csv(path: Path, column: str | None, kind: str) -> Located:
    table = read_table(path)
    if column is None:
        name = next((c for c in _TEXT_COLUMNS if c in table.columns), "prompt")
    else:
        name = column.strip().lower()
    shown = column or name
    if name not in table.columns:
        raise SafelrmError(
            f"{where(path, 1, shown)}: column not found "
            f"(columns: {', '.join(sorted(table.columns))})"
        )
    out: Located = []
    for i, line, row in table.items():
        text = row.get(name)
        if text is None or not text.strip():
            raise SafelrmError(f"{table.where(line, shown)}: empty prompt")
        fields = {
            "id": _row_id(row, path, i, "id", "index"),
            "text": text,
            # an empty cell means "not given" in a CSV
            "kind": row.get("kind") or kind,
            "category": row.get("category") or None,
            "reference": row.get("reference") or None,
            "source": path.stem,
        }
        out.append((_validate(table, i, line, fields), line))
    return out


def _from_text(path: Path, kind: str) -> Located:
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError:
        raise SafelrmError(
            f"{path}: not a UTF-8 text file (prompt files are .jsonl, .json, .csv, .tsv or text)"
        ) from None
    numbered = [(n, line.strip()) for n, line in enumerate(lines, 1) if line.strip()]
    return [
        (
            PromptRecord.model_validate(
                {"id": f"{path.stem}-{i}", "text": text, "kind": kind, "source": path.stem}
            ),
            n,
        )
        for i, (n, text) in enumerate(numbered)
    ]


def _row_id(row: dict[str, Any], path: Path, index: int, *keys: str) -> str:
    for key in keys or ("id",):
        if row.get(key) not in (None, ""):
            return str(row[key])
    return f"{path.stem}-{index}"


def _loc(table: Table, i: int, line: int | None, field: str | None = None) -> str:
    """``file:line field 'x'``; rows of a JSON list have no line, so name their index."""
    if line is not None:
        return table.where(line, field)
    return where(table.source, field=f"[{i}].{field}" if field else f"[{i}]")


def _validate(table: Table, i: int, line: int | None, fields: dict[str, Any]) -> PromptRecord:
    """A ``PromptRecord``, or a one-line error naming the first bad field."""
    try:
        return PromptRecord.model_validate(fields)
    except ValidationError as e:
        first = e.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or None
        raise SafelrmError(
            f"{_loc(table, i, line, field)}: not a prompt record ({first['msg']})"
        ) from None

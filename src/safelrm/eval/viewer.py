"""``safelrm view DIR``: one static HTML file to browse an eval or a compare run.

The page (``viewer.html`` beside this module: inline CSS and JS, no network) embeds the rows as
JSON and renders one page of prompts at a time, so it stays quick with 10,000 rows. Filters: set,
model, judge, verdict, disagreement between judges or between models, and free text; they are
kept in the URL fragment (``view.html#set=advbench&verdict=@harmful``), so a filtered view can be
bookmarked or shared. Each prompt shows every model's reasoning, ``<safe>`` block and answer side
by side, with every judge's verdicts.

Folders it reads: a ``safelrm compare`` folder (``compare.json`` names the model subfolders), an
eval folder (``rows.jsonl`` and ``records.jsonl``), or a folder whose subfolders are eval folders
(``safelrm eval --cot on,off``, a method's eval stage).
"""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

from safelrm.errors import SafelrmError
from safelrm.io import read_json, read_jsonl, write_atomic

VIEW_FILE = "view.html"
_SAFE_BLOCK = re.compile(r"<safe>.*?(?:</safe>|\Z)", re.DOTALL)


def split_safe(text: str) -> tuple[str, str]:
    """``text`` without its ``<safe>`` blocks, and the blocks (an unclosed one runs to the end)."""
    blocks = _SAFE_BLOCK.findall(text)
    return (_SAFE_BLOCK.sub("", text).strip(), "\n".join(b.strip() for b in blocks))


def find_models(folder: Path) -> list[tuple[str, Path]]:
    """(label, eval folder) of every model under ``folder``."""
    compare = folder / "compare.json"
    if compare.is_file():
        return [(m["label"], folder / m["folder"]) for m in read_json(compare)["models"]]
    if (folder / "rows.jsonl").is_file():
        return [(folder.resolve().name or "model", folder)]
    subs = sorted(p for p in folder.iterdir() if (p / "rows.jsonl").is_file())
    if not subs:
        raise SafelrmError(
            f"{folder}: no rows.jsonl here or in its subfolders "
            "(run `safelrm eval` or `safelrm compare` there first)"
        )
    return [(p.name, p) for p in subs]


def _prompt_text(record: dict[str, Any]) -> str:
    messages = record.get("messages") or []
    if len(messages) == 1:
        text = str(messages[0].get("content", ""))
    else:
        text = "\n\n".join(f"[{m.get('role')}] {m.get('content', '')}" for m in messages)
    if record.get("prefix"):
        text += f"\n\n[assistant prefill] {record['prefix']}"
    return text


def _prompts_by_id(folder: Path) -> dict[str, str]:
    path = folder / "records.jsonl"
    if not path.is_file():
        return {}
    return {r["id"]: _prompt_text(r) for r in read_jsonl(path) if r.get("sample", 0) == 0}


def _model_row(row: dict[str, Any]) -> dict[str, Any]:
    reasoning, safe_r = split_safe(row.get("reasoning", ""))
    answer, safe_a = split_safe(row.get("answer", ""))
    verdicts = {
        judge: {part: v.get("label") for part, v in parts.items()}
        for judge, parts in (row.get("verdicts") or {}).items()
    }
    return {
        "r": reasoning,
        "s": "\n".join(x for x in (safe_r, safe_a) if x),
        "a": answer,
        "v": verdicts,
        "m": row.get("math_correct"),
        "t": row.get("n_reasoning_tokens", 0),
    }


def build_view_data(folder: str | Path, title: str | None = None) -> dict[str, Any]:
    """The page's data: models, judges, sets, verdict labels and one entry per prompt with each
    model's row (``r`` reasoning, ``s`` ``<safe>`` block, ``a`` answer, ``v`` verdicts by judge
    and part, ``m`` math correct, ``t`` reasoning tokens)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SafelrmError(f"{folder}: not a folder")
    models = find_models(folder)
    prompts: dict[str, dict[str, Any]] = {}
    judges: list[str] = []
    labels: set[str] = set()
    for label, sub in models:
        rows_path = sub / "rows.jsonl"
        if not rows_path.is_file():
            raise SafelrmError(f"{rows_path}: missing (model '{label}' was not evaluated)")
        texts = _prompts_by_id(sub)
        for row in read_jsonl(rows_path):
            entry = prompts.setdefault(
                row["id"],
                {
                    "id": row["id"],
                    "set": row.get("benchmark", ""),
                    "kind": row.get("kind", ""),
                    "category": row.get("category"),
                    "prompt": texts.get(row["id"], ""),
                    "by": {},
                },
            )
            if not entry["prompt"]:
                entry["prompt"] = texts.get(row["id"], "")
            model_row = _model_row(row)
            entry["by"][label] = model_row
            for judge, parts in model_row["v"].items():
                if judge not in judges:
                    judges.append(judge)
                labels.update(x for x in parts.values() if x)
    return {
        "title": title or f"safelrm samples: {folder}",
        "models": [label for label, _ in models],
        "judges": judges,
        "labels": sorted(labels),
        "sets": sorted({p["set"] for p in prompts.values()}),
        "prompts": list(prompts.values()),
    }


def embed_json(data: Any) -> str:
    """JSON that is safe inside ``<script>``: no ``</script>``, ``<!--`` or line separators."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(ch, esc)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def render_html(data: dict[str, Any]) -> str:
    import html

    template = resources.files("safelrm.eval").joinpath("viewer.html").read_text("utf-8")
    return template.replace("__SAFELRM_TITLE__", html.escape(data["title"])).replace(
        "__SAFELRM_DATA__", embed_json(data)
    )


def write_view(folder: str | Path, out: str | Path | None = None, title: str | None = None) -> Path:
    """Write the viewer for ``folder`` (default ``folder/view.html``); returns its path."""
    data = build_view_data(folder, title)
    path = Path(out) if out is not None else Path(folder) / VIEW_FILE
    write_atomic(path, render_html(data))
    return path

"""Training rows from a file, a local dataset folder or a hub dataset id (``--dataset``).

Row shapes are defined in ``formats.py`` (see README.md); this module only reads rows:

- ``.jsonl``/``.json``: read line by line (errors name the line);
- ``.parquet``/``.csv``: through ``datasets`` (the packaged ``parquet``/``csv`` builders);
- a folder written by ``Dataset.save_to_disk``/``DatasetDict.save_to_disk``: ``load_from_disk``;
- any other folder (of data files) or a hub id (``org/name``): ``datasets.load_dataset``, which
  reads the local hub cache when ``HF_HUB_OFFLINE=1``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from safelrm.errors import SafelrmError

FILE_BUILDERS = {".parquet": "parquet", ".csv": "csv"}


def load_rows(spec: str | Path, split: str = "train", name: str | None = None) -> list[dict]:
    """Every row of ``split`` of the dataset ``spec`` as a plain dict."""
    path = Path(spec).expanduser()
    if path.is_file() and path.suffix in (".jsonl", ".json"):
        from safelrm.io import read_jsonl

        return read_jsonl(path)
    try:
        data = _load(path, str(spec), split, name)
    except SafelrmError:
        raise
    except Exception as e:  # datasets raises many types; the user needs the first line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SafelrmError(f"{spec}: could not read the dataset ({first})") from None
    return [dict(r) for r in data]


def _load(path: Path, spec: str, split: str, name: str | None) -> Any:
    import datasets

    if path.is_file():
        builder = FILE_BUILDERS.get(path.suffix)
        if builder is None:
            raise SafelrmError(f"{spec}: unknown file type (use .jsonl, .parquet or .csv)")
        return datasets.load_dataset(builder, data_files={split: str(path)}, split=split)
    if path.is_dir() and _saved_to_disk(path):
        data = datasets.load_from_disk(str(path))
        if isinstance(data, datasets.DatasetDict):
            if split not in data:
                raise SafelrmError(f"{spec}: no split '{split}' (splits: {', '.join(data)})")
            data = data[split]
        return data
    if not path.exists() and spec.startswith((".", "/", "~")):
        raise SafelrmError(f"{spec}: file not found")
    return datasets.load_dataset(spec, name, split=split)


def _saved_to_disk(path: Path) -> bool:
    return (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()

"""Generic tables and registries shared by the benchmark and training-set loaders.

``read_table``/``open_table`` read a local CSV/TSV/JSONL/JSON file or a hub dataset into a
``Table`` whose column names match in any case; ``Registry`` maps names to loaders.
"""

from __future__ import annotations

import csv
import inspect
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safelrm.data.paths import data_root
from safelrm.data.records import PromptRecord
from safelrm.errors import SafelrmError, where

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass
class Table:
    """Rows read from one file or hub dataset, keys lower-cased so columns match any case."""

    source: str
    rows: list[dict[str, Any]]
    lines: list[int | None] = field(default_factory=list)
    columns: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        if not self.columns:
            self.columns = {k for row in self.rows for k in row}

    def require(self, *columns: str) -> None:
        """Fail naming the file and the first missing column."""
        for col in columns:
            if col not in self.columns:
                raise SafelrmError(f"{where(self.source, field=col)}: required column is missing")

    def pick(self, *candidates: str) -> str:
        """The first of ``candidates`` present (upstream copies name a column differently)."""
        return next((c for c in candidates if c in self.columns), candidates[0])

    def items(self) -> Iterator[tuple[int, int | None, dict[str, Any]]]:
        """Yield ``(row_index, line_number, row)``."""
        for i, row in enumerate(self.rows):
            yield i, (self.lines[i] if i < len(self.lines) else None), row

    def where(self, line: int | None, column: str | None = None) -> str:
        return where(self.source, line, column)


def lower_keys(row: dict[Any, Any]) -> dict[str, Any]:
    """Column names stripped and lower-cased (a CSV may start with a byte-order mark)."""
    return {str(k).strip().lstrip("\ufeff").lower(): v for k, v in row.items() if k is not None}


def read_table(path: str | Path) -> Table:
    """Read a CSV, TSV, JSONL or JSON (list of objects) file into a ``Table``."""
    path = Path(path)
    if not path.is_file():
        raise SafelrmError(f"{path}: file not found")
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        rows, lines = [], []
        with path.open(encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ",")
            try:
                fieldnames = reader.fieldnames  # reads the header while the file is open
                for row in reader:
                    rows.append(lower_keys(row))
                    lines.append(reader.line_num)
            except UnicodeDecodeError:
                raise SafelrmError(
                    f"{where(path, reader.line_num + 1)}: not UTF-8 text (expected a CSV/TSV file)"
                ) from None
            except csv.Error as e:
                raise SafelrmError(f"{where(path, reader.line_num)}: bad CSV ({e})") from None
        if fieldnames is None:
            raise SafelrmError(f"{path}: empty file (no header row)")
        header = {str(k).strip().lstrip("\ufeff").lower() for k in fieldnames}
        return Table(str(path), rows, lines, header)
    if suffix == ".jsonl":
        from safelrm.io import iter_jsonl

        pairs = list(iter_jsonl(path))
        return Table(str(path), [lower_keys(o) for _, o in pairs], [n for n, _ in pairs])
    if suffix == ".json":
        from safelrm.io import read_json

        data = read_json(path)
        if not isinstance(data, list) or not all(isinstance(o, dict) for o in data):
            raise SafelrmError(f"{path}: expected a JSON list of objects")
        return Table(str(path), [lower_keys(o) for o in data], [])
    raise SafelrmError(f"{path}: unsupported file type '{suffix}' (use .csv, .tsv, .jsonl, .json)")


def read_hub(
    hub_id: str, *, split: str = "train", config: str | None = None, **kwargs: Any
) -> Table:
    """Read a Hugging Face dataset; offline this fails with one line asking for a local path."""
    import datasets

    try:
        ds = datasets.load_dataset(hub_id, config, split=split, **kwargs)
    except Exception as e:  # noqa: BLE001 - any hub failure means: use a local file instead
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise SafelrmError(
            f"cannot load hub dataset '{hub_id}' ({reason}); pass a local file or folder path"
        ) from None
    return Table(hub_id, [lower_keys(dict(r)) for r in ds], [])


_FILE_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl", ".parquet", ".txt")


def is_hub_id(path: str | Path) -> bool:
    """``owner/name`` that is not an existing path and does not look like a file name."""
    return (
        isinstance(path, str)
        and bool(_HUB_ID.match(path))
        and not path.lower().endswith(_FILE_SUFFIXES)
        and not Path(path).exists()
    )


def text_field(table: Table, line: int | None, row: dict[str, Any], column: str) -> str:
    """A required non-empty string cell."""
    value = row.get(column)
    if value is None or not str(value).strip():
        raise SafelrmError(f"{table.where(line, column)}: empty value")
    return str(value).strip()


def subsample(records: list[PromptRecord], n: int | None, seed: int = 0) -> list[PromptRecord]:
    """``n`` records chosen by ``seed`` (same seed, same subset), kept in their original order."""
    if n is None or n >= len(records):
        return list(records)
    if n < 0:
        raise SafelrmError(f"n must be >= 0, got {n}")
    keep = sorted(random.Random(seed).sample(range(len(records)), n))
    return [records[i] for i in keep]


def filter_categories(
    records: list[PromptRecord], categories: list[str] | None, name: str
) -> list[PromptRecord]:
    """Keep records whose category is one of ``categories`` (case-insensitive)."""
    if not categories:
        return records
    wanted = {c.strip().lower() for c in categories}
    kept = [r for r in records if r.category and r.category.strip().lower() in wanted]
    if not kept:
        known = sorted({r.category for r in records if r.category})
        raise SafelrmError(
            f"{name}: no records in categories {sorted(categories)}; known: "
            + (", ".join(known) if known else "(this set has no categories)")
        )
    return kept


def check_unique_ids(records: list[PromptRecord], source: str) -> list[PromptRecord]:
    seen: set[str] = set()
    for r in records:
        if r.id in seen:
            raise SafelrmError(f"{source}: duplicate id '{r.id}'")
        seen.add(r.id)
    return records


# ---------------------------------------------------------------- registry


Loader = Callable[..., list[PromptRecord]]


@dataclass(frozen=True)
class Dataset:
    """A named loader. ``default`` is relative to the data root; ``hub`` is the upstream hub id."""

    name: str
    default: str
    loader: Loader
    description: str = ""
    hub: str | None = None
    folder_loader: bool = False  # the loader itself reads a whole folder (artifact trees)

    def resolve(self, path: str | Path | None, root: Callable[[], Path]) -> Path | str:
        """The file (or folder, or hub id) to read."""
        if path is None:
            default = root() / self.default
            if not default.exists():
                hub = f" or the hub id '{self.hub}'" if self.hub else ""
                raise SafelrmError(
                    f"{default}: not found; {self.name} is not in the data folder, "
                    f"pass a local file or folder{hub}"
                )
            return default
        if is_hub_id(path):
            return str(path)
        p = Path(path)
        if p.is_dir() and not self.folder_loader:
            for candidate in (p / self.default, p / Path(self.default).name):
                if candidate.is_file():
                    return candidate
            raise SafelrmError(
                f"{p}: no '{Path(self.default).name}' in this folder for {self.name}"
            )
        if not p.exists():
            raise SafelrmError(f"{p}: file not found")
        return p


class Registry:
    """Loaders by name, for benchmarks and for training sets."""

    def __init__(self, what: str, subdir: str = "") -> None:
        self.what = what
        self.subdir = subdir  # below data_root()
        self._items: dict[str, Dataset] = {}

    def register(
        self,
        name: str,
        default: str,
        *,
        description: str = "",
        hub: str | None = None,
        folder_loader: bool = False,
    ) -> Callable[[Loader], Loader]:
        def wrap(fn: Loader) -> Loader:
            if name in self._items:
                raise ValueError(f"{self.what} '{name}' registered twice")
            self._items[name] = Dataset(name, default, fn, description, hub, folder_loader)
            return fn

        return wrap

    def get(self, name: str) -> Dataset:
        try:
            return self._items[name]
        except KeyError:
            raise SafelrmError(
                f"unknown {self.what} '{name}'; known: {', '.join(sorted(self._items))}"
            ) from None

    def root(self) -> Path:
        root = data_root()
        assert root is not None  # data_root(required=True) raises instead
        return root / self.subdir if self.subdir else root

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def load(
        self,
        name: str,
        path: str | Path | None,
        *,
        n: int | None,
        seed: int,
        categories: list[str] | None,
        options: dict[str, Any],
    ) -> list[PromptRecord]:
        ds = self.get(name)
        accepted = list(inspect.signature(ds.loader).parameters)[1:]
        unknown = sorted(set(options) - set(accepted))
        if unknown:
            raise SafelrmError(
                f"{name}: unknown option(s) {unknown}; accepted: {', '.join(accepted) or 'none'}"
            )
        source = ds.resolve(path, self.root)
        records = ds.loader(source, **options)
        check_unique_ids(records, str(source))
        records = filter_categories(records, categories, name)
        return subsample(records, n, seed)


def open_table(
    source: Path | str, *, split: str = "train", config: str | None = None, **hub_kwargs: Any
) -> Table:
    """A local file, or a hub dataset when ``source`` is a hub id."""
    if isinstance(source, str) and is_hub_id(source):
        return read_hub(source, split=split, config=config, **hub_kwargs)
    return read_table(source)

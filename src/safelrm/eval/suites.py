"""Evaluation suites: YAML data files naming benchmarks, attacks and generation budgets.

A suite file (``eval/suites/<name>.yaml``, or any path) holds a ``generation`` block of defaults
and a list of ``entries``; each entry loads one benchmark, optionally wraps it in an attack, and
may override the generation budget. The entry's ``name`` is the benchmark column in reports.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from safelrm.config import StrictModel, load_yaml, parse_config
from safelrm.errors import SafelrmError

SUITES_PACKAGE = "safelrm.eval"
SUITES_FOLDER = "suites"


class GenerationSettings(StrictModel):
    max_reasoning_tokens: int = Field(128, ge=1)
    max_new_tokens: int = Field(128, ge=1)
    temperature: float = Field(0.0, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: int = 0
    stop_repeats: dict[str, int] = Field(
        default_factory=dict, description="end a row once a string appeared N times"
    )


class GenerationOverrides(StrictModel):
    """Per-entry changes to the suite's generation defaults (unset keys keep the default)."""

    max_reasoning_tokens: int | None = Field(None, ge=1)
    max_new_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    seed: int | None = None


class SuiteEntry(StrictModel):
    benchmark: str
    name: str | None = None
    n: int | None = Field(None, ge=1, description="prompts drawn by seed; None = all")
    seed: int = 0
    attack: str | None = None
    attack_options: dict[str, Any] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict, description="benchmark loader options")
    path: str | None = Field(None, description="benchmark file, folder or hub id")
    categories: list[str] | None = None
    suffix: str | None = Field(None, description="appended to the user prompt (answer format)")
    generation: GenerationOverrides | None = None
    optional: bool = Field(False, description="skip (with a notice) when the data is missing")

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        return f"{self.benchmark}+{self.attack}" if self.attack else self.benchmark

    def settings(self, defaults: GenerationSettings) -> GenerationSettings:
        if self.generation is None:
            return defaults
        return defaults.model_copy(update=self.generation.model_dump(exclude_none=True))

    def fingerprint(self) -> dict[str, Any]:
        """What decides the prompts' text and sampling; ``n`` is left out so that a run can
        grow (``--limit 4``, then the full suite) and reuse what it generated."""
        return self.model_dump(exclude={"n", "optional"})


class Suite(StrictModel):
    name: str
    description: str = ""
    generation: GenerationSettings = Field(default_factory=GenerationSettings)
    entries: list[SuiteEntry]
    source: str = Field("", description="the file it was read from (set by load_suite)")

    @model_validator(mode="after")
    def _unique_labels(self) -> Suite:
        seen: set[str] = set()
        for i, e in enumerate(self.entries):
            if e.label in seen:
                raise ValueError(f"entry {i}: name '{e.label}' is used twice; give it a name")
            seen.add(e.label)
        return self

    def fingerprint(self) -> dict[str, Any]:
        return {
            "suite": self.name,
            "generation": self.generation.model_dump(),
            "entries": [e.fingerprint() for e in self.entries],
        }


def suites_dir() -> Path:
    return Path(str(resources.files(SUITES_PACKAGE).joinpath(SUITES_FOLDER)))


def list_suites() -> list[str]:
    return sorted(p.stem for p in suites_dir().glob("*.yaml"))


def suite_path(name_or_path: str | Path) -> Path:
    """A shipped suite by name, or a YAML file path."""
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise SafelrmError(f"{path}: suite file not found")
        return path
    shipped = suites_dir() / f"{text}.yaml"
    if not shipped.is_file():
        known = ", ".join(list_suites())
        raise SafelrmError(f"unknown suite '{text}' (known: {known}; or pass a .yaml path)")
    return shipped


def load_suite(name_or_path: str | Path) -> Suite:
    """Read and check a suite: known benchmarks and attacks, at least one entry."""
    from safelrm.attacks import list_attacks
    from safelrm.data import list_benchmarks

    path = suite_path(name_or_path)
    data = load_yaml(path)
    data.setdefault("name", path.stem)
    if not data.get("entries"):
        raise SafelrmError(f"{path}: key 'entries': the suite has no entries")
    suite = parse_config(Suite, data, str(path))
    suite.source = str(path)
    benchmarks, attacks = set(list_benchmarks()), set(list_attacks())
    for i, e in enumerate(suite.entries):
        at = f"{path}: entry {i} ('{e.label}')"
        if e.benchmark not in benchmarks:
            raise SafelrmError(
                f"{at}: unknown benchmark '{e.benchmark}' (known: {', '.join(sorted(benchmarks))})"
            )
        if e.attack is not None and e.attack not in attacks:
            raise SafelrmError(
                f"{at}: unknown attack '{e.attack}' (known: {', '.join(sorted(attacks))})"
            )
    return suite

"""The method's prompt files (``prompts/``, written for safelrm): loading and filling."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from safelrm.errors import SafelrmError, where

SECTION_KEYS = ("core", "process", "guidance")


def _read(name_or_path: str | None, default: str) -> tuple[str, str]:
    """(text, source) of a user file, or of a shipped file in ``prompts/``."""
    if name_or_path:
        path = Path(name_or_path).expanduser()
        if not path.is_file():
            raise SafelrmError(f"{path}: prompt file not found")
        return path.read_text(encoding="utf-8"), str(path)
    res = resources.files("safelrm.methods.safe_trigger").joinpath("prompts", default)
    return res.read_text(encoding="utf-8"), f"safe_trigger/prompts/{default}"


def _strip_comments(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.startswith("#")).strip()


def fill(template: str, source: str, **fields: str) -> str:
    """``template`` with its ``{name}`` placeholders filled; a missing or unknown one is named."""
    try:
        return template.format(**fields)
    except KeyError as e:
        raise SafelrmError(f"{source}: unknown placeholder {{{e.args[0]}}}") from None
    except (IndexError, ValueError) as e:
        raise SafelrmError(
            f"{source}: bad placeholder ({e}); write literal braces as {{{{ }}}}"
        ) from None


@dataclass(frozen=True)
class TextTemplate:
    text: str
    source: str
    fields: tuple[str, ...]

    def render(self, **values: str) -> str:
        return fill(self.text, self.source, **values)


def load_text_template(path: str | None, default: str, fields: tuple[str, ...]) -> TextTemplate:
    """A ``#``-commented text prompt that must use every placeholder in ``fields``."""
    raw, source = _read(path, default)
    text = _strip_comments(raw)
    for f in fields:
        if "{" + f + "}" not in text:
            raise SafelrmError(f"{source}: the prompt must contain the placeholder {{{f}}}")
    fill(text, source, **{f: "" for f in fields})
    return TextTemplate(text, source, fields)


@dataclass(frozen=True)
class Pass2Template:
    """The second-pass instruction and the three ``<safe>`` section labels."""

    instruction: str
    sections: dict[str, str]
    source: str
    openers: dict[str, str] = field(default_factory=dict)

    def render(self, query: str, reasoning: str) -> str:
        return fill(
            self.instruction, self.source, query=query, reasoning=reasoning, **self.sections
        )

    @property
    def labels(self) -> list[str]:
        return [self.sections[k] for k in SECTION_KEYS]

    def opener(self, label: str) -> str:
        """The first words of a part in scaffolded generation (empty when none)."""
        key = next(k for k in SECTION_KEYS if self.sections[k] == label)
        return self.openers.get(key, "")


def load_pass2_template(path: str | None = None) -> Pass2Template:
    raw, source = _read(path, "pass2.yaml")
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise SafelrmError(f"{source}: invalid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise SafelrmError(f"{source}: expected a mapping with 'instruction' and 'sections'")
    instruction, sections = data.get("instruction"), data.get("sections")
    if not isinstance(instruction, str) or not instruction.strip():
        raise SafelrmError(f"{where(source, None, 'instruction')}: missing or not text")
    if not isinstance(sections, dict) or set(sections) != set(SECTION_KEYS):
        raise SafelrmError(
            f"{where(source, None, 'sections')}: needs exactly the keys {', '.join(SECTION_KEYS)}"
        )
    labels = {k: str(sections[k]).strip() for k in SECTION_KEYS}
    if any(not v for v in labels.values()) or len(set(labels.values())) != 3:
        raise SafelrmError(f"{where(source, None, 'sections')}: three distinct non-empty labels")
    openers = data.get("openers") or {}
    if not isinstance(openers, dict) or not set(openers) <= {*SECTION_KEYS, "answer"}:
        raise SafelrmError(
            f"{where(source, None, 'openers')}: a mapping with keys among "
            f"{', '.join(SECTION_KEYS)}, answer"
        )
    openers = {k: str(v).strip() for k, v in openers.items() if str(v or "").strip()}
    template = Pass2Template(instruction.strip(), labels, source, openers)
    for f in ("query", "reasoning"):
        if "{" + f + "}" not in template.instruction:
            raise SafelrmError(f"{source}: the instruction must contain the placeholder {{{f}}}")
    template.render("", "")
    return template


def load_vocabulary(path: str | None = None) -> tuple[str, ...]:
    raw, _ = _read(path, "safety_vocabulary.txt")
    lines = (line.strip().lower() for line in raw.splitlines())
    return tuple(line for line in lines if line and not line.startswith("#"))


def prompt_file_text(path: str | None, default: str) -> str:
    """The prompt file's full text (for stage hashes: editing a prompt reruns its stage)."""
    return _read(path, default)[0]

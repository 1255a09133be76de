"""Attack templates kept as YAML data files in ``templates/`` (all written for safelrm)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from safelrm.config import StrictModel, load_yaml, parse_config
from safelrm.errors import SafelrmError

TEMPLATE_DIR = Path(__file__).parent / "templates"
PLACEHOLDER = "{request}"


class Template(StrictModel):
    id: str
    text: str


class QAPair(StrictModel):
    question: str
    answer: str


class TemplateFile(StrictModel):
    attack: str
    description: str = ""
    templates: list[Template] = []
    pairs: list[QAPair] = []
    prefixes: list[str] = []


def fill(template: str, request: str, **fields: str) -> str:
    """Substitute ``{request}`` (and other ``{name}`` fields) without ``str.format``, so braces
    inside the request or the template stay as they are."""
    for key, value in fields.items():
        template = template.replace("{" + key + "}", value)
    return template.replace(PLACEHOLDER, request).strip()


@cache
def load_templates(name: str, path: str | None = None) -> TemplateFile:
    """``templates/<name>.yaml`` (or ``path``), checked: every template holds ``{request}``."""
    file = Path(path) if path else TEMPLATE_DIR / f"{name}.yaml"
    data = parse_config(TemplateFile, load_yaml(file), str(file))
    for i, t in enumerate(data.templates):
        if PLACEHOLDER not in t.text:
            raise SafelrmError(f"{file}: templates[{i}] ('{t.id}') has no {PLACEHOLDER}")
    ids = [t.id for t in data.templates]
    if len(set(ids)) != len(ids):
        raise SafelrmError(f"{file}: template ids are not unique")
    return data

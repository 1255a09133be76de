"""Training targets: decision-first refusals (our templates) and the model's own CoT-on answers."""

from __future__ import annotations

import random
from importlib import resources
from pathlib import Path
from typing import Any

from safelrm.config import load_yaml
from safelrm.errors import SafelrmError, where

TEMPLATE_FIELDS = ("reasoning", "answer")


def default_templates() -> Path:
    return Path(str(resources.files("safelrm.methods.presafe").joinpath("prompts")))


def load_templates(path: str | Path | None = None) -> dict[str, list[str]]:
    """``{"reasoning": [...], "answer": [...]}`` from a YAML file of non-empty strings."""
    path = Path(path) if path else default_templates() / "decision_first.yaml"
    data = load_yaml(path)
    out: dict[str, list[str]] = {}
    for key in TEMPLATE_FIELDS:
        values = data.get(key)
        if not isinstance(values, list) or not values:
            raise SafelrmError(f"{where(path, None, key)}: expected a non-empty list of strings")
        for i, v in enumerate(values):
            if not isinstance(v, str) or not v.strip():
                raise SafelrmError(
                    f"{where(path, None, f'{key}[{i}]')}: expected a non-empty string"
                )
        out[key] = [v.strip() for v in values]
    return out


def decision_first(prompt_id: str, templates: dict[str, list[str]], seed: int) -> tuple[str, str]:
    """A (reasoning, answer) pair drawn per prompt: stable for a prompt id and seed."""
    rng = random.Random(f"{seed}:{prompt_id}")
    return rng.choice(templates["reasoning"]), rng.choice(templates["answer"])


def sft_row(
    prompt_id: str, messages: list[dict[str, str]], completion: str, group: str
) -> dict[str, Any]:
    return {"id": prompt_id, "prompt": messages, "completion": completion, "group": group}

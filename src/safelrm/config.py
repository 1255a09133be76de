"""Base class for every config: unknown keys and wrong types are rejected, naming the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
)

from safelrm.errors import SafelrmError

C = TypeVar("C", bound="StrictModel")


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # Options added after runs were made: left out of a dump while at their default, so that
    # recipe.json and the stage hashes of those runs stay the same (no stage reruns).
    omit_at_default: ClassVar[tuple[str, ...]] = ()
    # Options renamed after runs were made: {new name: old name} in the dump that stage hashes
    # are computed from (context {"stage_hash": True}), so that a rename alone reruns nothing.
    hash_names: ClassVar[dict[str, str]] = {}

    @model_serializer(mode="wrap")
    def _omit_defaults(
        self, handler: SerializerFunctionWrapHandler, info: SerializationInfo
    ) -> Any:
        data = handler(self)
        for name in self.omit_at_default:
            field = type(self).model_fields[name]
            if getattr(self, name) == field.get_default(call_default_factory=True):
                data.pop(name, None)
        if self.hash_names and isinstance(info.context, dict) and info.context.get("stage_hash"):
            data = {self.hash_names.get(k, k): v for k, v in data.items()}
        return data


def validation_message(source: str, err: ValidationError) -> str:
    """One line naming the first bad key, e.g. ``recipe.yaml: sft.lr: extra inputs ...``."""
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "(root)"
    more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
    msg = first["msg"]
    return f"{source}: key '{key}': {msg[:1].lower()}{msg[1:]}{more}"


def parse_config(cls: type[C], data: dict[str, Any], source: str = "config") -> C:
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        raise SafelrmError(validation_message(source, e)) from None


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SafelrmError(f"{path}: file not found") from None
    except yaml.YAMLError as e:
        raise SafelrmError(f"{path}: invalid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise SafelrmError(f"{path}: expected a mapping at the top level")
    return data

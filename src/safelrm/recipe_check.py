"""Every value of a recipe that can be checked before work, checked at once.

``safelrm run`` calls :func:`check_recipe` before any stage runs: judge names, suite names (and
the benchmarks and attacks in the suite), training-set names, attack names, the model (a local
path that exists, ``default``, or a plausible hub id) and the generation backend. All problems
are reported together in one error, so a typo costs seconds, not the stages before it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel

from safelrm.errors import SafelrmError

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# recipe keys whose values are judge names; a key ending in "_judge" is one too
_JUDGE_LISTS = {"judges", "data_judges"}


def check_recipe(recipe: Any) -> None:
    """Raise one SafelrmError listing every unknown name or missing path in ``recipe``."""
    problems: list[str] = []
    data = recipe.model_dump(mode="json")
    _check_model(str(data.get("model", "default")), "model", problems)
    _check_backend(data, problems)
    for path, key, value in _walk(recipe):
        if key in _JUDGE_LISTS and isinstance(value, list):
            _names(value, _known_judges, "judge", path, problems)
        elif isinstance(value, str) and (
            key.endswith("_judge") or path.endswith(("judge.reasoning", "judge.answer"))
        ):
            _names([value], _known_judges, "judge", path, problems)
        elif key == "suite" and isinstance(value, str):
            _check_suite(value, recipe.method, path, problems)
        elif key == "set" and isinstance(value, str):
            _sets([value], path, problems)
        elif key == "sets" and isinstance(value, list):
            _sets(value, path, problems)
        elif key == "attacks" and isinstance(value, list):
            names = [a.get("name") for a in value if isinstance(a, dict) and a.get("name")]
            _names(names, _known_attacks, "attack", path, problems)
    if problems:
        n = len(problems)
        raise SafelrmError(f"recipe has {n} problem{'s' * (n > 1)}: " + "; ".join(problems))


def _walk(node: Any, path: str = "") -> Iterator[tuple[str, str, Any]]:
    """``(path, key, value)`` of every field; fields typed as a Literal are skipped (pydantic
    has checked them, and their special values, like a judge named ``self``, are no names)."""
    if isinstance(node, BaseModel):
        for k, info in type(node).model_fields.items():
            if _is_literal(info.annotation):
                continue
            v = getattr(node, k)
            here = f"{path}.{k}" if path else k
            yield here, k, _plain(v)
            yield from _walk(v, here)
    elif isinstance(node, dict):
        for k, v in node.items():
            here = f"{path}.{k}" if path else str(k)
            yield here, str(k), _plain(v)
            yield from _walk(v, here)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, f"{path}[{i}]")


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _is_literal(annotation: Any) -> bool:
    if get_origin(annotation) is Literal:
        return True
    return any(_is_literal(a) for a in get_args(annotation))


def _names(
    values: list[Any], known: Callable[[], list[str]], what: str, path: str, problems: list[str]
) -> None:
    names = set(known())
    for v in values:
        if str(v) not in names:
            problems.append(f"{path}: unknown {what} '{v}' (known: {', '.join(sorted(names))})")


def _known_judges() -> list[str]:
    from safelrm.judges import list_judges

    return list_judges()


def _sets(values: list[Any], path: str, problems: list[str]) -> None:
    """A set is a benchmark name, a training-set name or a prompt file (``load_prompts``)."""
    from safelrm.data.benchmarks import list_benchmarks
    from safelrm.data.train_sets import list_train_sets

    known = set(list_benchmarks()) | set(list_train_sets())
    for v in values:
        if str(v) not in known and not Path(str(v)).expanduser().is_file():
            problems.append(
                f"{path}: '{v}' is neither a known set nor a file "
                f"(known sets: {', '.join(sorted(known))})"
            )


def _known_attacks() -> list[str]:
    from safelrm.attacks import list_attacks

    return list_attacks()


def _check_model(spec: str, path: str, problems: list[str]) -> None:
    if spec == "default":
        return
    p = Path(spec).expanduser()
    if p.exists():
        if p.is_dir() and not (p / "config.json").is_file():
            problems.append(f"{path}: '{spec}' is not a model folder (no config.json)")
        return
    if spec.endswith(".gguf") or spec.startswith((".", "/", "~")) or not _HUB_ID.match(spec):
        problems.append(f"{path}: '{spec}' is neither a local path nor a hub id (owner/name)")


def _check_backend(data: dict[str, Any], problems: list[str]) -> None:
    from safelrm.models import list_backends

    backend = (data.get("generation") or {}).get("backend")
    if backend is not None and backend not in list_backends():
        problems.append(
            f"generation.backend: unknown backend '{backend}' (known: {', '.join(list_backends())})"
        )


def _check_suite(spec: str, method: str, path: str, problems: list[str]) -> None:
    from safelrm.eval.suites import load_suite

    own = Path(__file__).parent / "methods" / method / "suites" / f"{spec}.yaml"
    try:
        load_suite(own if own.is_file() else spec)
    except SafelrmError as e:
        problems.append(f"{path}: {e}")

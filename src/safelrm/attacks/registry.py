"""Attacks by name: each turns a harmful request into a jailbreak prompt.

An attack is a class registered with ``@register_attack``; its constructor takes the attack's
options (loading templates once) and ``wrap(request, rng)`` builds one prompt. The ``rng`` is
seeded from (seed, attack, record id), so each record's choice of template is deterministic and
independent of the order and number of records.
"""

from __future__ import annotations

import hashlib
import inspect
import random
from dataclasses import dataclass
from typing import Any, Protocol

from safelrm.data.records import PromptRecord
from safelrm.errors import SafelrmError


@dataclass
class Wrapped:
    """One attacked prompt: ``text`` (or multi-turn ``messages``) and an assistant ``prefix``."""

    text: str
    template: str
    messages: list[dict[str, str]] | None = None
    prefix: str | None = None
    sub_attack: str | None = None


class Attack(Protocol):
    def wrap(self, request: str, rng: random.Random) -> Wrapped: ...


@dataclass(frozen=True)
class AttackInfo:
    name: str
    cls: type
    description: str
    own: bool  # templates written by us (part of `mixed`)


ATTACKS: dict[str, AttackInfo] = {}


def register_attack(name: str, *, description: str = "", own: bool = True) -> Any:
    def wrap(cls: type) -> type:
        if name in ATTACKS:
            raise ValueError(f"attack '{name}' registered twice")
        ATTACKS[name] = AttackInfo(name, cls, description, own)
        return cls

    return wrap


def list_attacks() -> list[str]:
    return sorted(ATTACKS)


def own_attacks() -> list[str]:
    return sorted(name for name, info in ATTACKS.items() if info.own)


def record_rng(seed: int, attack: str, record_id: str) -> random.Random:
    """A generator that depends only on its arguments (not on PYTHONHASHSEED or order)."""
    digest = hashlib.sha256(f"{seed}|{attack}|{record_id}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def make_attack(name: str, **opts: Any) -> Attack:
    """Build attack ``name`` with its options; unknown options name the accepted ones."""
    try:
        info = ATTACKS[name]
    except KeyError:
        raise SafelrmError(f"unknown attack '{name}'; known: {', '.join(list_attacks())}") from None
    params = inspect.signature(info.cls).parameters
    unknown = sorted(set(opts) - set(params))
    if unknown:
        accepted = ", ".join(params) or "none"
        raise SafelrmError(f"attack '{name}': unknown option(s) {unknown}; accepted: {accepted}")
    return info.cls(**opts)


def apply_attack(
    name: str, records: list[PromptRecord], seed: int = 0, **opts: Any
) -> list[PromptRecord]:
    """Wrap each harmful record with attack ``name``: kind jailbreak, goal = the original text,
    id ``<id>@<name>``, ``meta.attack = name`` (and ``meta.template``)."""
    attack = make_attack(name, **opts)
    out = []
    for r in records:
        if r.kind != "harmful":
            raise SafelrmError(
                f"record '{r.id}': attacks apply to harmful prompts, this one is '{r.kind}'"
            )
        w = attack.wrap(r.text, record_rng(seed, name, r.id))
        meta = {**r.meta, "attack": name, "template": w.template, "attack_seed": seed}
        if w.sub_attack:
            meta["sub_attack"] = w.sub_attack
        out.append(
            PromptRecord(
                id=f"{r.id}@{name}",
                text=w.text,
                kind="jailbreak",
                category=r.category,
                source=r.source,
                goal=r.text,
                messages=w.messages,
                prefix=w.prefix,
                meta=meta,
            )
        )
    return out

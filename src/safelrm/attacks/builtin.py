"""Attacks whose templates we wrote (``templates/*.yaml``), and ``mixed`` over them."""

from __future__ import annotations

import random

from safelrm.attacks.registry import (
    ATTACKS,
    Attack,
    Wrapped,
    make_attack,
    own_attacks,
    record_rng,
    register_attack,
)
from safelrm.attacks.templates import Template, fill, load_templates
from safelrm.errors import SafelrmError


def choose_templates(name: str, templates: list[Template], only: str | None) -> list[Template]:
    """All templates, or the one whose id is ``only``."""
    if only is None:
        return templates
    chosen = [t for t in templates if t.id == only]
    if not chosen:
        known = ", ".join(t.id for t in templates)
        raise SafelrmError(f"attack '{name}': unknown template '{only}'; known: {known}")
    return chosen


class TemplateAttack:
    """Wraps the request in one of the attack's templates, picked per record."""

    name = ""

    def __init__(self, template: str | None = None) -> None:
        self.templates = choose_templates(self.name, load_templates(self.name).templates, template)

    def wrap(self, request: str, rng: random.Random) -> Wrapped:
        t = rng.choice(self.templates)
        return Wrapped(text=fill(t.text, request), template=t.id)


@register_attack("roleplay", description="persona without restrictions (several personas)")
class RolePlay(TemplateAttack):
    name = "roleplay"


@register_attack("refusal_suppression", description="rules forbidding refusals and warnings")
class RefusalSuppression(TemplateAttack):
    name = "refusal_suppression"


@register_attack("prefix_injection", description="asks the reply to open affirmatively")
class PrefixInjection(TemplateAttack):
    name = "prefix_injection"


@register_attack("fiction", description="request embedded in a story, screenplay or game")
class Fiction(TemplateAttack):
    name = "fiction"


@register_attack("hypothetical", description="thought experiment / parallel world framing")
class Hypothetical(TemplateAttack):
    name = "hypothetical"


@register_attack("persuasion", description="one persuasion technique's argument per template")
class Persuasion(TemplateAttack):
    name = "persuasion"


@register_attack("many_shot", description="k fabricated compliant turns before the request")
class ManyShot:
    def __init__(self, k: int = 8) -> None:
        if k < 1:
            raise SafelrmError(f"attack 'many_shot': k must be >= 1, got {k}")
        self.k = k
        self.pairs = load_templates("many_shot").pairs
        if not self.pairs:
            raise SafelrmError("many_shot.yaml: no question/answer pairs")

    def wrap(self, request: str, rng: random.Random) -> Wrapped:
        order: list[int] = []
        while len(order) < self.k:  # every pair once before any repeats
            order += rng.sample(range(len(self.pairs)), len(self.pairs))
        messages = []
        for i in order[: self.k]:
            messages.append({"role": "user", "content": self.pairs[i].question})
            messages.append({"role": "assistant", "content": self.pairs[i].answer})
        messages.append({"role": "user", "content": request})
        return Wrapped(text=request, template=f"k={self.k}", messages=messages)


@register_attack("prefill", description="assistant turn pre-filled with an affirmative opening")
class Prefill:
    def __init__(self, prefix: str | None = None) -> None:
        self.prefixes = [prefix] if prefix else load_templates("prefill").prefixes
        if not self.prefixes:
            raise SafelrmError("prefill.yaml: no prefixes")

    def wrap(self, request: str, rng: random.Random) -> Wrapped:
        i = rng.randrange(len(self.prefixes))
        return Wrapped(text=request, template=f"prefix{i}", prefix=self.prefixes[i])


@register_attack("mixed", description="a seeded mix over our own attacks", own=False)
class Mixed:
    def __init__(self, attacks: list[str] | None = None, k: int = 8) -> None:
        names = attacks or [n for n in own_attacks() if n != "mixed"]
        for n in names:
            if n not in ATTACKS or n == "mixed":
                raise SafelrmError(f"attack 'mixed': cannot mix '{n}'; known: {own_attacks()}")
        self.attacks: dict[str, Attack] = {
            n: make_attack(n, k=k) if n == "many_shot" else make_attack(n) for n in names
        }

    def wrap(self, request: str, rng: random.Random) -> Wrapped:
        name = rng.choice(sorted(self.attacks))
        inner = self.attacks[name].wrap(request, record_rng(rng.randrange(2**32), name, request))
        inner.sub_attack = name
        inner.template = f"{name}/{inner.template}"
        return inner

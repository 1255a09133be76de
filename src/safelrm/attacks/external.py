"""Attacks built on template sets from the shared training data (gptfuzz, itw, pap)."""

from __future__ import annotations

import random

from safelrm.attacks.registry import Wrapped, register_attack
from safelrm.attacks.templates import fill, load_templates
from safelrm.errors import SafelrmError

GPTFUZZ_PLACEHOLDER = "[INSERT PROMPT HERE]"


@register_attack(
    "gptfuzz", description="GPTFuzzer seed templates ([INSERT PROMPT HERE])", own=False
)
class GPTFuzz:
    def __init__(self, path: str | None = None, template: str | None = None) -> None:
        from safelrm.data.train_sets import load_train_set

        records = load_train_set("gptfuzz_templates", path)
        if template is not None:
            records = [r for r in records if r.id in (template, f"gptfuzz-{template}")]
            if not records:
                raise SafelrmError(f"attack 'gptfuzz': no template with id '{template}'")
        missing = [r.id for r in records if GPTFUZZ_PLACEHOLDER not in r.text]
        if missing:
            raise SafelrmError(f"gptfuzz templates {missing[:3]}: no {GPTFUZZ_PLACEHOLDER}")
        self.templates = records

    def wrap(self, request: str, rng: random.Random) -> Wrapped:
        t = rng.choice(self.templates)
        return Wrapped(text=t.text.replace(GPTFUZZ_PLACEHOLDER, request), template=t.id)


@register_attack("itw", description="jailbreak prompts in the wild + the request", own=False)
class InTheWild:
    def __init__(self, path: str | None = None, max_chars: int | None = None) -> None:
        from safelrm.data.train_sets import load_train_set

        records = load_train_set("jailbreak_prompts_in_the_wild", path)
        if max_chars is not None:
            records = [r for r in records if len(r.text) <= max_chars]
        if not records:
            raise SafelrmError(f"attack 'itw': no jailbreak prompts of at most {max_chars} chars")
        self.templates = records

    def wrap(self, request: str, rng: random.Random) -> Wrapped:
        t = rng.choice(self.templates)
        return Wrapped(text=f"{t.text.strip()}\n\n{request}", template=t.id)


@register_attack(
    "pap", description="generic persuasion template x 40 taxonomy techniques", own=False
)
class PAP:
    def __init__(self, path: str | None = None, technique: str | None = None) -> None:
        from safelrm.data.train_sets import load_train_set

        techniques = load_train_set("pap_taxonomy", path)
        if technique is not None:
            techniques = [t for t in techniques if t.category.lower() == technique.lower()]
            if not techniques:
                raise SafelrmError(f"attack 'pap': unknown technique '{technique}'")
        self.techniques = techniques
        self.templates = load_templates("pap").templates

    def wrap(self, request: str, rng: random.Random) -> Wrapped:
        tech = rng.choice(self.techniques)
        t = rng.choice(self.templates)
        definition = tech.meta["definition"].strip()
        text = fill(t.text, request, technique=tech.meta["technique"], definition=definition)
        return Wrapped(text=text, template=f"{tech.meta['technique']}/{t.id}")

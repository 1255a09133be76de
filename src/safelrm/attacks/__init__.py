"""Jailbreak attacks: turn harmful prompts into jailbreak prompts, by name."""

from safelrm.attacks import builtin, external, wild  # noqa: F401  (registers the attacks)
from safelrm.attacks.registry import (
    ATTACKS,
    Wrapped,
    apply_attack,
    list_attacks,
    make_attack,
    register_attack,
)

__all__ = [
    "ATTACKS",
    "Wrapped",
    "apply_attack",
    "list_attacks",
    "make_attack",
    "register_attack",
]

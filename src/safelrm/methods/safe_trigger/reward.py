"""DPO preference construction: the four-indicator reward, the gap filter and best/worst pairing.

Pure functions over plain values, so that they can be unit-tested without a model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from safelrm.methods.safe_trigger.recipe import RewardWeights


@dataclass(frozen=True)
class Indicators:
    """Binary indicators of one sampled response.

    ``f_safe``: the final answer is judged safe. ``s_exist``: a complete ``<safe>`` block.
    ``t_full``: the reasoning considers safety. ``s_full``: the analysis is comprehensive.
    """

    f_safe: bool
    s_exist: bool
    t_full: bool
    s_full: bool


def reward(ind: Indicators, weights: RewardWeights) -> float:
    """R = F*S*(T + Sf + w_a) + F*(1-S)*w_b + (1-F)*S*w_c.

    A safe answer with a complete block scores highest (more when its reasoning and analysis are
    thorough); a safe answer without the block next; an unsafe answer with a block a little; an
    unsafe answer without one nothing.
    """
    f, s, t, sf = (float(x) for x in (ind.f_safe, ind.s_exist, ind.t_full, ind.s_full))
    return f * s * (t + sf + weights.w_a) + f * (1 - s) * weights.w_b + (1 - f) * s * weights.w_c


def contrast_reward(answered: bool, s_exist: bool, weights: RewardWeights) -> float:
    """Reward of a sample on a general (contrast) query: the trigger should stay silent there.

    An answer without a ``<safe>`` block scores what the best jailbreak response scores
    (``w_a + 2``), an answer under a needless block ``w_c``, a refusal nothing. Not in the paper:
    it brings adaptive triggering into DPO (``data.n_dpo_general``).
    """
    if not answered:
        return 0.0
    return weights.w_c if s_exist else weights.w_a + 2.0


def informative(rewards: Sequence[float], delta: float) -> bool:
    """Keep a query only when its samples differ enough: max R - min R >= delta (and > 0)."""
    if len(rewards) < 2:
        return False
    gap = max(rewards) - min(rewards)
    return gap > 0 and gap >= delta


def best_and_worst(rewards: Sequence[float]) -> tuple[int, int]:
    """Indices of the chosen (highest R; first on ties) and rejected (lowest R; last on ties)."""
    if len(rewards) < 2:
        raise ValueError("pairing needs at least two samples")
    best = max(range(len(rewards)), key=lambda i: (rewards[i], -i))
    worst = min(range(len(rewards)), key=lambda i: (rewards[i], -i))
    if rewards[best] == rewards[worst]:
        raise ValueError("all samples have the same reward; nothing to prefer")
    return best, worst

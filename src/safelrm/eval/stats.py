"""Interval estimates and paired tests for binary per-prompt outcomes.

Rates use the Wilson score interval (scipy), which stays informative at the edges: 0/32 gives
``[0.0, 0.107]``, not the percentile bootstrap's ``[0.0, 0.0]``. Two models answering the same
prompts are paired data: their difference gets a paired bootstrap CI (prompts resampled
together) and an exact McNemar test on the discordant pairs (scipy's exact binomial test).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel
from scipy.stats import binomtest

# Bootstrap resamples are drawn in blocks so memory stays bounded for large n.
_MAX_BLOCK_ELEMENTS = 4_000_000


def wilson_interval(count: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval of ``count / n``; ``(nan, nan)`` when ``n == 0``."""
    if n == 0:
        return (math.nan, math.nan)
    if not 0 <= count <= n:
        raise ValueError(f"count {count} is outside [0, {n}]")
    ci = binomtest(count, n).proportion_ci(confidence_level=1 - alpha, method="wilson")
    return (float(ci.low), float(ci.high))


class PairedComparison(BaseModel):
    """``b - a`` on the prompts both models answered (pairs with a missing flag are dropped).

    ``a_only`` counts pairs where only ``a`` is positive, ``b_only`` where only ``b`` is;
    ``mcnemar_p`` is the two-sided exact McNemar p-value on those discordant pairs (1.0 when
    there are none).
    """

    n_pairs: int
    a_rate: float | None
    b_rate: float | None
    diff: float | None
    low: float | None
    high: float | None
    a_only: int
    b_only: int
    mcnemar_p: float | None


def mcnemar_exact(a_only: int, b_only: int) -> float:
    """Two-sided exact McNemar p-value: a binomial test of ``b_only`` among the discordant pairs."""
    discordant = a_only + b_only
    if discordant == 0:
        return 1.0
    return float(binomtest(b_only, discordant, 0.5, alternative="two-sided").pvalue)


def bootstrap_ci(
    values: Sequence[float], n_boot: int = 2000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean; ``(nan, nan)`` when empty, ``(v, v)`` when constant.

    For means (token lengths, judge scores); rates get :func:`wilson_interval`. The interval is
    widened to contain the sample mean, which the percentile method does not promise for very
    skewed samples.
    """
    x = np.asarray(values, dtype=float)
    n = x.size
    if n == 0:
        return (math.nan, math.nan)
    mean = float(x.mean())
    if np.all(x == x[0]):
        return (mean, mean)
    rng = np.random.default_rng(seed)
    block = max(1, _MAX_BLOCK_ELEMENTS // n)
    means = np.empty(n_boot)
    for start in range(0, n_boot, block):
        stop = min(n_boot, start + block)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = x[idx].mean(axis=1)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return (min(float(low), mean), max(float(high), mean))


def paired_bootstrap_ci(
    a: Sequence[float],
    b: Sequence[float],
    n_boot: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap CI of ``mean(b) - mean(a)``, resampling pairs (prompts) together:
    the bootstrap of the per-prompt differences. ``(nan, nan)`` when empty."""
    if len(a) != len(b):
        raise ValueError(f"paired samples differ in length: {len(a)} vs {len(b)}")
    x = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    return bootstrap_ci(x, n_boot=n_boot, alpha=alpha, seed=seed)


def paired_comparison(
    a: Sequence[bool | None], b: Sequence[bool | None], seed: int = 0
) -> PairedComparison:
    """Compare two binary outcomes on the same prompts, position by position."""
    if len(a) != len(b):
        raise ValueError(f"paired samples differ in length: {len(a)} vs {len(b)}")
    pairs = [
        (bool(x), bool(y)) for x, y in zip(a, b, strict=True) if x is not None and y is not None
    ]
    a_only = sum(1 for x, y in pairs if x and not y)
    b_only = sum(1 for x, y in pairs if y and not x)
    if not pairs:
        return PairedComparison(
            n_pairs=0, a_rate=None, b_rate=None, diff=None, low=None, high=None,
            a_only=0, b_only=0, mcnemar_p=None,
        )  # fmt: skip
    xa = [float(x) for x, _ in pairs]
    xb = [float(y) for _, y in pairs]
    low, high = paired_bootstrap_ci(xa, xb, seed=seed)
    return PairedComparison(
        n_pairs=len(pairs),
        a_rate=float(np.mean(xa)),
        b_rate=float(np.mean(xb)),
        diff=float(np.mean(xb) - np.mean(xa)),
        low=low,
        high=high,
        a_only=a_only,
        b_only=b_only,
        mcnemar_p=mcnemar_exact(a_only, b_only),
    )

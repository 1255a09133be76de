import math

import pytest

from safelrm.eval.stats import (
    mcnemar_exact,
    paired_bootstrap_ci,
    paired_comparison,
    wilson_interval,
)


def test_wilson_matches_the_closed_form():
    # Wilson score interval by hand for 3/10, z = 1.959964.
    z, n, p = 1.959963984540054, 10, 0.3
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    low, high = wilson_interval(3, 10)
    assert low == pytest.approx(centre - half, abs=1e-9)
    assert high == pytest.approx(centre + half, abs=1e-9)


def test_wilson_is_informative_at_zero_and_one():
    low, high = wilson_interval(0, 32)
    assert low == pytest.approx(0.0, abs=1e-12)
    assert high == pytest.approx(0.1072, abs=1e-3)
    low, high = wilson_interval(32, 32)
    assert high == pytest.approx(1.0) and low == pytest.approx(1 - 0.1072, abs=1e-3)
    assert all(math.isnan(v) for v in wilson_interval(0, 0))
    with pytest.raises(ValueError):
        wilson_interval(5, 4)


def test_mcnemar_exact_hand_computed():
    # 1 vs 7 discordant pairs: p = 2 * P(X <= 1), X ~ Bin(8, 0.5) = 2 * 9/256.
    assert mcnemar_exact(1, 7) == pytest.approx(18 / 256)
    assert mcnemar_exact(7, 1) == pytest.approx(18 / 256)
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(3, 3) == pytest.approx(1.0)


def test_paired_comparison_hand_computed():
    # 10 prompts: both harmful on 2, only base on 7, only trained on 1, neither on 0.
    base = [True] * 9 + [False]
    trained = [True, True] + [False] * 7 + [True]
    c = paired_comparison(base, trained)
    assert (c.n_pairs, c.a_only, c.b_only) == (10, 7, 1)
    assert c.a_rate == pytest.approx(0.9) and c.b_rate == pytest.approx(0.3)
    assert c.diff == pytest.approx(-0.6)
    assert c.mcnemar_p == pytest.approx(18 / 256)
    assert c.low <= c.diff <= c.high < 0


def test_paired_comparison_drops_unparsed_pairs_and_checks_length():
    c = paired_comparison([True, None, False], [False, True, None])
    assert c.n_pairs == 1 and c.a_only == 1 and c.b_only == 0
    assert paired_comparison([None], [True]).n_pairs == 0
    with pytest.raises(ValueError):
        paired_comparison([True], [True, False])


def test_paired_bootstrap_is_narrower_than_unpaired_when_outcomes_agree():
    # Identical outcomes except one prompt: the paired CI is tight around 0.05.
    a = [1.0] * 10 + [0.0] * 10
    b = [1.0] * 11 + [0.0] * 9
    low, high = paired_bootstrap_ci(a, b)
    assert 0 <= low <= 0.05 <= high <= 0.2

"""Mean ± std and the t-distribution 95 % CI, against hand-computed values."""

import math

import pytest

from fedsim.bench.stats import summarize, t_quantile


@pytest.mark.parametrize(("dof", "expected"), [(1, 12.7062), (2, 4.3027), (4, 2.7764), (30, 2.0423)])
def test_t_quantiles_match_the_table(dof, expected):
    assert t_quantile(0.975, dof) == pytest.approx(expected, abs=1e-4)


def test_three_seeds():
    s = summarize([0.5, 0.6, 0.7])

    # mean 0.6, std 0.1, half-width t(0.975, 2) · 0.1 / √3 = 4.3027 · 0.057735 = 0.24841
    assert (s.n, s.mean, s.std) == (3, pytest.approx(0.6), pytest.approx(0.1))
    assert (s.low, s.high) == (pytest.approx(0.6 - 0.248413, abs=1e-6), pytest.approx(0.6 + 0.248413, abs=1e-6))


def test_one_value_has_no_spread_and_missing_values_are_left_out():
    s = summarize([None, 0.4, math.nan])

    assert (s.n, s.mean, s.std, s.low, s.high) == (1, 0.4, None, None, None)
    assert summarize([None]) is None


def test_paired_difference_against_hand_computed_values():
    from fedsim.bench.stats import paired

    # diffs 0.1, 0.2, 0.05: mean 7/60, sample variance 7/1200, standard error √(7/3600) = 0.0440959;
    # t = mean / se = √7; with 2 degrees of freedom the two-sided p is 1 − t/√(t² + 2) = 1 − √7/3
    result = paired([(0.5, 0.4), (0.7, 0.5), (0.6, 0.55)])

    assert result.n == 3 and result.diffs == pytest.approx((0.1, 0.2, 0.05))
    assert result.mean == pytest.approx(7 / 60)
    half = 4.302653 * math.sqrt(7 / 3600)
    assert (result.low, result.high) == (pytest.approx(7 / 60 - half, abs=1e-6), pytest.approx(7 / 60 + half, abs=1e-6))
    assert result.p == pytest.approx(1 - math.sqrt(7) / 3, abs=1e-9)


def test_paired_leaves_out_missing_pairs_and_needs_spread_for_a_p_value():
    from fedsim.bench.stats import paired

    same = paired([(0.75, 0.5), (1.25, 1.0), (None, 0.3), (0.2, math.nan)])
    one = paired([(0.5, 0.4)])

    assert same.n == 2 and same.mean == 0.25 and same.p is None  # every difference equal: no t statistic
    assert (one.n, one.low, one.high, one.p) == (1, None, None, None)
    assert paired([(None, 0.1)]) is None

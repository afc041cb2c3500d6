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

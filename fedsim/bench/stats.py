"""Mean, sample standard deviation and the t-distribution confidence interval over seeds;
the paired comparison of two strategies over the seeds both ran."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Summary:
    """``n`` values: mean, sample std (n−1 denominator) and a two-sided CI for the mean."""

    n: int
    mean: float
    std: float | None
    low: float | None
    high: float | None


def t_quantile(p: float, dof: int) -> float:
    """The ``p`` quantile of Student's t with ``dof`` degrees of freedom."""
    # scipy comes with scikit-learn; scipy.special's inverse CDF, not scipy.stats (4x the import time)
    from scipy.special import stdtrit

    return float(stdtrit(dof, p))


def summarize(values: Iterable[float | None], *, confidence: float = 0.95) -> Summary | None:
    """Mean ± std and the ``confidence`` CI, mean ± t_{(1+c)/2, n−1} · std / √n, of the
    values that are not ``None``; std and CI need two values (``None`` with one)."""
    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not xs:
        return None
    mean = statistics.fmean(xs)
    if len(xs) < 2:
        return Summary(1, mean, None, None, None)
    std = statistics.stdev(xs)
    half = t_quantile((1.0 + confidence) / 2.0, len(xs) - 1) * std / math.sqrt(len(xs))
    return Summary(len(xs), mean, std, mean - half, mean + half)


@dataclass(frozen=True)
class Paired:
    """Per-seed differences ``x − reference`` over ``n`` shared seeds: their mean, the
    ``confidence`` t-interval of the mean and the two-sided paired t-test's p-value
    (``None`` with fewer than two seeds or when every difference is the same)."""

    n: int
    diffs: tuple[float, ...]
    mean: float
    low: float | None
    high: float | None
    p: float | None


def paired(values: Iterable[tuple[float | None, float | None]], *, confidence: float = 0.95) -> Paired | None:
    """Compare ``(x, reference)`` pairs (one per seed both ran; pairs with a missing or
    non-finite value are left out): mean difference, its CI and the paired t-test."""
    pairs = [(float(x), float(r)) for x, r in values
             if x is not None and r is not None and math.isfinite(float(x)) and math.isfinite(float(r))]
    if not pairs:
        return None
    diffs = tuple(x - r for x, r in pairs)
    s = summarize(diffs, confidence=confidence)
    assert s is not None
    p = None
    if s.std:  # the t statistic needs spread (scipy's ttest_rel would return nan and warn)
        from scipy.special import stdtr  # the t CDF (scipy.stats.ttest_rel's, without its import time)

        t = s.mean / (s.std / math.sqrt(s.n))
        p = float(2.0 * stdtr(s.n - 1, -abs(t)))
    return Paired(len(diffs), diffs, s.mean, s.low, s.high, p)

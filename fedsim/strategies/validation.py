"""Validation of a client update before it reaches any strategy.

A reply is accepted only if it carries exactly the expected tensors with the global's
shapes and dtypes, all values finite, a positive integer ``num-examples`` and finite
metrics. ``check_update`` returns the reason for a rejection (short and stable, so it can
be counted per round) or ``None``.
"""

from __future__ import annotations

import math

import torch

from fedsim.strategies.base import Arrays, ClientUpdate


def check_update(update: ClientUpdate, expected: Arrays) -> str | None:
    """Why ``update`` must be rejected against the ``expected`` tensors, or ``None`` if valid."""
    n = update.num_examples
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        return "bad-num-examples"
    missing = expected.keys() - update.arrays.keys()
    if missing:
        return "missing-tensor"
    if update.arrays.keys() - expected.keys():
        return "unexpected-tensor"
    for name, ref in expected.items():
        t = update.arrays[name]
        if t.shape != ref.shape:
            return "wrong-shape"
        if t.dtype != ref.dtype:
            return "wrong-dtype"
        if t.is_floating_point() and not all_finite(t):
            return "non-finite"
    for value in update.metrics.values():
        if not math.isfinite(float(value)):
            return "non-finite-metric"
    return None


def all_finite(t: torch.Tensor) -> bool:
    """Whether every value of ``t`` is finite.

    A sum is finite only if every term is (an inf or NaN term makes it inf or NaN), so one
    reduction without a temporary usually decides; the element-wise check runs only when
    the sum is not finite, which large finite values can also cause by overflowing.
    """
    return math.isfinite(float(t.sum())) or bool(torch.isfinite(t).all())

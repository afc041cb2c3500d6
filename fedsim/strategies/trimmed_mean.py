"""Coordinate-wise trimmed mean (Yin et al., arXiv 1803.01498), as Flower's ``FedTrimmedAvg``.

Non-decomposable (:class:`~fedsim.strategies.base.ListStrategy`). Per coordinate, the
``int(beta · m)`` smallest and largest of the m client values are dropped and the rest
averaged, unweighted — Flower's own ``trim_mean`` helper (flwr 1.41 ``fedtrimmedavg.py``,
after ``scipy.stats.trim_mean``) does the math. Integer buffers are trimmed too, rounded.
"""

from __future__ import annotations

import numpy as np
import torch
from flwr.serverapp.strategy.fedtrimmedavg import trim_mean
from pydantic import Field

from fedsim.registry import register_strategy
from fedsim.strategies.base import Arrays, ListStrategy, StrategyParams


class TrimmedMeanParams(StrategyParams):
    """Parameters of :class:`TrimmedMean`."""

    beta: float = Field(0.2, ge=0.0, lt=0.5, description="fraction cut at each end (Flower's default 0.2)")


@register_strategy("trimmed-mean")
class TrimmedMean(ListStrategy):
    """Coordinate-wise trimmed mean of the client models (arXiv 1803.01498)."""

    Params = TrimmedMeanParams
    params: TrimmedMeanParams

    def combine(self, rows: Arrays, weights: torch.Tensor, previous: Arrays, aggregation: int) -> Arrays:
        beta = self.params.beta
        return {name: torch.from_numpy(np.asarray(trim_mean(r.numpy(), beta))) for name, r in rows.items()}

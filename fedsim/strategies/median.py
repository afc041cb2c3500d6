"""Coordinate-wise median (Yin et al., arXiv 1803.01498), as Flower's ``FedMedian``.

Non-decomposable: it keeps every client's update (:class:`~fedsim.strategies.base.ListStrategy`).
Each coordinate of the next global is the median over the round's clients, unweighted,
with ``np.median`` exactly as in flwr 1.41's ``fedmedian.py`` (the mean of the two middle
values for an even count; Flower inlines this one call in ``aggregate_train``, so it is
repeated here). Integer buffers take the median too, rounded.
"""

from __future__ import annotations

import numpy as np
import torch

from fedsim.registry import register_strategy
from fedsim.strategies.base import Arrays, ListStrategy


def coordinate_median(rows: torch.Tensor) -> torch.Tensor:
    """The median over dim 0 of ``rows`` (``[m, *shape]``), as ``np.median(axis=0)``."""
    return torch.from_numpy(np.asarray(np.median(rows.numpy(), axis=0)))


@register_strategy("median")
class Median(ListStrategy):
    """Coordinate-wise median of the client models (arXiv 1803.01498)."""

    def combine(self, rows: Arrays, weights: torch.Tensor, previous: Arrays, aggregation: int) -> Arrays:
        return {name: coordinate_median(r) for name, r in rows.items()}

"""FedAvg (McMahan et al., arXiv 1602.05629): the sample-weighted mean of client models."""

from __future__ import annotations

import torch

from fedsim.registry import register_strategy
from fedsim.strategies.base import Arrays, ClientUpdate, Strategy, add_into, add_scalar, cast_like

WEIGHT = "n"  # sum of num-examples
PREFIX = "w:"  # sum of n_k * w_k per tensor


def fold_weighted(sums: dict[str, torch.Tensor], update: ClientUpdate, *, prefix: str = PREFIX,
                  weight_key: str = WEIGHT, weight: float | None = None) -> None:
    """Add ``weight * w_k`` for every tensor and ``weight`` (default ``n_k``) to ``sums``."""
    w = float(update.num_examples if weight is None else weight)
    for name, tensor in update.arrays.items():
        add_into(sums, prefix + name, tensor, alpha=w)
    add_scalar(sums, weight_key, w)


def weighted_mean(sums: dict[str, torch.Tensor], previous: Arrays, *, prefix: str = PREFIX,
                  weight_key: str = WEIGHT) -> Arrays:
    """``Σ weight_k w_k / Σ weight_k`` per tensor, in float32."""
    total = float(sums[weight_key])
    return {name: sums[prefix + name] / total for name in previous}


@register_strategy("fedavg")
class FedAvg(Strategy):
    """FedAvg: sample-weighted mean of the client models (McMahan et al. 2017)."""

    def fold(self, sums: dict[str, torch.Tensor], update: ClientUpdate, previous: Arrays,
             aggregation: int) -> None:
        fold_weighted(sums, update)

    def finalize(self, sums: dict[str, torch.Tensor], previous: Arrays, aggregation: int) -> Arrays:
        return cast_like(weighted_mean(sums, previous), previous)


"""Barlow Twins (Zbontar et al., arXiv 2103.03230): feature matching of two augmented views.

Reads ``projection_dim``, ``barlow_lambda`` (``None``: λ = 1 / width,
:func:`fedsim.losses.barlow.scaled_lambda`) and ``barlow_scale`` from the task's parameters.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from fedsim.losses import BarlowTwinsLoss
from fedsim.losses.barlow import barlow_projector, scaled_lambda
from fedsim.objectives import register_objective
from fedsim.objectives.base import TwoViewObjective, ViewSource


@register_objective("barlow", needs={"augmented"})
class BarlowTwins(TwoViewObjective):
    """The cross-correlation of the two views' projections pushed towards the identity."""

    def __init__(self, params: Any, head_path: str = "head") -> None:
        super().__init__(params, head_path)
        lam = scaled_lambda(params.projection_dim) if params.barlow_lambda is None else params.barlow_lambda
        self.loss_fn = BarlowTwinsLoss(lam, scale=params.barlow_scale)

    def head(self, dim: int, source: ViewSource) -> nn.Module:
        return barlow_projector(dim, self.params.projection_dim)

    def pair_loss(self, z0: torch.Tensor, z1: torch.Tensor) -> torch.Tensor:
        return self.loss_fn(z0, z1)

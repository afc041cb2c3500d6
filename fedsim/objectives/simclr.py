"""SimCLR (Chen et al., arXiv 2002.05709): a projection MLP and NT-Xent of two augmented views.

Reads ``temperature`` and ``projection_dim`` from the task's parameters.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from fedsim.losses import NTXentLoss
from fedsim.objectives import register_objective
from fedsim.objectives.base import TwoViewObjective, ViewSource
from fedsim.objectives.heads import projection_mlp


@register_objective("simclr", needs={"augmented"})
class SimCLR(TwoViewObjective):
    """NT-Xent of two views of every sample; the batch's other samples are the negatives."""

    def __init__(self, params: Any, head_path: str = "head") -> None:
        super().__init__(params, head_path)
        self.ntxent = NTXentLoss(params.temperature)

    def head(self, dim: int, source: ViewSource) -> nn.Module:
        return projection_mlp(dim, self.params.projection_dim)

    def pair_loss(self, z0: torch.Tensor, z1: torch.Tensor) -> torch.Tensor:
        return self.ntxent(z0, z1)

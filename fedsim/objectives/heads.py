"""Model pieces objectives share: an encoder-plus-head module and SimCLR's projection MLP.

(Re-exported by :mod:`fedsim.tasks.base`, where tasks and plugins have always imported them.)
"""

from __future__ import annotations

import torch
from torch import nn


class BackboneHead(nn.Module):
    """An encoder (``backbone``) followed by a ``head`` (projection MLP, classifier, ...).

    One helper among others: a task may train any module whose encoder it names in
    :attr:`fedsim.tasks.base.Task.encoder_prefixes` (``("backbone.",)`` for this one).
    """

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def projection_mlp(in_dim: int, out_dim: int) -> nn.Module:
    """SimCLR's projection g(·): Linear → BN → ReLU → Linear (arXiv 2002.05709, §2.1)."""
    return nn.Sequential(nn.Linear(in_dim, in_dim, bias=False), nn.BatchNorm1d(in_dim),
                         nn.ReLU(inplace=True), nn.Linear(in_dim, out_dim))

"""The benchmark MLP: the 784-100-10 network of the performance anchors, split backbone/head.

The anchors (the ``flower``, ``raw`` and ``pfl`` systems of ``benchmarks/systems.py``;
docs/performance/index.md) train ``Linear(784, 100) → ReLU → Linear(100, 10)``. fedsim models
are an encoder (``backbone``) plus a task head, so the backbone here is
``Flatten → Linear(784, 100) → ReLU`` (``out_dim = 100``) and the task adds the
``Linear(100, 10)`` head: the same layers, the same 79,510 parameters
(784·100 + 100 + 100·10 + 10), and the same arithmetic per step.
"""

from __future__ import annotations

import torch
from torch import nn

from fedsim.registry import register_model


class MLP(nn.Module):
    """Flatten, then ``Linear(in_features, hidden) → ReLU``; ``out_dim = hidden`` features.

    Parameters
    ----------
    in_features
        Size of one flattened input sample (784 for 28×28 single-channel images).
    hidden
        Width of the hidden layer, which is also the feature size.
    """

    def __init__(self, in_features: int = 784, *, hidden: int = 100) -> None:
        super().__init__()
        self.fc = nn.Linear(in_features, hidden)
        self.out_dim: int = hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (n, in_features) or (n, c, h, w) with c·h·w = in_features -> (n, hidden)
        return torch.relu(self.fc(x.flatten(1)))


@register_model("mlp", fixed_size=True, min_size=1)
def mlp(in_channels: int = 1, *, image_size: int = 28, hidden: int = 100) -> nn.Module:
    """784-100 MLP encoder of the throughput benchmarks (28×28×1 inputs), 100-d features."""
    return MLP(in_channels * image_size * image_size, hidden=hidden)

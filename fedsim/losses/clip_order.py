"""Clip-order prediction (VCOP): shuffle sub-clips, classify the permutation.

Xu et al., "Self-supervised Spatiotemporal Learning via Video Clip Order Prediction",
CVPR 2019: ``k`` sub-clips of ``m`` frames, ``gap`` frames apart, are cut from a clip,
shuffled by one of the ``k!`` permutations and encoded by the shared 3-D CNN; the head
concatenates the features of every pair ``(i < j)`` of shuffled positions, passes each
pair through one linear layer + ReLU, concatenates the ``C(k, 2)`` pair features and
classifies the permutation (checked against the official ``models/vcopn.py`` of
xudejing/video-clip-order-prediction: ``fc7`` on pairs, ``dropout``, ``fc8`` to ``k!``).
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn


def permutations(k: int) -> torch.Tensor:
    """All ``k!`` orders of ``range(k)`` ``(k!, k)``, in ``itertools.permutations`` order."""
    return torch.tensor(list(itertools.permutations(range(k))), dtype=torch.long)


def shuffled_subclips(clips: torch.Tensor, *, k: int, frames: int, gap: int,
                      generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut ``k`` sub-clips of ``frames`` frames, ``gap`` apart, from each clip and shuffle them.

    ``clips`` is ``(n, c, t, h, w)``; the sub-clips start at a random offset ``o`` and sub-clip
    ``i`` holds frames ``o + i·(frames + gap) .. + frames``. Returns the shuffled sub-clips
    ``(n, k, c, frames, h, w)`` — position ``p`` holds sub-clip ``perms[label][p]`` — and the
    permutation labels ``(n,)`` indexing :func:`permutations`.
    """
    n, t = clips.shape[0], clips.shape[2]
    span = k * frames + (k - 1) * gap
    if span > t:
        raise ValueError(f"clip order: {k} sub-clips of {frames} frames {gap} apart need {span} frames, "
                         f"the clips have {t}")
    offset = torch.randint(0, t - span + 1, (n,), generator=generator)
    label = torch.randint(0, math.factorial(k), (n,), generator=generator)
    order = permutations(k)[label]  # (n, k): the sub-clip shown at each position
    start = offset[:, None] + order * (frames + gap)  # (n, k)
    idx = start[:, :, None] + torch.arange(frames)  # (n, k, frames) frame indices
    gathered = clips[torch.arange(n)[:, None, None], :, idx]  # (n, k, frames, c, h, w)
    return gathered.permute(0, 1, 3, 2, 4, 5).contiguous(), label


class ClipOrderHead(nn.Module):
    """VCOP's head: pairwise features of the ``k`` shuffled sub-clips -> ``k!`` logits."""

    def __init__(self, feature_dim: int, k: int = 3, pair_dim: int = 64, dropout: float = 0.5) -> None:
        super().__init__()
        if k < 2:
            raise ValueError(f"clip order needs at least 2 sub-clips (got {k})")
        self.k = k
        self.pairs = list(itertools.combinations(range(k), 2))
        self.pair = nn.Linear(2 * feature_dim, pair_dim)
        self.dropout = nn.Dropout(dropout)
        self.classify = nn.Linear(pair_dim * len(self.pairs), math.factorial(k))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        # features: (n, k, d) -> logits (n, k!)
        pairs = [F.relu(self.pair(torch.cat([features[:, i], features[:, j]], dim=1))) for i, j in self.pairs]
        return self.classify(self.dropout(torch.cat(pairs, dim=1)))

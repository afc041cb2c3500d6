"""Temporal-order prediction on spectrograms (the clip-order pretext of Xu et al., CVPR 2019,
on audio): one view cut into three segments along time, shuffled by one of the 6
permutations, each segment encoded by the shared encoder, the permutation classified from the
concatenated features."""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from fedsim.objectives import register_objective
from fedsim.objectives.base import Objective, ViewSource

PERMUTATIONS = torch.tensor(list(itertools.permutations(range(3))))  # (6, 3)


@register_objective("order", needs={"augmented", "timeline"})
class SpectrogramOrder(Objective):
    """Which of the 6 orders three time segments of a view were shuffled into."""

    def head(self, dim: int, source: ViewSource) -> nn.Module:
        return nn.Sequential(nn.Linear(3 * dim, dim), nn.ReLU(inplace=True), nn.Linear(dim, len(PERMUTATIONS)))

    def loss(self, model: nn.Module, batch: Mapping[str, torch.Tensor], source: ViewSource,
             generator: torch.Generator) -> torch.Tensor:
        spec = source.view(batch[source.sample_key], generator)  # (n, 1, F, T)
        n, frames = spec.shape[0], spec.shape[-1] // 3
        segments = spec[..., : 3 * frames].reshape(n, 1, spec.shape[2], 3, frames)  # (n, 1, F, 3, t)
        label = torch.randint(0, len(PERMUTATIONS), (n,), generator=generator)
        order = PERMUTATIONS[label]  # (n, 3): which segment goes to each slot
        shuffled = segments[torch.arange(n)[:, None], :, :, order]  # (n, 3, 1, F, t)
        feats = model.backbone(shuffled.reshape(n * 3, 1, spec.shape[2], frames))  # (3n, d)
        return F.cross_entropy(self.head_of(model)(feats.reshape(n, -1)), label)

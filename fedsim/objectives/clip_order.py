"""Clip-order prediction on video (VCOP, Xu et al., CVPR 2019): ``order_subclips`` grey
sub-clips of ``order_frames`` frames, ``order_gap`` apart, shuffled; the permutation
classified by :class:`fedsim.losses.clip_order.ClipOrderHead`."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from fedsim.data.augmentations import grey
from fedsim.losses.clip_order import ClipOrderHead, shuffled_subclips
from fedsim.objectives import register_objective
from fedsim.objectives.base import Objective, ViewSource


@register_objective("order", needs={"rgb_clips"})
class ClipOrder(Objective):
    """Which permutation the sub-clips were shuffled by."""

    def head(self, dim: int, source: ViewSource) -> nn.Module:
        return ClipOrderHead(dim, k=self.params.order_subclips)

    def loss(self, model: nn.Module, batch: Mapping[str, torch.Tensor], source: ViewSource,
             generator: torch.Generator) -> torch.Tensor:
        p = self.params
        sub, label = shuffled_subclips(batch[source.sample_key], k=p.order_subclips, frames=p.order_frames,
                                       gap=p.order_gap, generator=generator)  # (n, k, 3, f, h, w)
        n, k = sub.shape[:2]
        feats = model.backbone(grey(sub.flatten(0, 1)))  # (n·k, d)
        return F.cross_entropy(self.head_of(model)(feats.reshape(n, k, -1)), label)

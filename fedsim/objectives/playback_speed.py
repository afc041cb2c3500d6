"""Playback-speed prediction (SpeedNet, arXiv 2004.06130): a grey view sampled with a frame
stride from ``speeds``, the stride classified by a linear head
(:func:`fedsim.losses.playback_speed.speed_views`)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from fedsim.data.augmentations import grey
from fedsim.losses.playback_speed import speed_views
from fedsim.objectives import register_objective
from fedsim.objectives.base import Objective, ViewSource


@register_objective("speed", needs={"rgb_clips"})
class PlaybackSpeed(Objective):
    """Which of ``speeds`` a view is played at."""

    def head(self, dim: int, source: ViewSource) -> nn.Module:
        return nn.Linear(dim, len(self.params.speeds))

    def loss(self, model: nn.Module, batch: Mapping[str, torch.Tensor], source: ViewSource,
             generator: torch.Generator) -> torch.Tensor:
        p = self.params
        views, label = speed_views(batch[source.sample_key], speeds=p.speeds, frames=p.speed_frames,
                                   generator=generator)
        return F.cross_entropy(self.head_of(model)(model.backbone(grey(views))), label)

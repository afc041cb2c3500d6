"""Contrastive video (CVRL, arXiv 2008.03800): two views of each clip, at independent start
frames and with independent camera-like jitter (gain, offset, noise: the nuisance clients
differ by), are positives under NT-Xent; the batch's other clips are the negatives. Reads
``contrastive_frames`` and ``temperature``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from fedsim.data.augmentations import camera_jitter, grey, temporal_crop
from fedsim.losses import NTXentLoss
from fedsim.objectives import register_objective
from fedsim.objectives.base import Objective, ViewSource


@register_objective("contrastive", needs={"rgb_clips"})
class ClipContrast(Objective):
    """NT-Xent of two jittered temporal crops per clip, through SimCLR's MLP (no BatchNorm)."""

    def __init__(self, params: Any, head_path: str = "head") -> None:
        super().__init__(params, head_path)
        self.ntxent = NTXentLoss(params.temperature)

    def head(self, dim: int, source: ViewSource) -> nn.Module:
        return nn.Sequential(nn.Linear(dim, dim), nn.ReLU(inplace=True), nn.Linear(dim, 32))

    def loss(self, model: nn.Module, batch: Mapping[str, torch.Tensor], source: ViewSource,
             generator: torch.Generator) -> torch.Tensor:
        g, head, frames = grey(batch[source.sample_key]), self.head_of(model), self.params.contrastive_frames
        z = [head(model.backbone(camera_jitter(temporal_crop(g, frames, generator), generator))) for _ in range(2)]
        return self.ntxent(z[0], z[1])

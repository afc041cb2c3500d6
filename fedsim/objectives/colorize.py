"""Video colourisation after VCGAN (arXiv 2104.12357): a decoder on the encoder's feature map
and the grey input predicts the colour of the frames, keeping the grey input as their luma
and predicting two chroma channels (as colourisers do, Zhang et al. arXiv 1603.08511);
the reconstruction loss (``colorize_loss``: VCGAN's L1, the default, or MSE, the error PSNR
measures), each pixel weighted up by its target's colourfulness (``colorize_rebalance``),
plus ``temporal_weight`` × the short- and long-term temporal-consistency loss
(:mod:`fedsim.losses.colorization`; no optical flow and no adversarial term). Reads
``colorize_frames``, ``colorize_loss``, ``colorize_rebalance``, ``temporal_weight`` and
``temporal_alpha``."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from fedsim.data.augmentations import grey
from fedsim.losses.colorization import chroma_to_rgb, reconstruction_loss, temporal_consistency_loss
from fedsim.objectives import register_objective
from fedsim.objectives.base import Objective, ViewSource


class ColorDecoder(nn.Module):
    """Colour from the encoder's map and the grey input: the map projected (1×1×1 conv) to
    ``hidden`` channels and upsampled to the clip, concatenated with the grey frames, a
    1×3×3 conv + BN + ReLU, a 1×1×1 conv to the two colour differences ``(R − Y, B − Y)``
    (:func:`~fedsim.losses.colorization.chroma_to_rgb`), so the output's luma is the grey
    input's. The chroma conv starts at zero, so an untrained decoder returns the grey input
    (the ``psnr_grey_input`` baseline). Projecting before upsampling gives the same family of
    maps as upsampling first (both are linear) at a fraction of the cost."""

    def __init__(self, feature_dim: int, hidden: int = 16) -> None:
        super().__init__()
        self.project = nn.Conv3d(feature_dim, hidden, 1)
        self.fuse = nn.Sequential(nn.Conv3d(hidden + 1, hidden, (1, 3, 3), padding=(0, 1, 1), bias=False),
                                  nn.BatchNorm3d(hidden), nn.ReLU(inplace=True), nn.Conv3d(hidden, 2, 1))
        nn.init.zeros_(self.fuse[-1].weight)
        nn.init.zeros_(self.fuse[-1].bias)

    def forward(self, feature_map: torch.Tensor, grey: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(self.project(feature_map), size=grey.shape[2:], mode="trilinear", align_corners=False)
        return chroma_to_rgb(grey, self.fuse(torch.cat([up, grey], dim=1))).clamp(0, 1)


@register_objective("colorize", needs={"rgb_clips"})
class Colorize(Objective):
    """RGB frames predicted from the grey clip and the encoder's feature map."""

    def head(self, dim: int, source: ViewSource) -> nn.Module:
        return ColorDecoder(dim)

    def loss(self, model: nn.Module, batch: Mapping[str, torch.Tensor], source: ViewSource,
             generator: torch.Generator) -> torch.Tensor:
        p, clips = self.params, batch[source.sample_key]
        start = int(torch.randint(0, clips.shape[2] - p.colorize_frames + 1, (1,), generator=generator))
        rgb = clips[:, :, start:start + p.colorize_frames]
        g = grey(rgb)
        pred = self.head_of(model)(model.backbone.feature_map(g), g)
        return reconstruction_loss(pred, rgb, kind=p.colorize_loss, rebalance=p.colorize_rebalance) + \
            p.temporal_weight * temporal_consistency_loss(pred, g, alpha=p.temporal_alpha)

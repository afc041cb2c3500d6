"""Small 3-D CNN video encoders: R3D and R(2+1)D (Tran et al., arXiv 1711.11248), CPU-sized.

The blocks are torchvision's own (``torchvision.models.video.resnet``: ``BasicBlock`` with
``Conv3DSimple`` for R3D, ``Conv2Plus1D`` for R(2+1)D, whose mid-channels keep the
parameter count of the 3×3×3 block, as in the paper §3.5). torchvision's ``VideoResNet``
fixes the widths at 64–512 (r3d_18: 33 M parameters, ~1.6 GFLOPs on an 8×32×32 clip), far
too much for a 2-core simulation, so the network around the blocks is composed here: a stem
that halves the frame side, three stages of widths 16/32/64 (one block each; stages 2 and 3
stride 2 in time and space), global average pooling. Input ``(n, c, t, h, w)``; ``out_dim``
is the feature size; :meth:`VideoResNetSmall.feature_map` gives the last stage's map for
dense heads (colourisation).
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.video.resnet import BasicBlock, Conv2Plus1D, Conv3DSimple

from fedsim.registry import register_model

WIDTHS = (16, 32, 64)


def _r3d_stem(in_channels: int, width: int) -> nn.Module:
    # a 3×5×5 conv, spatial stride 2 (torchvision's BasicStem is 3×7×7 for 112 px frames)
    return nn.Sequential(nn.Conv3d(in_channels, width, (3, 5, 5), stride=(1, 2, 2), padding=(1, 2, 2), bias=False),
                         nn.BatchNorm3d(width), nn.ReLU(inplace=True))


def _r2plus1d_stem(in_channels: int, width: int) -> nn.Module:
    # torchvision's R2Plus1dStem (1×7×7 to 45 channels, then 3×1×1), scaled: 1×5×5 then 3×1×1
    mid = max(width, (in_channels * width * 3 * 5 * 5) // (in_channels * 5 * 5 + 3 * width))
    return nn.Sequential(nn.Conv3d(in_channels, mid, (1, 5, 5), stride=(1, 2, 2), padding=(0, 2, 2), bias=False),
                         nn.BatchNorm3d(mid), nn.ReLU(inplace=True),
                         nn.Conv3d(mid, width, (3, 1, 1), padding=(1, 0, 0), bias=False),
                         nn.BatchNorm3d(width), nn.ReLU(inplace=True))


class VideoResNetSmall(nn.Module):
    """Stem, stages of torchvision video BasicBlocks, global average pooling.

    Parameters
    ----------
    in_channels
        Channels of the frames (1 for grey clips).
    conv_builder
        ``Conv3DSimple`` (R3D) or ``Conv2Plus1D`` (R(2+1)D).
    widths
        Channels of each stage; every stage after the first strides 2 in time and space.
    """

    def __init__(self, in_channels: int, *, conv_builder: type[nn.Module], stem: nn.Module,
                 widths: tuple[int, ...] = WIDTHS) -> None:
        super().__init__()
        self.stem = stem
        stages: list[nn.Module] = []
        in_ch = widths[0]
        for i, width in enumerate(widths):
            stride = 1 if i == 0 else 2
            down = None
            if stride != 1 or in_ch != width:
                down = nn.Sequential(nn.Conv3d(in_ch, width, 1, stride=stride, bias=False), nn.BatchNorm3d(width))
            stages.append(BasicBlock(in_ch, width, conv_builder, stride, down))
            in_ch = width
        self.stages = nn.Sequential(*stages)
        self.out_dim: int = widths[-1]

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, c, t, h, w)`` -> the last stage's map ``(n, out_dim, t', h', w')``."""
        return self.stages(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (n, c, t, h, w) -> (n, out_dim)
        return self.feature_map(x).mean(dim=(2, 3, 4))


@register_model("r3d_small", input="video", min_size=8)
def r3d_small(in_channels: int = 1) -> nn.Module:
    """R3D-small: 3-D ResNet, widths 16/32/64 with one 3×3×3 BasicBlock each, 64-d clip features."""
    return VideoResNetSmall(in_channels, conv_builder=Conv3DSimple, stem=_r3d_stem(in_channels, WIDTHS[0]))


@register_model("r2plus1d_small", input="video", min_size=8)
def r2plus1d_small(in_channels: int = 1) -> nn.Module:
    """R(2+1)D-small: (1×3×3 then 3×1×1) factorised blocks, widths 16/32/64, 64-d clip features."""
    return VideoResNetSmall(in_channels, conv_builder=Conv2Plus1D, stem=_r2plus1d_stem(in_channels, WIDTHS[0]))

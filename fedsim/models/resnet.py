"""Small CIFAR-style ResNet encoders for small 1-channel images (He et al., arXiv 1512.03385).

The layout follows the CIFAR ResNets of the paper (section 4.2): a 3×3 stem, three stages
of BasicBlocks whose width doubles while the resolution halves, global average pooling.
Widths and depths are scaled down so that one client's local epoch stays well under a
second on one CPU thread. Every backbone exposes ``out_dim``, the feature size.
"""

from __future__ import annotations

import torch
from torch import nn

from fedsim.registry import register_model


class BasicBlock(nn.Module):
    """Two 3×3 conv + BN layers with an identity (or 1×1 projection) shortcut."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class SmallResNet(nn.Module):
    """Stem, stages of BasicBlocks (stride 2 from the second stage on), global average pool.

    Parameters
    ----------
    in_channels
        Input channels (1 for grey-scale images).
    widths
        Channels of each stage.
    blocks_per_stage
        BasicBlocks in every stage.
    row_bins
        0 (default): global average pooling, ``out_dim = widths[-1]``. ``k > 0``: average over
        the columns and over ``k`` equal bands of rows, concatenated, so ``out_dim =
        widths[-1] * k``. On a spectrogram (rows = mel bands, columns = time) this keeps
        *where in frequency* the energy is, which a global pool throws away and which is what
        tells vowels, formants or instruments apart: BYOL-A's encoder (Niizumi et al.,
        arXiv 2103.06695) keeps the frequency axis and pools only time for the same reason.
    """

    def __init__(self, in_channels: int = 1, *, widths: tuple[int, ...] = (16, 32, 64),
                 blocks_per_stage: int = 1, row_bins: int = 0) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        stages: list[nn.Module] = []
        in_ch = widths[0]
        for i, width in enumerate(widths):
            blocks = [BasicBlock(in_ch if b == 0 else width, width, 2 if (i > 0 and b == 0) else 1)
                      for b in range(blocks_per_stage)]
            stages.append(nn.Sequential(*blocks))
            in_ch = width
        self.stages = nn.Sequential(*stages)
        if row_bins < 0:
            raise ValueError(f"row_bins must be >= 0 (0: global average pooling), got {row_bins}")
        self.pool = nn.AdaptiveAvgPool2d((row_bins, 1) if row_bins else 1)
        self.out_dim: int = widths[-1] * max(row_bins, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (n, c, h, w) -> (n, out_dim)
        return torch.flatten(self.pool(self.stages(self.stem(x))), 1)


@register_model("resnet_small")
def resnet_small(in_channels: int = 1, row_bins: int = 0) -> nn.Module:
    """CIFAR-style ResNet-8 (widths 16/32/64, one BasicBlock per stage), 64-d features (row_bins k: 64·k, k row bands)."""
    return SmallResNet(in_channels, widths=(16, 32, 64), blocks_per_stage=1, row_bins=row_bins)

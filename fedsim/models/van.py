"""VAN backbones with Large Separable Kernel Attention (LSKA) or Large Kernel Attention (LKA).

VAN (Guo et al., arXiv 2202.09741) stacks blocks of ``x + ls1·Attention(BN(x))`` and
``x + ls2·MLP(BN(x))``; its attention is a 1×1 projection, GELU, a *spatial gating unit*
``u · conv1(dw-convs(u))`` and a 1×1 projection, plus a shortcut. LSKA (Lau et al., arXiv
2309.01439) replaces the gating unit's square depthwise kernels by cascaded 1-D ones:

- ``lka``  — ``k0×k0`` depthwise, then ``kd×kd`` depthwise with dilation ``d``, then 1×1;
- ``lska`` — ``(1×k0), (k0×1)`` depthwise, then ``(1×kd), (kd×1)`` depthwise with dilation
  ``d``, then 1×1.

Both cover a ``k×k`` receptive field, ``k = (k0 − 1) + d·(kd − 1) + 1``, with ``k0 = 2d − 1``
and ``kd = ⌊k/d⌋`` (VAN's paper writes ``⌈K/d⌉``, which agrees at its own K = 21 — ``5×5``
then ``7×7`` dilation 3 — but gives even, uncentred kernels for every k of the table).
:data:`KERNELS` is the table of the official LSKA code (``models/van.py`` of
StevenLauHKHK/Large-Separable-Kernel-Attention, checked line by line); the ``lka`` variant
uses the *same* ``(k0, kd, d)`` with square kernels, so the two differ only in separability
and the depthwise weights per channel are ``2·k0 + 2·kd`` (linear in ``k``) against
``k0² + kd²`` (quadratic). Block, MLP (1×1, 3×3 depthwise, GELU, 1×1), layer scale 1e-2,
overlapping patch embeddings with BN, a LayerNorm after every stage and the convolution
initialisation follow the official file; drop-path is left out (rate 0 in small models).

Scaled down for 16–32 px inputs on CPU: three stages (widths 16/32/64, one block each,
MLP ratio 4) and 3×3 stride-2 patch embeddings (the official first one is 7×7 stride 4 for
224 px), so a 28 px input gives 14, 7 and 4 px maps. ``kernel_size`` defaults to 7, the
official training script's ``--k_size`` (``train_lska.sh``); at 16 px the first map is 8×8,
so larger kernels mostly add zero padding there (docs/reproductions/lska.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from fedsim.registry import register_model

# k: (k0, kd, dilation) — official LSKA table (arXiv 2309.01439, models/van.py)
KERNELS: dict[int, tuple[int, int, int]] = {
    7: (3, 3, 2), 11: (3, 5, 2), 23: (5, 7, 3), 35: (5, 11, 3), 41: (5, 13, 3), 53: (5, 17, 3)}

Attention = Literal["lska", "lka"]


def kernel_parts(kernel_size: int) -> tuple[int, int, int]:
    """``(k0, kd, dilation)`` of a kernel size of :data:`KERNELS`; ``ValueError`` otherwise."""
    if kernel_size not in KERNELS:
        raise ValueError(f"kernel_size must be one of {', '.join(map(str, KERNELS))} (got {kernel_size!r})")
    return KERNELS[kernel_size]


def _dw(dim: int, kernel: tuple[int, int], dilation: int = 1) -> nn.Conv2d:
    """A 'same'-padded depthwise conv (odd kernel sides) with bias."""
    padding = (dilation * (kernel[0] - 1) // 2, dilation * (kernel[1] - 1) // 2)
    return nn.Conv2d(dim, dim, kernel, padding=padding, dilation=dilation, groups=dim)


class LSKA(nn.Module):
    """``u · conv1(dwv_d(dwh_d(dw_v(dw_h(u)))))``: separable large-kernel gating (official ``LSKA``)."""

    def __init__(self, dim: int, kernel_size: int) -> None:
        super().__init__()
        k0, kd, d = kernel_parts(kernel_size)
        self.conv0h = _dw(dim, (1, k0))
        self.conv0v = _dw(dim, (k0, 1))
        self.conv_spatial_h = _dw(dim, (1, kd), d)
        self.conv_spatial_v = _dw(dim, (kd, 1), d)
        self.conv1 = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attn = self.conv_spatial_v(self.conv_spatial_h(self.conv0v(self.conv0h(x))))
        return x * self.conv1(attn)


class LKA(nn.Module):
    """``u · conv1(dw_d(dw(u)))``: VAN's large-kernel gating with the same ``(k0, kd, d)``."""

    def __init__(self, dim: int, kernel_size: int) -> None:
        super().__init__()
        k0, kd, d = kernel_parts(kernel_size)
        self.conv0 = _dw(dim, (k0, k0))
        self.conv_spatial = _dw(dim, (kd, kd), d)
        self.conv1 = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.conv1(self.conv_spatial(self.conv0(x)))


GATES: dict[str, type[nn.Module]] = {"lska": LSKA, "lka": LKA}


class SpatialAttention(nn.Module):
    """1×1 → GELU → gating unit → 1×1, plus the input (official ``Attention``)."""

    def __init__(self, dim: int, kernel_size: int, attention: Attention) -> None:
        super().__init__()
        self.proj_1 = nn.Conv2d(dim, dim, 1)
        self.activation = nn.GELU()
        self.spatial_gating_unit = GATES[attention](dim, kernel_size)
        self.proj_2 = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.proj_2(self.spatial_gating_unit(self.activation(self.proj_1(x))))


class ConvMlp(nn.Module):
    """1×1 expand → 3×3 depthwise → GELU → 1×1 reduce (official ``Mlp`` with ``DWConv``)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.dwconv(self.fc1(x))))


class VANBlock(nn.Module):
    """``x + ls1·attn(BN(x))``, then ``x + ls2·mlp(BN(x))``; layer scales start at 1e-2."""

    def __init__(self, dim: int, kernel_size: int, attention: Attention, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(dim)
        self.attn = SpatialAttention(dim, kernel_size, attention)
        self.norm2 = nn.BatchNorm2d(dim)
        self.mlp = ConvMlp(dim, int(dim * mlp_ratio))
        self.layer_scale_1 = nn.Parameter(1e-2 * torch.ones(dim))
        self.layer_scale_2 = nn.Parameter(1e-2 * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (n, dim, h, w) -> same shape
        x = x + self.layer_scale_1.view(1, -1, 1, 1) * self.attn(self.norm1(x))
        return x + self.layer_scale_2.view(1, -1, 1, 1) * self.mlp(self.norm2(x))


class VAN(nn.Module):
    """Stages of (3×3 stride-2 patch embedding + BN, VAN blocks, LayerNorm), mean-pooled.

    Parameters
    ----------
    in_channels
        Input channels (1 for grey-scale images).
    attention
        ``"lska"`` (separable) or ``"lka"`` (square depthwise kernels).
    kernel_size
        Receptive field ``k`` of the gating unit, a key of :data:`KERNELS`.
    widths, depths
        Channels and blocks of every stage (same length).
    mlp_ratio
        Hidden width of the block MLPs over the stage width.
    """

    def __init__(self, in_channels: int = 1, *, attention: Attention = "lska", kernel_size: int = 7,
                 widths: Sequence[int] = (16, 32, 64), depths: Sequence[int] = (1, 1, 1),
                 mlp_ratio: float = 4.0) -> None:
        super().__init__()
        widths, depths = tuple(widths), tuple(depths)
        _check_options(f"van_{attention}", kernel_size, widths, depths, mlp_ratio)
        self.embeds = nn.ModuleList()
        self.stages = nn.ModuleList()
        self.norms = nn.ModuleList()
        for width, depth, in_ch in zip(widths, depths, (in_channels, *widths[:-1])):
            self.embeds.append(nn.Sequential(nn.Conv2d(in_ch, width, 3, stride=2, padding=1), nn.BatchNorm2d(width)))
            self.stages.append(nn.Sequential(*(VANBlock(width, kernel_size, attention, mlp_ratio)
                                               for _ in range(depth))))
            self.norms.append(nn.LayerNorm(width, eps=1e-6))
        self.out_dim: int = widths[-1]
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (n, c, s, s) -> (n, out_dim)
        for embed, stage, norm in zip(self.embeds, self.stages, self.norms):
            x = stage(embed(x))
            x = norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # LayerNorm over channels per position
        return x.mean(dim=(2, 3))


def _check_options(name: str, kernel_size: int, widths: tuple[int, ...], depths: tuple[int, ...],
                   mlp_ratio: float) -> None:
    """``ValueError`` naming the model and the bad ``model.params`` option, if any."""
    prefix = f"model.params for {name!r}:"
    try:
        kernel_parts(kernel_size)
    except ValueError as err:
        raise ValueError(f"{prefix} {err}") from None
    sizes = (*widths, *depths)
    if not widths or len(widths) != len(depths) or not all(isinstance(v, int) and v >= 1 for v in sizes):
        raise ValueError(f"{prefix} widths and depths must be equally long lists of positive integers "
                         f"(got {list(widths)} and {list(depths)})")
    if not mlp_ratio > 0:
        raise ValueError(f"{prefix} mlp_ratio must be positive (got {mlp_ratio})")


def _init_weights(m: nn.Module) -> None:
    """Official VAN init: conv weights ~ N(0, 2/fan_out) with fan_out per group, zero biases."""
    if isinstance(m, nn.Conv2d):
        fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
        nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
        if m.bias is not None:
            nn.init.zeros_(m.bias)


@register_model("van_lska")
def van_lska(in_channels: int = 1, *, kernel_size: int = 7, widths: Sequence[int] = (16, 32, 64),
             depths: Sequence[int] = (1, 1, 1), mlp_ratio: float = 4.0) -> nn.Module:
    """VAN with separable large-kernel attention (LSKA, k = 7 by default), 64-d features."""
    return VAN(in_channels, attention="lska", kernel_size=kernel_size, widths=widths, depths=depths,
               mlp_ratio=mlp_ratio)


@register_model("van_lka")
def van_lka(in_channels: int = 1, *, kernel_size: int = 7, widths: Sequence[int] = (16, 32, 64),
            depths: Sequence[int] = (1, 1, 1), mlp_ratio: float = 4.0) -> nn.Module:
    """VAN with square large-kernel attention (LKA, same k table as LSKA), 64-d features."""
    return VAN(in_channels, attention="lka", kernel_size=kernel_size, widths=widths, depths=depths,
               mlp_ratio=mlp_ratio)

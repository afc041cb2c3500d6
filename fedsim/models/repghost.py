"""RepGhost-style 0.5× backbones for small 1-channel images (RepGhost, arXiv 2211.06088).

A RepGhost module (Chen et al.) computes ``x1 = primary(x)`` (1×1 conv-BN-ReLU) and adds a
cheap depthwise operation of ``x1`` to ``x1`` itself (feature re-use by addition instead of
GhostNet's concatenation), so at inference the identity branch fuses into the depthwise
kernel. FedRepOpt (arXiv 2409.15898) trains the fused, *plain* module with RepOpt-SGD; its
CSLA twin scales the depthwise branch by a constant per-channel scale and the identity
branch by a trainable per-channel weight, with one BN after the sum (``RepOptGhostModule``
of the official ``repoptimizer/repoptghostnet_model.py``, StevenLauHKHK/FedRepOpt, and
``model/repghost.py`` of ChengpengChen/RepGhost). Registered forms:

- ``repghost`` — plain: depthwise 3×3 → BN (→ ReLU), kernels initialised from the merged
  Hyper-Searched CSLA model, scales kept as buffers; train with RepOpt-SGD.
- ``repghost_csla`` — CSLA with constant searched scales; ``repghost_hs`` — all scales
  trainable (Hyper-Search).

The layout is RepGhostNet 0.5×'s first three stages (cfgs ``k, exp, c, s``: 3/8/16/1,
3/24/24/2, 3/36/24/1, 5/36/40/2, 5/60/40/1) without squeeze-excitation, a stride-1 stem for
28 px inputs, and the final 1×1 conv-BN-ReLU to ``2·exp·width`` = 60 features.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from fedsim.models.repopt_vgg import init_plain_from_csla
from fedsim.optim.repopt import BranchScales, ProxyData, grad_mult_mask, identity_kernel, search_scales
from fedsim.registry import register_model

CFGS = ((3, 8, 16, 1), (3, 24, 24, 2), (3, 36, 24, 1), (5, 36, 40, 2), (5, 60, 40, 1))
WIDTH = 0.5
SEARCH_STEPS = 30  # as repopt_vgg.SEARCH_STEPS

ModuleFactory = Callable[[int, int, bool, int], nn.Module]  # (in, out, relu, index in stage)


def make_divisible(v: float, divisor: int = 4) -> int:
    """Round ``v`` to a multiple of ``divisor``, never more than 10 % down (MobileNet rule)."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


def primary_conv(in_ch: int, out_ch: int, relu: bool) -> nn.Sequential:
    """The ghost module's 1×1 conv → BN (→ ReLU)."""
    layers: list[nn.Module] = [nn.Conv2d(in_ch, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch)]
    return nn.Sequential(*layers, nn.ReLU(inplace=True)) if relu else nn.Sequential(*layers)


class PlainGhostModule(nn.Module):
    """``act(BN(dw3x3(primary(x))))`` — the fused RepGhost module, with its frozen scale."""

    def __init__(self, in_ch: int, out_ch: int, relu: bool) -> None:
        super().__init__()
        self.primary_conv = primary_conv(in_ch, out_ch, relu)
        self.cheap_conv = nn.Conv2d(out_ch, out_ch, 3, padding=1, groups=out_ch, bias=False)
        self.final_bn = nn.BatchNorm2d(out_ch)
        self.relu = relu
        self.register_buffer("scale_conv", torch.ones(out_ch))

    @property
    def reparam_weight(self) -> nn.Parameter:
        """The depthwise kernel whose gradient RepOpt-SGD multiplies."""
        return self.cheap_conv.weight

    def grad_mult(self, power: int = 2) -> torch.Tensor:
        """``s^power`` everywhere plus 1 at every channel's centre tap (the identity branch)."""
        return grad_mult_mask(self.cheap_conv.weight.shape, self.scale_conv, identity=True, power=power)

    def load_reparam(self, kernel: torch.Tensor, scales: BranchScales) -> None:
        """Set the depthwise kernel (a merged CSLA kernel) and its scale."""
        with torch.no_grad():
            self.cheap_conv.weight.copy_(kernel)
            self.scale_conv.copy_(scales.conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.final_bn(self.cheap_conv(self.primary_conv(x)))
        return F.relu(out) if self.relu else out


class CSLAGhostModule(nn.Module):
    """``x1 = primary(x)``; ``act(BN(s·dw3x3(x1) + d⊙x1))`` with constant ``s``, trainable ``d``.

    ``trainable_scales=True`` (Hyper-Search) makes ``s`` a parameter too. Initial values:
    ``s = conv_scale``, ``d = 1`` (official ``fusion_scale``), unless ``scales`` is given.
    """

    def __init__(self, in_ch: int, out_ch: int, relu: bool, *, scales: BranchScales | None = None,
                 trainable_scales: bool = False, conv_scale: float = 1.0) -> None:
        super().__init__()
        self.primary_conv = primary_conv(in_ch, out_ch, relu)
        self.cheap_conv = nn.Conv2d(out_ch, out_ch, 3, padding=1, groups=out_ch, bias=False)
        self.final_bn = nn.BatchNorm2d(out_ch)
        self.relu = relu
        if scales is None:
            scales = BranchScales(torch.full((out_ch,), conv_scale), None, torch.ones(out_ch))
        conv = scales.conv.detach().clone().float()
        if trainable_scales:
            self.scale_conv = nn.Parameter(conv)
        else:
            self.register_buffer("scale_conv", conv)
        self.scale_identity = nn.Parameter(scales.identity.detach().clone().float())

    def branch_scales(self) -> BranchScales:
        """Detached copies of ``(s, None, d)``."""
        return BranchScales(self.scale_conv.detach().clone(), None, self.scale_identity.detach().clone())

    def merged_kernel(self) -> torch.Tensor:
        """The depthwise kernel equal to both branches: ``s·W + d·I`` (I: centre taps)."""
        weight = self.cheap_conv.weight
        ident = identity_kernel(weight.shape).to(weight)
        kernel = weight * self.scale_conv.view(-1, 1, 1, 1) + ident * self.scale_identity.view(-1, 1, 1, 1)
        return kernel.detach().clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.primary_conv(x)
        out = (self.cheap_conv(x1) * self.scale_conv.view(1, -1, 1, 1)
               + x1 * self.scale_identity.view(1, -1, 1, 1))
        out = self.final_bn(out)
        return F.relu(out) if self.relu else out


class GhostBottleneck(nn.Module):
    """ghost1 (ReLU) → [depthwise k×k stride-s conv-BN] → ghost2 (linear), plus shortcut."""

    def __init__(self, module: ModuleFactory, in_ch: int, mid_ch: int, out_ch: int, k: int,
                 stride: int, index_in_stage: int) -> None:
        super().__init__()
        self.ghost1 = module(in_ch, mid_ch, True, 2 * index_in_stage - 1)
        self.dw: nn.Module = nn.Identity()
        if stride > 1:
            self.dw = nn.Sequential(nn.Conv2d(mid_ch, mid_ch, k, stride, (k - 1) // 2, groups=mid_ch,
                                              bias=False), nn.BatchNorm2d(mid_ch))
        self.ghost2 = module(mid_ch, out_ch, False, 2 * index_in_stage)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, in_ch, k, stride, (k - 1) // 2, groups=in_ch, bias=False),
                nn.BatchNorm2d(in_ch), nn.Conv2d(in_ch, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ghost2(self.dw(self.ghost1(x))) + self.shortcut(x)


class RepGhostNet(nn.Module):
    """Stem 3×3 conv-BN-ReLU, ghost bottlenecks (``CFGS`` × ``width``), 1×1 conv-BN-ReLU, pool."""

    def __init__(self, module: ModuleFactory, in_channels: int = 1, *, width: float = WIDTH) -> None:
        super().__init__()
        stem = make_divisible(16 * width)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, stem, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(stem), nn.ReLU(inplace=True))
        blocks: list[nn.Module] = []
        in_ch, index = stem, 0
        for k, exp, c, s in CFGS:
            out_ch, mid_ch = make_divisible(c * width), make_divisible(exp * width)
            index = index + 1 if (s == 1 and in_ch == out_ch) else 1  # official num_stage_blocks
            blocks.append(GhostBottleneck(module, in_ch, mid_ch, out_ch, k, s, index))
            in_ch = out_ch
        self.blocks = nn.Sequential(*blocks)
        self.out_dim: int = make_divisible(CFGS[-1][1] * width * 2)
        self.head = nn.Sequential(nn.Conv2d(in_ch, self.out_dim, 1, bias=False),
                                  nn.BatchNorm2d(self.out_dim), nn.ReLU(inplace=True))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.in_channels = in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (n, c, h, w) -> (n, out_dim)
        return torch.flatten(self.pool(self.head(self.blocks(self.stem(x)))), 1)

    def reparameterize(self) -> nn.Module:
        """The inference form: the CSLA or Hyper-Search model (``repghost_csla``,
        ``repghost_hs``) folded into its plain twin (merged depthwise kernels); a plain model
        (``repghost``) is already in that form and returns itself."""
        if not any(isinstance(m, CSLAGhostModule) for m in self.modules()):
            return self
        return init_plain_from_csla(plain_ghost(self.in_channels), self)


def plain_ghost(in_channels: int = 1) -> RepGhostNet:
    """The plain RepGhost 0.5× layout with unit scales (not yet initialised from CSLA)."""
    return RepGhostNet(lambda i, o, relu, _: PlainGhostModule(i, o, relu), in_channels)


def csla_ghost(in_channels: int = 1, scales: list[BranchScales] | None = None, *,
               trainable_scales: bool = False) -> RepGhostNet:
    """The CSLA (or, with ``trainable_scales``, Hyper-Search) RepGhost 0.5× with ``scales``."""
    queue = list(scales) if scales is not None else None

    def module(i: int, o: int, relu: bool, index: int) -> nn.Module:
        # official Hyper-Search init of the cheap branch: sqrt(2 / (num_stage_modules + 1))
        return CSLAGhostModule(i, o, relu, scales=queue.pop(0) if queue is not None else None,
                               trainable_scales=trainable_scales, conv_scale=math.sqrt(2 / (index + 1)))

    return RepGhostNet(module, in_channels)


@lru_cache(maxsize=8)
def searched_ghost_scales(in_channels: int, steps: int, seed: int,
                        proxy: ProxyData | None) -> tuple[BranchScales, ...]:
    """Hyper-Searched scales of the RepGhost layout, once per process."""
    return tuple(search_scales(lambda: csla_ghost(in_channels, trainable_scales=True), steps=steps,
                               seed=seed, proxy=proxy))


@register_model("repghost", repopt=True, hyper_search=True)
def repghost(in_channels: int = 1, *, search_steps: int = SEARCH_STEPS, search_seed: int = 0,
             proxy: ProxyData | None = None) -> nn.Module:
    """RepGhost 0.5× (plain, fused depthwise) from merged Hyper-Searched CSLA; use repopt-sgd, 60-d."""
    csla = repghost_csla(in_channels, search_steps=search_steps, search_seed=search_seed, proxy=proxy)
    return init_plain_from_csla(plain_ghost(in_channels), csla)


@register_model("repghost_csla", hyper_search=True)
def repghost_csla(in_channels: int = 1, *, search_steps: int = SEARCH_STEPS,
                  search_seed: int = 0, proxy: ProxyData | None = None) -> nn.Module:
    """CSLA RepGhost 0.5× (scaled depthwise + identity, constant searched scales), 60-d features."""
    return csla_ghost(in_channels, list(searched_ghost_scales(in_channels, search_steps, search_seed, proxy)))


@register_model("repghost_hs")
def repghost_hs(in_channels: int = 1) -> nn.Module:
    """Hyper-Search RepGhost 0.5× (all scales trainable), 60-d features."""
    return csla_ghost(in_channels, trainable_scales=True)

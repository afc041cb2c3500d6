"""RepOpt-VGG backbones for small 1-channel images (RepOptimizers, arXiv 2205.15242).

Three forms of one VGG-style layout, as in the official ``repoptimizer/repoptvgg_model.py``
(DingXiaoH/RepOptimizers, reused by FedRepOpt, arXiv 2409.15898):

- ``repopt_vgg`` — the *plain* (target) model: stacks of 3×3 conv → BN → ReLU, trained with
  RepOpt-SGD (:mod:`fedsim.optim.repopt`). Its kernels start as the merged kernels of a
  CSLA model whose scales came from Hyper-Search, and it keeps those scales as buffers.
- ``repvgg_csla`` — the CSLA model: each block sums a 3×3 conv and a 1×1 conv, each times a
  constant per-output-channel scale, and (when in == out and stride 1) the input times a
  trainable per-channel weight; then BN → ReLU. No BN inside the branches.
- ``repvgg_hs`` — the Hyper-Search model: the CSLA block with all scales trainable.

Scale initialisation follows the official code: branch scales 1 for the first block of a
stage and ``sqrt(2 / i)`` for its ``i``-th block, identity scales 1. Widths and depths are
scaled down for CPU (16/32/64 channels, two blocks per stage, 64-d features).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from fedsim.optim.repopt import BranchScales, ProxyData, grad_mult_mask, identity_kernel, search_scales
from fedsim.registry import register_model

WIDTHS = (16, 32, 64)
DEPTHS = (2, 2, 2)
SEARCH_STEPS = 30  # Hyper-Search batches of 32 at model build (~1 epoch of the proxy pool)

BlockFactory = Callable[[int, int, int, int], nn.Module]  # (in, out, stride, index in stage)


def scale_init(index_in_stage: int) -> float:
    """Initial branch scale of a stage's ``i``-th block (official ``_make_stage``)."""
    return 1.0 if index_in_stage == 0 else math.sqrt(2.0 / index_in_stage)


class PlainVGGBlock(nn.Module):
    """3×3 conv → BN → ReLU (``RealVGGBlock``) holding the frozen scales of its CSLA twin."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)
        self.has_identity = in_ch == out_ch and stride == 1
        self.register_buffer("scale_conv", torch.ones(out_ch))
        self.register_buffer("scale_1x1", torch.ones(out_ch))

    @property
    def reparam_weight(self) -> nn.Parameter:
        """The kernel whose gradient RepOpt-SGD multiplies."""
        return self.conv.weight

    def grad_mult(self, power: int = 2) -> torch.Tensor:
        """Gradient multiplier of ``conv.weight`` from the stored scales."""
        return grad_mult_mask(self.conv.weight.shape, self.scale_conv, self.scale_1x1,
                              identity=self.has_identity, power=power)

    def load_reparam(self, kernel: torch.Tensor, scales: BranchScales) -> None:
        """Set the kernel (a merged CSLA kernel) and the scales it was merged with."""
        with torch.no_grad():
            self.conv.weight.copy_(kernel)
            self.scale_conv.copy_(scales.conv)
            self.scale_1x1.copy_(scales.one_by_one)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class CSLAVGGBlock(nn.Module):
    """``s3·conv3x3(x) + s1·conv1x1(x) [+ d⊙x]`` → BN → ReLU (``LinearAddBlock``).

    Parameters
    ----------
    in_ch, out_ch, stride
        Shape of the block; the identity branch exists when ``in_ch == out_ch`` and stride 1.
    scales
        Initial scales; ``None`` gives the official initial values with ``conv_scale``.
    trainable_scales
        ``True`` for Hyper-Search (scales are parameters); ``False`` for CSLA (``s3``, ``s1``
        are constant buffers; the identity branch's weight ``d`` is always trainable).
    conv_scale
        Initial ``s3`` and ``s1`` when ``scales`` is ``None``.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int, *, scales: BranchScales | None = None,
                 trainable_scales: bool = False, conv_scale: float = 1.0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.conv_1x1 = nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)
        self.has_identity = in_ch == out_ch and stride == 1
        if scales is None:
            full = torch.full((out_ch,), conv_scale)
            scales = BranchScales(full, full, torch.ones(out_ch) if self.has_identity else None)
        for name, value in (("scale_conv", scales.conv), ("scale_1x1", scales.one_by_one)):
            value = value.detach().clone().float()
            if trainable_scales:
                self.register_parameter(name, nn.Parameter(value))
            else:
                self.register_buffer(name, value)
        self.scale_identity = (nn.Parameter(scales.identity.detach().clone().float())
                               if self.has_identity else None)

    def branch_scales(self) -> BranchScales:
        """Detached copies of ``(s3, s1, d)``."""
        ident = self.scale_identity.detach().clone() if self.scale_identity is not None else None
        return BranchScales(self.scale_conv.detach().clone(), self.scale_1x1.detach().clone(), ident)

    def merged_kernel(self) -> torch.Tensor:
        """The single 3×3 kernel equal to the three branches: ``s3·W3 + s1·pad(W1) + diag(d)``."""
        kernel = (self.conv.weight * self.scale_conv.view(-1, 1, 1, 1)
                  + F.pad(self.conv_1x1.weight, [1, 1, 1, 1]) * self.scale_1x1.view(-1, 1, 1, 1))
        if self.scale_identity is not None:
            ident = identity_kernel(kernel.shape).to(kernel)
            kernel = kernel + ident * self.scale_identity.view(-1, 1, 1, 1)
        return kernel.detach().clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = (self.conv(x) * self.scale_conv.view(1, -1, 1, 1)
               + self.conv_1x1(x) * self.scale_1x1.view(1, -1, 1, 1))
        if self.scale_identity is not None:
            out = out + x * self.scale_identity.view(1, -1, 1, 1)
        return F.relu(self.bn(out))


class VGGNet(nn.Module):
    """Stages of blocks (stride 2 at the start of every stage but the first), global pool."""

    def __init__(self, block: BlockFactory, in_channels: int = 1, *,
                 widths: tuple[int, ...] = WIDTHS, depths: tuple[int, ...] = DEPTHS) -> None:
        super().__init__()
        stages: list[nn.Module] = []
        in_ch = in_channels
        for s, (width, depth) in enumerate(zip(widths, depths, strict=True)):
            blocks = [block(in_ch if i == 0 else width, width, 2 if (s > 0 and i == 0) else 1, i)
                      for i in range(depth)]
            stages.append(nn.Sequential(*blocks))
            in_ch = width
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_dim: int = widths[-1]
        self.in_channels = in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (n, c, h, w) -> (n, out_dim)
        return torch.flatten(self.pool(self.stages(x)), 1)

    def reparameterize(self) -> nn.Module:
        """The inference form: the CSLA or Hyper-Search model (``repvgg_csla``, ``repvgg_hs``)
        folded into its plain twin (merged 3×3 kernels, :func:`init_plain_from_csla`); a plain
        model (``repopt_vgg``) is already in that form and returns itself."""
        if not any(isinstance(m, CSLAVGGBlock) for m in self.modules()):
            return self
        return init_plain_from_csla(plain_vgg(self.in_channels), self)


def plain_vgg(in_channels: int = 1) -> VGGNet:
    """The plain RepOpt-VGG layout with unit scales (not yet initialised from a CSLA model)."""
    return VGGNet(lambda i, o, s, _: PlainVGGBlock(i, o, s), in_channels)


def csla_vgg(in_channels: int = 1, scales: list[BranchScales] | None = None, *,
             trainable_scales: bool = False) -> VGGNet:
    """The CSLA (or, with ``trainable_scales``, Hyper-Search) VGG with ``scales`` per block."""
    queue = list(scales) if scales is not None else None

    def block(i: int, o: int, s: int, index: int) -> nn.Module:
        return CSLAVGGBlock(i, o, s, scales=queue.pop(0) if queue is not None else None,
                            trainable_scales=trainable_scales, conv_scale=scale_init(index))

    return VGGNet(block, in_channels)


def init_plain_from_csla(plain: nn.Module, csla: nn.Module) -> nn.Module:
    """Initialise ``plain`` from ``csla``: merged kernels, scales, every other tensor by name.

    Works for any plain/CSLA pair whose re-parameterised modules come in the same order
    (plain modules have ``load_reparam``, CSLA modules ``merged_kernel``/``branch_scales``)
    and whose other tensors share names and shapes. Returns ``plain``.
    """
    targets = [m for m in plain.modules() if hasattr(m, "load_reparam")]
    sources = [m for m in csla.modules() if hasattr(m, "merged_kernel")]
    if len(targets) != len(sources):
        raise ValueError(f"plain model has {len(targets)} re-parameterised modules, "
                         f"CSLA model {len(sources)}")
    source_state = csla.state_dict()
    with torch.no_grad():
        for name, tensor in plain.state_dict().items():
            if name in source_state and source_state[name].shape == tensor.shape:
                tensor.copy_(source_state[name])
    for target, source in zip(targets, sources):
        target.load_reparam(source.merged_kernel(), source.branch_scales())
    return plain


@lru_cache(maxsize=8)
def searched_vgg_scales(in_channels: int, steps: int, seed: int,
                        proxy: ProxyData | None) -> tuple[BranchScales, ...]:
    """Hyper-Searched scales of the VGG layout, once per process (see :func:`search_scales`)."""
    return tuple(search_scales(lambda: csla_vgg(in_channels, trainable_scales=True), steps=steps,
                               seed=seed, proxy=proxy))


@register_model("repopt_vgg", repopt=True, hyper_search=True)
def repopt_vgg(in_channels: int = 1, *, search_steps: int = SEARCH_STEPS, search_seed: int = 0,
               proxy: ProxyData | None = None) -> nn.Module:
    """RepOpt-VGG (plain 3×3 conv-BN-ReLU) from merged Hyper-Searched CSLA; use repopt-sgd, 64-d."""
    csla = repvgg_csla(in_channels, search_steps=search_steps, search_seed=search_seed, proxy=proxy)
    return init_plain_from_csla(plain_vgg(in_channels), csla)


@register_model("repvgg_csla", hyper_search=True)
def repvgg_csla(in_channels: int = 1, *, search_steps: int = SEARCH_STEPS, search_seed: int = 0,
                proxy: ProxyData | None = None) -> nn.Module:
    """CSLA VGG (3×3 + 1×1 + identity, constant Hyper-Searched scales), 64-d features."""
    return csla_vgg(in_channels, list(searched_vgg_scales(in_channels, search_steps, search_seed, proxy)))


@register_model("repvgg_hs")
def repvgg_hs(in_channels: int = 1) -> nn.Module:
    """Hyper-Search VGG (CSLA blocks with trainable scales), 64-d features."""
    return csla_vgg(in_channels, trainable_scales=True)

"""AudioRepInceptionNeXt and AudioInceptionNeXt for log-mel spectrograms, CPU-sized (Lau et al.,
arXiv 2404.13551 and arXiv 2307.07265). Both share the stem, stages, shortcut and init below;
only the depthwise part of the block differs.

Spectrograms are 1-channel images ``(n, 1, H, W)``. As in the official code (input laid out
time × frequency) the "temporal" depthwise stage runs along axis 2 (``k×1`` kernels) and the
"frequency" stage along axis 3 (``1×k``); a task that feeds ``(n, 1, F, T)`` simply swaps
which stage sees which axis, the architecture is symmetric in its two stages.

Block, checked against ``MSThreeWayDWBottleneckTransform`` and ``AudioRepInceptionNeXtBlock``
of the official ``slowfast/models/audiorepinceptionnext_helper.py``
(StevenLauHKHK/AudioRepInceptionNeXt)::

    h = ReLU(BN(conv1x1(x)))                         # carries the stage's stride
    h = ReLU(h + Σ_k BN_k(dw_{k×1}(h)))              # temporal, k ∈ kernels
    h = ReLU(h + Σ_k BN_k(dw_{1×k}(h)))              # frequency
    h = BN(conv1x1(ReLU(BN(conv1x1(h)))))            # expand ×4, reduce
    y = ReLU(shortcut(x) + h)                        # identity or 1×1 conv + BN (stride)

The official head 1×1 conv + BN + ReLU is present in *every* block (width-preserving where
the width does not change), not only where the width changes; the residual and its final
ReLU live in the block wrapper. The last BN of each block is zero-initialised
(``RESNET.ZERO_INIT_FINAL_BN: True`` in the official configs); conv weights are He-normal
(fan-out), as ``c2_msra_fill``. Stem: 5×7 conv stride 2 + BN + ReLU + 3×3 max-pool stride 2;
stages 2–4 downsample by 2 on both axes; global average pool gives ``out_dim`` features.

Scaled for CPU (paper / official value in brackets): widths 16/32/64/128 (64/128/256/512,
same 1:2:4:8 ratios, stem width = first stage width as in the official code), depths
1/1/2/1 (3/4/6/3), expansion 4 (4), depthwise kernels 11/5/3 (21/11/3: three branches kept,
sized for ~64-px spectrograms whose first stage map is ~16 px). All are options.

Inference-time re-parameterisation: :func:`fuse_conv_bn` folds each depthwise conv + BN
(running statistics) into a kernel and a bias; a :class:`ThreeWayDepthwise` stage sums its
three folded kernels, the smaller ones zero-padded into the centre of the largest, into one
depthwise conv with bias (official ``get_equivalent_kernel_bias``). The identity stays a
skip. :meth:`AudioRepInceptionNeXt.reparameterize` folds in place; :func:`reparameterize`
returns a folded eval-mode copy (what export writes). Folding is exact in eval mode only:
in train mode BN normalises with batch statistics, which no fixed kernel reproduces.

AudioInceptionNeXt (the non-Rep predecessor), checked against ``MSThreeWayDWBottleneckTransform``
and ``AudioInceptionNeXtBlock`` of the official ``slowfast/models/audioinceptionnext_helper.py``
(StevenLauHKHK/AudioInceptionNeXt, commit 506cf80)::

    h = BN(conv1x1(x))                                          # no ReLU here
    h = Σ_k ReLU(BN(dw_{1×k}(ReLU(BN(dw_{k×1}(h))))))           # k parallel separable paths
    h = BN(conv1x1(BN(conv1x1(h))))                             # expand ×4, reduce; no ReLU between
    y = ReLU(shortcut(x) + h)

Each kernel size is a separable path (k×1 then 1×k, BN + ReLU after each), and the paths are
summed with no identity inside the block. The ReLUs inside every path are what rule out a fold:
the model has no ``reparameterize``. Same stem, widths, depths and kernels as the Rep variant
(official configs: kernels 21/11/3 on both axes); with the same options both models have the
same number of parameters (six depthwise conv + BN per block), the Rep one fewer after folding.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from fedsim.registry import register_model

WIDTHS = (16, 32, 64, 128)
DEPTHS = (1, 1, 2, 1)
KERNELS = (11, 5, 3)
EXPANSION = 4
STEM_KERNEL = (5, 7)


def conv_bn(in_ch: int, out_ch: int, kernel: int | tuple[int, int] = 1, *, stride: int = 1,
            groups: int = 1) -> nn.Sequential:
    """``BN(conv(x))`` with 'same' padding for odd kernels and no conv bias."""
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    conv = nn.Conv2d(in_ch, out_ch, (kh, kw), stride=stride, padding=(kh // 2, kw // 2),
                     groups=groups, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(out_ch))


def fuse_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Kernel and bias of one conv equal to ``bn(conv(x))`` with BN's running statistics."""
    std = (bn.running_var + bn.eps).sqrt()
    scale = bn.weight / std  # c
    kernel = conv.weight * scale.reshape(-1, 1, 1, 1)
    bias = bn.bias - bn.running_mean * scale
    if conv.bias is not None:
        bias = bias + conv.bias * scale
    return kernel, bias


class ThreeWayDepthwise(nn.Module):
    """Parallel depthwise conv + BN branches along one axis, summed (the identity is added by
    the block); :meth:`fold` turns them into one depthwise conv with bias.

    Parameters
    ----------
    channels
        Input and output channels (depthwise: one filter per channel).
    kernels
        Odd branch kernel lengths; the largest sets the folded kernel.
    axis
        2 for ``k×1`` kernels (temporal stage), 3 for ``1×k`` (frequency stage).
    """

    def __init__(self, channels: int, kernels: tuple[int, ...], *, axis: int) -> None:
        super().__init__()
        if axis not in (2, 3):
            raise ValueError(f"axis must be 2 (k×1) or 3 (1×k), got {axis}")
        self.axis = axis
        self.size = max(kernels)
        self.branches = nn.ModuleList(
            conv_bn(channels, channels, self._shape(k), groups=channels) for k in kernels)
        self.fused: nn.Conv2d | None = None

    def _shape(self, k: int) -> tuple[int, int]:
        return (k, 1) if self.axis == 2 else (1, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused is not None:
            return self.fused(x)
        return sum(branch(x) for branch in self.branches)

    @torch.no_grad()
    def folded_kernel_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One depthwise kernel ``(c, 1, kh, kw)`` and bias ``(c,)`` equal to the branches' sum."""
        kernel = bias = 0
        for conv, bn in self.branches:
            k, b = fuse_conv_bn(conv, bn)
            pad = (self.size - conv.kernel_size[self.axis - 2]) // 2
            k = F.pad(k, (0, 0, pad, pad) if self.axis == 2 else (pad, pad, 0, 0))  # into the centre
            kernel, bias = kernel + k, bias + b
        return kernel, bias

    @torch.no_grad()
    def fold(self) -> None:
        """Replace the branches by one depthwise conv with bias (no-op when already folded)."""
        if self.fused is not None:
            return
        kernel, bias = self.folded_kernel_bias()
        first = self.branches[0][0]
        shape = self._shape(self.size)
        fused = nn.Conv2d(first.in_channels, first.out_channels, shape, padding=(shape[0] // 2, shape[1] // 2),
                          groups=first.groups, bias=True).to(kernel.device, kernel.dtype)
        fused.weight.copy_(kernel)
        fused.bias.copy_(bias)
        self.fused = fused
        self.branches = nn.ModuleList()


def shortcut(in_ch: int, out_ch: int, stride: int) -> nn.Module:
    """Identity, or 1×1 conv + BN when the width or the resolution changes."""
    if in_ch != out_ch or stride != 1:
        return conv_bn(in_ch, out_ch, 1, stride=stride)
    return nn.Identity()


class SeparablePaths(nn.Module):
    """AudioInceptionNeXt's depthwise mixer: one path per kernel length k, each a depthwise
    ``k×1`` conv + BN + ReLU then ``1×k`` conv + BN + ReLU; the paths are summed."""

    def __init__(self, channels: int, kernels: tuple[int, ...]) -> None:
        super().__init__()
        self.paths = nn.ModuleList(nn.Sequential(
            *conv_bn(channels, channels, (k, 1), groups=channels), nn.ReLU(inplace=True),
            *conv_bn(channels, channels, (1, k), groups=channels), nn.ReLU(inplace=True),
        ) for k in kernels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sum(path(x) for path in self.paths)


class InceptionBlock(nn.Module):
    """One AudioInceptionNeXt block (official non-Rep ``MSThreeWayDWBottleneckTransform`` inside
    ``AudioInceptionNeXtBlock``): head 1×1 + BN, separable paths, 1×1 expand / reduce, residual."""

    def __init__(self, in_ch: int, out_ch: int, *, stride: int, kernels: tuple[int, ...],
                 expansion: int) -> None:
        super().__init__()
        self.head = conv_bn(in_ch, out_ch, 1, stride=stride)
        self.mixer = SeparablePaths(out_ch, kernels)
        self.expand = conv_bn(out_ch, out_ch * expansion)
        self.reduce = conv_bn(out_ch * expansion, out_ch)
        self.shortcut = shortcut(in_ch, out_ch, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.mixer(self.head(x))  # official: no ReLU after the head
        h = self.reduce(self.expand(h))  # official: no ReLU between expand and reduce
        return torch.relu(self.shortcut(x) + h)


class RepInceptionBlock(nn.Module):
    """One AudioRepInceptionNeXt block (official ``MSThreeWayDWBottleneckTransform`` inside
    ``AudioRepInceptionNeXtBlock``): head 1×1, temporal and frequency three-way depthwise
    stages with identity, 1×1 expand / reduce, residual."""

    def __init__(self, in_ch: int, out_ch: int, *, stride: int, kernels: tuple[int, ...],
                 expansion: int) -> None:
        super().__init__()
        self.head = conv_bn(in_ch, out_ch, 1, stride=stride)
        self.temporal = ThreeWayDepthwise(out_ch, kernels, axis=2)
        self.frequency = ThreeWayDepthwise(out_ch, kernels, axis=3)
        self.expand = conv_bn(out_ch, out_ch * expansion)
        self.reduce = conv_bn(out_ch * expansion, out_ch)
        self.shortcut = shortcut(in_ch, out_ch, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.head(x))
        h = torch.relu(h + self.temporal(h))
        h = torch.relu(h + self.frequency(h))
        h = self.reduce(torch.relu(self.expand(h)))
        return torch.relu(self.shortcut(x) + h)


class AudioInceptionNeXtBackbone(nn.Module):
    """Stem, four stages of ``block`` (stride 2 from the second stage on), global average pool;
    the subclasses set ``block``.

    Parameters
    ----------
    in_channels
        Input channels (1 for a log-mel spectrogram).
    widths
        Channels of each stage (the stem has ``widths[0]``).
    depths
        Blocks in each stage.
    kernels
        Odd kernel lengths of the depthwise branches (paths) of each block, e.g. ``(11, 5, 3)``.
    expansion
        Width factor of the 1×1 expand layer.
    zero_init_last_bn
        Zero-initialise each block's last BN weight (official default), so every block starts
        as its shortcut.
    stem_stride
        Downsampling of the stem: 4 (official: stride-2 conv, then a stride-2 max-pool), 2
        (no max-pool) or 1 (stride-1 conv, no max-pool) — for short CPU-sized spectrograms,
        where the official stem leaves the last stage a 2×3 map of a 64×81 input.
    """

    block: type[nn.Module]

    def __init__(self, in_channels: int = 1, *, widths: tuple[int, ...] = WIDTHS,
                 depths: tuple[int, ...] = DEPTHS, kernels: tuple[int, ...] = KERNELS,
                 expansion: int = EXPANSION, zero_init_last_bn: bool = True, stem_stride: int = 4) -> None:
        super().__init__()
        _validate(widths, depths, kernels, expansion)
        if stem_stride not in (1, 2, 4):
            raise ValueError(f"stem_stride must be 1, 2 or 4 (got {stem_stride})")
        self.stem = nn.Sequential(
            *conv_bn(in_channels, widths[0], STEM_KERNEL, stride=min(stem_stride, 2)),
            nn.ReLU(inplace=True),
            *([nn.MaxPool2d(3, stride=2, padding=1)] if stem_stride == 4 else []),
        )
        stages: list[nn.Module] = []
        in_ch = widths[0]
        for i, (width, depth) in enumerate(zip(widths, depths)):
            stages.append(nn.Sequential(*(
                self.block(in_ch if b == 0 else width, width, stride=2 if (i > 0 and b == 0) else 1,
                           kernels=tuple(kernels), expansion=expansion)
                for b in range(depth))))
            in_ch = width
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_dim: int = widths[-1]
        self._init_weights(zero_init_last_bn)

    def _init_weights(self, zero_init_last_bn: bool) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_last_bn:
            for m in self.modules():
                if isinstance(m, self.block):
                    nn.init.zeros_(m.reduce[1].weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (n, c, h, w) -> (n, out_dim)
        return torch.flatten(self.pool(self.stages(self.stem(x))), 1)


class AudioInceptionNeXt(AudioInceptionNeXtBackbone):
    """AudioInceptionNeXt (arXiv 2307.07265): :class:`InceptionBlock` stages; nothing to fold."""

    block = InceptionBlock


class AudioRepInceptionNeXt(AudioInceptionNeXtBackbone):
    """AudioRepInceptionNeXt (arXiv 2404.13551): :class:`RepInceptionBlock` stages, whose
    depthwise branches :meth:`reparameterize` folds."""

    block = RepInceptionBlock

    @property
    def folded(self) -> bool:
        """Whether the depthwise branches have been folded (inference form)."""
        return all(m.fused is not None for m in self.modules() if isinstance(m, ThreeWayDepthwise))

    def reparameterize(self) -> AudioRepInceptionNeXt:
        """Fold every three-way depthwise stage in place with the current BN running
        statistics; returns ``self``. Equal outputs hold in eval mode."""
        for m in self.modules():
            if isinstance(m, ThreeWayDepthwise):
                m.fold()
        return self


def reparameterize(model: nn.Module) -> nn.Module:
    """A folded copy of ``model`` in eval mode (every :class:`ThreeWayDepthwise` folded);
    ``model`` itself is left untouched. Works on any module that contains such stages."""
    folded = copy.deepcopy(model).eval()
    for m in folded.modules():
        if isinstance(m, ThreeWayDepthwise):
            m.fold()
    return folded


def final_map_size(height: int, width: int, *, stem_stride: int = 4, stages: int = len(WIDTHS)) -> tuple[int, int]:
    """The last stage's map of a ``height × width`` input: each stride-2 step (the stem's conv
    and max-pool, every stage after the first) halves a side, rounding up ('same' padding)."""
    halvings = {4: 2, 2: 1, 1: 0}[stem_stride] + stages - 1
    for _ in range(halvings):
        height, width = -(-height // 2), -(-width // 2)
    return height, width


def stem_stride_for(height: int, width: int, *, min_side: int = 4, stages: int = len(WIDTHS)) -> int:
    """The input-size rule for ``stem_stride``: the largest of 4 (official), 2, 1 that leaves the
    last stage a map of at least ``min_side`` on its short side (1 if none does).

    The official stem was made for 128 mel bins × ~1000 frames (10 s clips), where 4 leaves a
    4×32 map; a CPU-sized 64 × 81 spectrogram (0.8 s) keeps 2×3 with it, 4×6 with 2 and 8×11
    with 1. Each halving of the stem's stride makes the stages about 4× dearer."""
    for stride in (4, 2, 1):
        if min(final_map_size(height, width, stem_stride=stride, stages=stages)) >= min_side:
            return stride
    return 1


def _validate(widths: tuple[int, ...], depths: tuple[int, ...], kernels: tuple[int, ...],
              expansion: int) -> None:
    if len(widths) != len(depths) or not widths:
        raise ValueError(f"widths and depths need one entry per stage; got {len(widths)} widths "
                         f"and {len(depths)} depths")
    if min(widths) < 1 or min(depths) < 1 or expansion < 1:
        raise ValueError("widths, depths and expansion must be positive integers")
    if not kernels or any(k < 1 or k % 2 == 0 for k in kernels):
        raise ValueError(f"depthwise kernels must be odd positive lengths (e.g. 11, 5, 3); got {tuple(kernels)}")


@register_model("audio_rep_inceptionnext", min_size=8)
def audio_rep_inceptionnext(in_channels: int = 1, **options) -> nn.Module:
    """AudioRepInceptionNeXt, CPU-sized (widths 16/32/64/128, depths 1/1/2/1, kernels 11/5/3), 128-d features."""
    return AudioRepInceptionNeXt(in_channels, **options)


@register_model("audio_inceptionnext", min_size=8)
def audio_inceptionnext(in_channels: int = 1, **options) -> nn.Module:
    """AudioInceptionNeXt, CPU-sized (widths 16/32/64/128, depths 1/1/2/1, kernels 11/5/3), 128-d features."""
    return AudioInceptionNeXt(in_channels, **options)

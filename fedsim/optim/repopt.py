"""RepOpt-SGD: plain models trained with the gradients of a multi-branch CSLA model.

FedRepOpt (Lau et al., arXiv 2409.15898) federates RepOptimizers (Ding et al., arXiv
2205.15242): a *plain* model (RepOpt-VGG: 3×3 conv-BN-ReLU; RepGhost: ghost modules with a
single depthwise cheap operation) is trained with gradients multiplied by constant masks,
so that every step equals a step on a Constant-Scale Linear Addition (CSLA) block
``y = s3·conv3x3(x) + s1·conv1x1(x) + d⊙x`` followed by merging its branches into one kernel.
With ``s3, s1`` constant per output channel and the identity branch's only weight ``d``
(per channel, initialised to the searched identity scale) trainable, one SGD step on
``(W3, W1, d)`` moves the merged kernel by ``-lr·M⊙G`` with (power ``p = 2``)

    M = s3^p everywhere, + s1^p at the centre tap, + 1 at the centre tap of entries out == in
    (when the block has an identity branch: ``d`` is a weight of its own, with scale 1).

AdamW-style rules use ``p = 1``. Weight decay is applied after multiplying (decay of the
branches is decay of the merged kernel), momentum works unchanged, no gradient clipping.
Checked against ``repoptimizer/repoptvgg_impl.py`` (``generate_grad_mults``),
``repoptimizer/repoptghostnet_impl.py`` and ``repoptimizer/repoptimizer_sgd.py`` of
DingXiaoH/RepOptimizers and StevenLauHKHK/FedRepOpt; ``tests/optim`` shows the equivalence.

Flow of the scales in fedsim
----------------------------
1. *Hyper-Search* (:func:`search_scales`), once per process, model layout and proxy data, at
   model build: the CSLA model with trainable scales is trained briefly, supervised, on
   labelled proxy batches that the task training the model provides (:class:`ProxyData`;
   the image task's are a fixed split of its own data, as the paper searches on CIFAR-100
   for Tiny-ImageNet). Without proxy data the official initial scales are used.
2. The scales are frozen (:func:`extract_scales`); a CSLA model with those constants is built
   and merged, and the plain model is initialised from the merged kernels. The plain model
   keeps the scales as persistent buffers (``scale_conv``, ``scale_1x1``), so they travel in
   the global weights and every client derives the same masks from the model alone
   (:func:`grad_mults`).
3. Clients train the plain model with ``build_optimizer("repopt-sgd", model, ...)``; the
   server is plain FedAvg.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from fedsim.registry import UnknownNameError, repopt_models
from fedsim.seeding import derive_seed

OPTIMIZERS = ("sgd", "repopt-sgd")


@dataclass(frozen=True)
class BranchScales:
    """Per-output-channel scales ``(c_out,)`` of one CSLA block, as Hyper-Search leaves them.

    ``conv`` scales the k×k branch, ``one_by_one`` the 1×1 branch (VGG blocks only) and
    ``identity`` is the identity branch's value (``None`` when the block has none).
    """

    conv: torch.Tensor
    one_by_one: torch.Tensor | None = None
    identity: torch.Tensor | None = None


def identity_kernel(shape: tuple[int, ...] | torch.Size) -> torch.Tensor:
    """The (grouped) conv kernel of shape ``(c_out, c_in/groups, k, k)`` computing ``y = x``.

    ``kernel[i, i % (c_in/groups), k//2, k//2] = 1`` as ``identity_kernel_for_groupwise_kernel``
    of the official ``repoptghostnet_impl.py``: the diagonal for a dense kernel with
    ``c_out == c_in``, every channel's own centre tap for a depthwise one.
    """
    c_out, in_per_group, kh, kw = shape
    kernel = torch.zeros(c_out, in_per_group, kh, kw)
    rows = torch.arange(c_out)
    kernel[rows, rows % in_per_group, kh // 2, kw // 2] = 1.0
    return kernel


def grad_mult_mask(shape: tuple[int, ...] | torch.Size, conv_scale: torch.Tensor,
                   scale_1x1: torch.Tensor | None = None, *, identity: bool,
                   power: int = 2) -> torch.Tensor:
    """The gradient multiplier of one plain kernel (``generate_grad_mults``).

    Parameters
    ----------
    shape
        Kernel shape ``(c_out, c_in/groups, k, k)``.
    conv_scale
        ``s3``, ``(c_out,)``: constant scale of the k×k branch.
    scale_1x1
        ``s1``, ``(c_out,)``: constant scale of the 1×1 branch, or ``None`` if there is none.
    identity
        Whether the block has an identity branch (adds 1 at the identity kernel's taps).
    power
        2 for SGD-style update rules, 1 for AdamW-style ones.
    """
    if power not in (1, 2):
        raise ValueError(f"power must be 1 (AdamW-style) or 2 (SGD-style), got {power}")
    c_out, in_per_group, kh, kw = shape
    mask = (conv_scale.detach().float() ** power).view(-1, 1, 1, 1).expand(*shape).clone()
    if scale_1x1 is not None:
        mask[:, :, kh // 2, kw // 2] += (scale_1x1.detach().float() ** power).view(-1, 1)
    if identity:
        if in_per_group != 1 and in_per_group != c_out:
            raise ValueError(f"no identity kernel for shape {tuple(shape)}: needs c_out == c_in")
        mask += identity_kernel(shape)
    return mask


def grad_mults(model: nn.Module, *, power: int = 2) -> dict[nn.Parameter, torch.Tensor]:
    """Parameter -> multiplier for every re-parameterised kernel of ``model``.

    Read from the model alone: every plain RepOpt module exposes ``reparam_weight`` and
    ``grad_mult(power)`` computed from its scale buffers. Other parameters are absent
    (multiplier 1). Masks live on their parameter's device and dtype.
    """
    return {m.reparam_weight: m.grad_mult(power).to(m.reparam_weight)
            for m in model.modules() if hasattr(m, "grad_mult")}


_model_grad_mults = grad_mults


class RepOptSGD(torch.optim.Optimizer):
    """SGD whose gradients are first multiplied by constant masks (``RepOptimizerSGD``).

    ``d = g ⊙ M (+ wd·w)``; with momentum ``b = μ·b + (1 − dampening)·d`` and ``d = b`` (or
    ``d + μ·b`` with Nesterov); ``w -= lr·d``. Parameters without a mask step as plain SGD.
    """

    def __init__(self, params: Iterable[nn.Parameter] | Iterable[dict],
                 grad_mults: dict[nn.Parameter, torch.Tensor], *, lr: float,
                 momentum: float = 0.0, dampening: float = 0.0, weight_decay: float = 0.0,
                 nesterov: bool = False) -> None:
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError("lr, momentum and weight_decay must be >= 0, "
                             f"got {lr}, {momentum}, {weight_decay}")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))
        self.grad_mults = grad_mults

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        """One update of every parameter with a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                mask = self.grad_mults.get(p)
                d_p = p.grad * mask if mask is not None else p.grad.clone()
                if group["weight_decay"]:
                    d_p.add_(p, alpha=group["weight_decay"])
                if group["momentum"]:
                    state = self.state[p]
                    if "momentum_buffer" not in state:
                        buf = state["momentum_buffer"] = d_p.clone()
                    else:
                        buf = state["momentum_buffer"]
                        buf.mul_(group["momentum"]).add_(d_p, alpha=1 - group["dampening"])
                    d_p = d_p.add(buf, alpha=group["momentum"]) if group["nesterov"] else buf
                p.add_(d_p, alpha=-group["lr"])
        return loss


def build_optimizer(name: str, model: nn.Module, *, lr: float, momentum: float = 0.0,
                    weight_decay: float = 0.0,
                    grad_mults: dict[nn.Parameter, torch.Tensor] | None = None) -> torch.optim.Optimizer:
    """The client optimiser ``name`` over all of ``model``'s parameters.

    ``"sgd"`` is ``torch.optim.SGD``; ``"repopt-sgd"`` is :class:`RepOptSGD` with ``grad_mults``
    or, when omitted, the masks read from the model (:func:`grad_mults`).
    """
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "repopt-sgd":
        mults = grad_mults if grad_mults is not None else _model_grad_mults(model)
        if not mults:
            raise ValueError("optimizer 'repopt-sgd' needs a model with RepOpt blocks "
                             f"(backbone {' or '.join(repopt_models())}); use 'sgd' for other models")
        return RepOptSGD(model.parameters(), mults, lr=lr, momentum=momentum, weight_decay=weight_decay)
    raise UnknownNameError(f"unknown optimizer {name!r}; choose one of: {', '.join(OPTIMIZERS)}")


def extract_scales(model: nn.Module) -> list[BranchScales]:
    """Detached copies of the scales of every CSLA block of ``model``, in module order."""
    return [m.branch_scales() for m in model.modules() if hasattr(m, "branch_scales")]


Batch = tuple[torch.Tensor, torch.Tensor]  # images (n, c, h, w), labels (n,)


def _repeat(batches: Iterable[Batch]) -> Iterator[Batch]:
    while True:
        empty = True
        for batch in batches:
            empty = False
            yield batch
        if empty:
            return


def hyper_search(model: nn.Module, batches: Iterable[Batch], *,
                 steps: int, lr: float = 0.1, num_classes: int = 10, momentum: float = 0.9,
                 weight_decay: float = 4e-5, label_smoothing: float = 0.1,
                 clip_grad: float = 5.0) -> list[BranchScales]:
    """Hyper-Search: train the CSLA model with trainable scales, return the scales.

    A zero-initialised linear classifier on ``model.out_dim`` features is trained with it
    (label-smoothed cross-entropy, SGD with momentum, gradient-norm clipping) as in the
    official ``hs.sh`` on CIFAR-100, scaled down to ``steps`` batches (``(x, y)`` pairs,
    re-iterated if they run out). Modifies ``model`` in place.
    """
    head = nn.utils.skip_init(nn.Linear, model.out_dim, num_classes)  # no global RNG draw
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    params = [p for p in itertools.chain(model.parameters(), head.parameters()) if p.requires_grad]
    opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    model.train()
    for x, y in itertools.islice(_repeat(batches), steps):
        loss = F.cross_entropy(head(model(x)), y, label_smoothing=label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(params, clip_grad)
        opt.step()
    return extract_scales(model)


@dataclass(frozen=True)
class ProxyData:
    """Labelled proxy data for Hyper-Search, provided by the task that trains the model.

    ``key`` names the data (task, source, image size, seed); equal keys must mean equal
    batches, since searched scales are cached per process by it. ``batches(batch_size, seed)``
    yields endless ``(images (n, c, s, s), labels (n,))`` pairs drawn from a generator
    seeded by ``seed``.
    """

    key: str
    batches: Callable[[int, int], Iterator[Batch]] = field(compare=False, hash=False, repr=False)
    num_classes: int = field(default=10, compare=False)


def search_scales(build_hs_model: Callable[[], nn.Module], *, steps: int, proxy: ProxyData | None,
                  seed: int = 0, lr: float = 0.1, batch_size: int = 32) -> list[BranchScales]:
    """Build the Hyper-Search model from ``seed`` and search for ``steps`` ``proxy`` batches.

    Leaves global RNG state untouched; ``steps=0`` or ``proxy=None`` returns the initial
    (untrained) scales.
    Runs on one intra-op thread (restored afterwards): for these small convolutions a
    second thread gains little and, on a busy machine, made a search 10–20× slower here.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, 0x4853, 1))
        model = build_hs_model()
    if steps == 0 or proxy is None:
        return extract_scales(model)
    batches = proxy.batches(batch_size, derive_seed(seed, 0x4853))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small convs: one thread is as fast, and immune to busy cores
    try:
        return hyper_search(model, batches, steps=steps, lr=lr, num_classes=proxy.num_classes)
    finally:
        torch.set_num_threads(threads)

"""The optimiser a client trains with, and the plain-SGD fast path it takes when it can."""

from __future__ import annotations

import torch
from torch import nn

from fedsim.optim.repopt import build_optimizer


class PlainSGD:
    """``torch.optim.SGD`` without momentum and weight decay, minus its per-call overhead.

    Each step does ``p.add_(p.grad, alpha=-lr)`` for every parameter with a gradient, which
    is exactly what ``torch.optim.SGD`` does then (its single-tensor path, the default on
    CPU), so results are bit-identical. It skips what costs as much as the update itself
    for a small model trained for one step: building the optimizer per client, its
    param-group bookkeeping, and the profiler/compile hooks around every ``step`` call.
    """

    def __init__(self, model: nn.Module, lr: float) -> None:
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.lr = lr

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        with_grad = [p for p in self.params if p.grad is not None]
        if with_grad:
            torch._foreach_add_(with_grad, [p.grad for p in with_grad], alpha=-self.lr)


def client_optimizer(name: str, model: nn.Module, *, lr: float, momentum: float = 0.0,
                     weight_decay: float = 0.0) -> PlainSGD | torch.optim.Optimizer:
    """The optimiser ``name`` (``"sgd"`` or ``"repopt-sgd"``) over ``model`` for one client's
    local training: :class:`PlainSGD` for SGD without momentum and weight decay, else
    :func:`~fedsim.optim.repopt.build_optimizer`."""
    if name == "sgd" and momentum == 0 and weight_decay == 0:
        return PlainSGD(model, lr)
    return build_optimizer(name, model, lr=lr, momentum=momentum, weight_decay=weight_decay)

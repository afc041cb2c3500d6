"""BYOL (Grill et al., arXiv 2006.07733): an online network regresses a momentum target's
projection of the other view.

Reads ``projection_dim``, ``byol_momentum`` and ``byol_predictor_lr`` from the task's parameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from fedsim.losses import BYOLNetwork, MomentumTarget
from fedsim.objectives import register_objective
from fedsim.objectives.base import Objective, ViewSource
from fedsim.objectives.heads import projection_mlp


def byol_predictor(dim: int, hidden: int) -> nn.Module:
    """BYOL's predictor q_θ: Linear → BN → ReLU → Linear, ``dim → hidden → dim`` (arXiv 2006.07733, §3.3).

    In a federated run (``objective: byol``) the online encoder, projector and this predictor
    are the model's parameters, so the strategy aggregates all three, as it aggregates SimCLR's
    projector; the momentum target is no parameter: each client rebuilds it from the received
    global encoder + projector when its local training starts (:class:`fedsim.losses.MomentumTarget`).
    The target is not kept per client (as FedVSSL heads are) because in the cross-device
    setting a client is sampled a few times per run at most, so a kept target would be many
    rounds stale or, on first participation, the global model anyway; rebuilding it needs no
    client state, so both engines, resumed runs and deployed nodes behave alike. With the
    demo's ~10 local steps and τ = 0.99 the target stays close to the global model: the
    online network regresses the global model's projections of the other view.
    """
    return nn.Sequential(nn.Linear(dim, hidden, bias=False), nn.BatchNorm1d(hidden),
                         nn.ReLU(inplace=True), nn.Linear(hidden, dim))


class GradScale:
    """A parameter hook multiplying its gradient by ``factor`` (a class, not a lambda: picklable)."""

    def __init__(self, factor: float) -> None:
        self.factor = factor

    def __call__(self, grad: torch.Tensor) -> torch.Tensor:
        return grad * self.factor


def scale_learning_rate(module: nn.Module, factor: float) -> None:
    """Train ``module`` at ``factor`` × the optimiser's learning rate by scaling its gradients.

    Under SGD (with momentum) a gradient multiplied by ``k`` is the same step as the learning
    rate multiplied by ``k``, except for weight decay, which is added after the hook and so keeps
    the optimiser's rate. A hook rather than an optimiser parameter group because the client's
    optimiser is the strategy's (:meth:`fedsim.strategies.hooks.ClientHooks.optimizer`), built
    over the whole model without knowing its parts.
    """
    if factor != 1.0:
        for p in module.parameters():
            p.register_hook(GradScale(factor))


@register_objective("byol", needs={"augmented"})
class BYOL(Objective):
    """Online encoder + projector + predictor (the model, aggregated as usual) against a target
    network rebuilt from the received weights when local training starts."""

    def __init__(self, params: Any, head_path: str = "head") -> None:
        super().__init__(params, head_path)
        self.target = MomentumTarget(params.byol_momentum)

    def build(self, backbone: nn.Module, source: ViewSource) -> nn.Module:
        """Projector and predictor: BYOL's MLP, narrower (state-dict keys backbone., head., predictor.)."""
        d, hidden = self.params.projection_dim, backbone.out_dim
        predictor = byol_predictor(d, hidden)
        scale_learning_rate(predictor, self.params.byol_predictor_lr)
        return BYOLNetwork(backbone, projection_mlp(hidden, d), predictor)

    def start(self, model: nn.Module) -> None:
        """The target network restarts from the received global weights (see :func:`byol_predictor`)."""
        self.target.reset(model)

    def loss(self, model: nn.Module, batch: Mapping[str, torch.Tensor], source: ViewSource,
             generator: torch.Generator) -> torch.Tensor:
        x = batch[source.sample_key]
        return self.target.loss(model, source.view(x, generator), source.view(x, generator))

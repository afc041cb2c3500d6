"""BYOL (Grill et al., arXiv 2006.07733): an online network regresses a momentum target's
projection of the other view.

Reads ``projection_dim`` and ``byol_momentum`` from the task's parameters.
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
        return BYOLNetwork(backbone, projection_mlp(hidden, d), byol_predictor(d, hidden))

    def start(self, model: nn.Module) -> None:
        """The target network restarts from the received global weights (see :func:`byol_predictor`)."""
        self.target.reset(model)

    def loss(self, model: nn.Module, batch: Mapping[str, torch.Tensor], source: ViewSource,
             generator: torch.Generator) -> torch.Tensor:
        x = batch[source.sample_key]
        return self.target.loss(model, source.view(x, generator), source.view(x, generator))

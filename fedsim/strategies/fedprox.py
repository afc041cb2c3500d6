"""FedProx: FedAvg aggregation with a proximal term on the clients (Li et al., arXiv 1812.06127).

The server side is sample-weighted FedAvg (as Flower's ``flwr.serverapp.strategy.FedProx``,
whose only addition is sending ``proximal-mu`` to the clients). The client side is
:class:`ProximalHooks`: the server sends mu in the round context (``params.proximal-mu``;
Flower's key in :mod:`fedsim.flower`'s train config), and each client adds
``mu/2 · ||w − w_global||²`` to its local loss, ``w_global`` being the weights it loaded.
Flower's default mu is 0 (plain FedAvg); fedsim's default is 0.01.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field
from torch import nn

from fedsim.records import RoundContext
from fedsim.registry import register_strategy
from fedsim.strategies.base import StrategyParams
from fedsim.strategies.fedavg import FedAvg
from fedsim.strategies.hooks import ClientHooks, LossTerm

PROXIMAL_MU = "proximal-mu"  # Flower's name for mu in a client's train config


class FedProxParams(StrategyParams):
    """Parameters of :class:`FedProx`."""

    mu: float = Field(0.01, ge=0.0, description="weight of the proximal term mu/2·||w − w_g||²")


class ProximalHooks(ClientHooks):
    """FedProx's client half: the proximal term around the weights the client loaded."""

    strategy: "FedProx"

    def round_params(self, aggregation: int) -> dict[str, Any]:
        return {PROXIMAL_MU: self.strategy.params.mu}

    def loss_term(self, model: nn.Module, ctx: RoundContext) -> LossTerm | None:
        """``mu/2 · Σ ||p − p_global||²`` over ``model``'s parameters; none when mu is 0."""
        mu = float(ctx.param(PROXIMAL_MU))
        if mu <= 0.0:
            return None
        anchor = [p.detach().clone() for p in model.parameters()]
        return lambda m: mu / 2 * sum((p - a).pow(2).sum() for p, a in zip(m.parameters(), anchor))


@register_strategy("fedprox")
class FedProx(FedAvg):
    """FedProx: FedAvg on the server, proximal term mu on the clients (arXiv 1812.06127)."""

    Params = FedProxParams
    params: FedProxParams
    Hooks = ProximalHooks

"""FedProx: FedAvg aggregation with a proximal term on the clients (Li et al., arXiv 1812.06127).

The server side is sample-weighted FedAvg (as Flower's ``flwr.serverapp.strategy.FedProx``,
whose only addition is sending ``proximal-mu`` to the clients). The strategy exposes mu via
:meth:`FedProx.proximal_mu`; fedsim's trainer adds ``mu/2 · ||w − w_global||²`` to the local
loss. Flower's default mu is 0 (plain FedAvg); fedsim's default is 0.01.
"""

from __future__ import annotations

from pydantic import Field

from fedsim.registry import register_strategy
from fedsim.strategies.base import StrategyParams
from fedsim.strategies.fedavg import FedAvg


class FedProxParams(StrategyParams):
    """Parameters of :class:`FedProx`."""

    mu: float = Field(0.01, ge=0.0, description="weight of the proximal term mu/2·||w − w_g||²")


@register_strategy("fedprox")
class FedProx(FedAvg):
    """FedProx: FedAvg on the server, proximal term mu on the clients (arXiv 1812.06127)."""

    Params = FedProxParams
    params: FedProxParams

    def proximal_mu(self) -> float:
        return self.params.mu

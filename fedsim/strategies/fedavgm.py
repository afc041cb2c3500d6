"""FedAvgM: server momentum on the FedAvg pseudo-gradient (Hsu et al., arXiv 1909.06335).

The step is Flower's (``flwr.serverapp.strategy.FedAvgM``, flwr 1.41), run on the FedAvg
mean as in :mod:`fedsim.strategies.fedopt`: with pseudo-gradient g = w_g − mean,
v ← β·v + g (v = g in the first round) and w ← w_g − η·v. Flower's default momentum is 0,
which makes FedAvgM plain FedAvg; fedsim's default is β = 0.9 (Hsu et al.). The momentum
vector is strategy state and survives checkpoints. Only trainable tensors are stepped:
BatchNorm statistics take the FedAvg mean and constant buffers keep their value
(:meth:`~fedsim.strategies.fedopt.FlowerServerStep.apply`).
"""

from __future__ import annotations

from typing import Any

from flwr.app import ArrayRecord
from flwr.serverapp import strategy as flwr_strategy
from pydantic import Field

from fedsim.registry import register_strategy
from fedsim.strategies.base import Arrays, StrategyParams
from fedsim.strategies.fedopt import FlowerServerStep, to_numpy, to_torch


class FedAvgMParams(StrategyParams):
    """Parameters of :class:`FedAvgM` (Flower's names)."""

    server_learning_rate: float = Field(1.0, gt=0.0, description="η, server learning rate")
    server_momentum: float = Field(0.9, ge=0.0, lt=1.0, description="β, server momentum")


@register_strategy("fedavgm")
class FedAvgM(FlowerServerStep):
    """FedAvgM: FedAvg with server momentum, Flower's math (arXiv 1909.06335)."""

    Params = FedAvgMParams
    params: FedAvgMParams

    def __init__(self, params: StrategyParams | None = None) -> None:
        super().__init__(params)
        self._keys: list[str] = []
        self._momentum: Arrays | None = None  # by tensor name; Flower keeps a list

    def build_flower(self) -> Any:
        p = self.params
        return flwr_strategy.FedAvgM(server_learning_rate=p.server_learning_rate,
                                     server_momentum=p.server_momentum)

    def set_current(self, floats: Arrays) -> None:
        self._keys = list(floats)
        self.flower.current_arrays = ArrayRecord({k: v.detach().contiguous() for k, v in floats.items()})
        m = to_numpy(self._momentum)
        self.flower.momentum_vector = None if m is None else [m[k] for k in self._keys]

    def apply(self, mean: Arrays, previous: Arrays, aggregation: int) -> Arrays:
        out = super().apply(mean, previous, aggregation)
        vector = self.flower.momentum_vector
        if vector is not None:
            self._momentum = to_torch(dict(zip(self._keys, vector, strict=True)))
        return out

    def state_dict(self) -> dict[str, Any]:
        """The server momentum vector by tensor name (absent before the first round)."""
        return {} if self._momentum is None else {"momentum": {k: v.clone() for k, v in self._momentum.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        momentum = state.get("momentum")
        self._momentum = None if momentum is None else {k: v.clone() for k, v in momentum.items()}

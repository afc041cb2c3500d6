"""Server optimisers on the FedAvg mean: FedAdam, FedYogi, FedAdagrad (Reddi et al., arXiv 2003.00295).

"Average, then apply" (pfl-research's server side): clients are folded exactly as in FedAvg,
and ``finalize`` hands the sample-weighted mean to **Flower's own** strategy object
(``flwr.serverapp.strategy.FedAdam`` / ``FedYogi`` / ``FedAdagrad``, flwr 1.41), whose
``aggregate_train`` computes Δ = mean − w_g, updates the moments m_t, v_t and returns the
new global. The math is therefore Flower's, bias correction included (FedAdam's
``eta·sqrt(1−β2^(t+1))/(1−β1^(t+1))``). Flower's update is inlined in ``aggregate_train``,
which needs reply messages; a real ``Message`` cannot be built outside a running ServerApp,
so one duck-typed reply carrying the mean with weight 1 is passed (Flower reads only its
``has_error()`` and ``content``; with one reply of weight 1 its weighted mean is the mean).

Only trainable tensors (``base.is_trainable``) go through the optimiser: BatchNorm running
statistics and integer buffers (``num_batches_tracked``, rounded) take the FedAvg mean, and
constant buffers (RepOpt's scales) keep the previous global's value. Flower's round
argument (FedAdam's bias correction) is the aggregation index — the number of server steps
taken including this one, which is the server round unless a round was skipped. The
moments are strategy state: :meth:`state_dict` / :meth:`load_state_dict` carry them
through checkpoints.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord, MetricRecord, RecordDict
from flwr.serverapp import strategy as flwr_strategy
from pydantic import Field

from fedsim import records as R
from fedsim.registry import register_strategy
from fedsim.strategies.base import Arrays, StrategyParams, cast_like, is_constant, is_trainable
from fedsim.strategies.fedavg import FedAvg, weighted_mean


class _MeanReply:
    """Stands in for a reply ``Message`` carrying ``arrays`` with weight 1."""

    def __init__(self, arrays: Arrays) -> None:
        self.content = RecordDict({
            R.ARRAYS: ArrayRecord({k: v.detach().contiguous() for k, v in arrays.items()}),
            R.METRICS: MetricRecord({R.NUM_EXAMPLES: 1}),
        })

    def has_error(self) -> bool:
        return False


@contextmanager
def _quiet_flower() -> Iterator[None]:
    """Silence Flower's per-call INFO lines ("aggregate_train: Received 1 results ...")."""
    logger = logging.getLogger("flwr")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def to_torch(arrays: dict[str, np.ndarray] | None) -> Arrays | None:
    """Copy a dict of numpy arrays (Flower's state) into torch tensors."""
    return None if arrays is None else {k: torch.from_numpy(np.array(v)) for k, v in arrays.items()}


def to_numpy(arrays: Arrays | None) -> dict[str, np.ndarray] | None:
    """Copy a dict of torch tensors back into numpy arrays for Flower."""
    return None if arrays is None else {k: v.detach().cpu().numpy().copy() for k, v in arrays.items()}


class FlowerServerStep(FedAvg):
    """FedAvg's sample-weighted mean, then a Flower strategy's server update (:meth:`apply`).

    Subclasses build the Flower object (:meth:`build_flower`) and tell it the current global
    (:meth:`set_current`). The mean is what the rule releases (:meth:`finalize_via`): the DP
    wrapper adds its noise to it *before* :meth:`apply`, so the server step is
    post-processing of the private mean.
    """

    def __init__(self, params: StrategyParams | None = None) -> None:
        super().__init__(params)
        self.flower = self.build_flower()

    def build_flower(self) -> Any:
        """The ``flwr.serverapp.strategy`` object whose ``aggregate_train`` does the step."""
        raise NotImplementedError

    def set_current(self, floats: Arrays) -> None:
        """Give the Flower object the global model the clients started from."""
        raise NotImplementedError

    def apply(self, mean: Arrays, previous: Arrays, aggregation: int) -> Arrays:
        """One server step from ``previous`` towards ``mean`` on the trainable tensors.

        BatchNorm running statistics take the FedAvg mean: Flower steps every array it is
        given, which for a state dict includes the running variance, and a momentum/Adam
        step overshoots it below zero (seen here: FedAvgM's NaN global in round 3 at the
        defaults). Statistics are not parameters of the loss, so there is no gradient to follow.
        Constant buffers (``base.is_constant``) keep ``previous``'s value and have no moments.
        """
        mean = {k: previous[k] if is_constant(k) else v for k, v in mean.items()}
        floats = [k for k, v in previous.items() if is_trainable(k, v)]
        if not floats:
            return mean
        self.set_current({k: previous[k] for k in floats})
        with _quiet_flower():
            record, _ = self.flower.aggregate_train(aggregation, [_MeanReply({k: mean[k] for k in floats})])
        stepped = {k: torch.from_numpy(np.array(record[k].numpy())) for k in floats}
        return {**mean, **stepped}

    def finalize(self, sums: dict[str, torch.Tensor], previous: Arrays, aggregation: int) -> Arrays:
        return self.finalize_via(sums, previous, aggregation, lambda mean: mean)

    def finalize_via(self, sums: dict[str, torch.Tensor], previous: Arrays, aggregation: int,
                     release: Callable[[Arrays], Arrays]) -> Arrays:
        """The server step from the released mean: ``release`` acts on the FedAvg mean."""
        return cast_like(self.apply(release(weighted_mean(sums, previous)), previous, aggregation), previous)


class FedOptParams(StrategyParams):
    """Server-side hyper-parameters shared by FedAdam and FedYogi (Flower's names)."""

    eta: float = Field(0.1, gt=0.0, description="server learning rate")
    beta_1: float = Field(0.9, ge=0.0, lt=1.0, description="first-moment decay")
    beta_2: float = Field(0.99, ge=0.0, lt=1.0, description="second-moment decay")
    tau: float = Field(1e-3, gt=0.0, description="adaptivity (added to sqrt(v))")


class FedYogiParams(FedOptParams):
    """FedYogi's defaults are Flower's: eta = 0.01."""

    eta: float = Field(1e-2, gt=0.0, description="server learning rate")


class FedAdagradParams(StrategyParams):
    """FedAdagrad has no moment decays (Flower fixes β1 = 0)."""

    eta: float = Field(0.1, gt=0.0, description="server learning rate")
    tau: float = Field(1e-3, gt=0.0, description="adaptivity (added to sqrt(v))")


class _FedOpt(FlowerServerStep):
    """Common state handling of Flower's ``FedOpt`` family (moments ``m_t``, ``v_t``)."""

    def set_current(self, floats: Arrays) -> None:
        self.flower.current_arrays = to_numpy(floats)

    def state_dict(self) -> dict[str, Any]:
        """The moments ``m_t`` and ``v_t`` (absent before the first round)."""
        state = {"m_t": to_torch(self.flower.m_t), "v_t": to_torch(self.flower.v_t)}
        return {k: v for k, v in state.items() if v is not None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.flower.m_t = to_numpy(state.get("m_t"))
        self.flower.v_t = to_numpy(state.get("v_t"))


@register_strategy("fedadam")
class FedAdam(_FedOpt):
    """FedAdam: Adam on the FedAvg pseudo-gradient, Flower's math (arXiv 2003.00295)."""

    Params = FedOptParams

    def build_flower(self) -> Any:
        p = self.params
        return flwr_strategy.FedAdam(eta=p.eta, beta_1=p.beta_1, beta_2=p.beta_2, tau=p.tau)


@register_strategy("fedyogi")
class FedYogi(_FedOpt):
    """FedYogi: Yogi on the FedAvg pseudo-gradient, Flower's math (arXiv 2003.00295)."""

    Params = FedYogiParams

    def build_flower(self) -> Any:
        p = self.params
        return flwr_strategy.FedYogi(eta=p.eta, beta_1=p.beta_1, beta_2=p.beta_2, tau=p.tau)


@register_strategy("fedadagrad")
class FedAdagrad(_FedOpt):
    """FedAdagrad: Adagrad on the FedAvg pseudo-gradient, Flower's math (arXiv 2003.00295)."""

    Params = FedAdagradParams

    def build_flower(self) -> Any:
        return flwr_strategy.FedAdagrad(eta=self.params.eta, tau=self.params.tau)

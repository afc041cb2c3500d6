"""L-DAWA: layer-wise divergence-aware weight aggregation (Rehman et al., arXiv 2307.07393).

For every state-dict tensor ``l`` and client ``k`` the server measures the angular divergence
of the client's tensor from the previous global one (the model the clients started from),

    δ_k^l = min(1, cos(flatten(w_k^l), flatten(w_g^l)))

and the next global tensor is the unnormalised mean ``w^l = (1/K) Σ_k δ_k^l w_k^l`` — no
n_k weighting, no division by Σδ, and a negative cosine stays negative (only the cap at 1
is applied). The first ``warmup_rounds`` aggregations are sample-weighted FedAvg; they are
counted in *completed aggregations* (the aggregation index, see
:meth:`~fedsim.strategies.base.Strategy.new_accumulator`), so a skipped round (too few
successful clients, global unchanged) does not eat into the warm-up.

Checked against the official code, yasar-rehman/L-DAWA: ``L-DAWA-Agg.py`` and
``FL_Pretraining/main_CIFAR10_LDAWA.py`` (``my_aggregate``; FedAvg while ``GLB_RND <= 2``,
i.e. L-DAWA once 3 rounds are complete). Edge cases, as there:

* a tensor whose client norm is 0 enters unscaled (δ = 1); so does one whose *global* norm is
  0 (the official code would divide by zero and produce NaN — fedsim uses δ = 1 instead);
* 0-d float tensors enter unscaled (the official ``len(x.shape) > 0`` test skips them);
* BatchNorm running statistics are float tensors and are scaled and averaged like weights;
* constant buffers (RepOpt's ``scale_conv`` / ``scale_1x1``, ``base.is_constant``; the
  official models have none) keep the previous global's value: a cosine below 1, even by
  float rounding, would shrink them;
* integer buffers (``num_batches_tracked``) are copied, not averaged: fedsim takes the
  element-wise **maximum over the round's clients** (the count of the client that trained
  longest; merged by maximum, see ``MAX_PREFIX``). The official code averaged them as floats.
  During warm-up the whole round is fedsim's FedAvg, integer buffers included.
"""

from __future__ import annotations

import torch
from pydantic import Field

from fedsim.registry import register_strategy
from fedsim.strategies.base import (MAX_PREFIX, Arrays, ClientUpdate, Strategy, StrategyParams,
                                    add_into, add_scalar, cast_like, is_float, max_into)
from fedsim.strategies.fedavg import fold_weighted, weighted_mean

SCALED = "d:"  # "d:{name}": Σ_k δ_k^l w_k^l
COUNT = "k"  # K, the number of clients folded in
DELTA_SUM = "delta-sum"  # Σ_k mean_l δ_k^l, for the round log only


class LDAWAParams(StrategyParams):
    """Parameters of :class:`LDAWA`."""

    warmup_rounds: int = Field(3, ge=0, description="the first warmup_rounds completed aggregations "
                               "are sample-weighted FedAvg (skipped rounds do not count)")


def layer_divergence(client: torch.Tensor, global_: torch.Tensor) -> float:
    """δ = cos(flatten(client), flatten(global)) capped at 1 above, in float64.

    Returns 1 for a 0-d tensor or when either norm is 0 (the tensor then enters unscaled).
    """
    if client.dim() == 0:
        return 1.0
    x = client.detach().reshape(-1).to(torch.float64)
    y = global_.detach().reshape(-1).to(torch.float64)
    nx, ny = torch.linalg.vector_norm(x), torch.linalg.vector_norm(y)
    if nx == 0 or ny == 0:
        return 1.0
    return min(1.0, float(torch.dot(x, y) / (nx * ny)))


def fold_ldawa(sums: dict[str, torch.Tensor], update: ClientUpdate, previous: Arrays) -> None:
    """Add ``δ_k^l w_k^l`` per float tensor, the maximum of integer buffers, and 1 to K."""
    deltas = []
    for name, tensor in update.arrays.items():
        if not is_float(tensor):
            max_into(sums, MAX_PREFIX + name, tensor)
            continue
        delta = layer_divergence(tensor, previous[name])
        deltas.append(delta)
        add_into(sums, SCALED + name, tensor, alpha=delta)
    add_scalar(sums, COUNT, 1.0)
    add_scalar(sums, DELTA_SUM, sum(deltas) / len(deltas) if deltas else 1.0)


@register_strategy("ldawa")
class LDAWA(Strategy):
    """L-DAWA: per-layer cosine-scaled mean of client models (arXiv 2307.07393)."""

    Params = LDAWAParams
    params: LDAWAParams

    def __init__(self, params: StrategyParams | None = None) -> None:
        super().__init__(params)
        self._info: dict[str, float] = {}

    def in_warmup(self, aggregation: int) -> bool:
        """Whether aggregation number ``aggregation`` (1-based, skipped rounds not counted)
        is a FedAvg warm-up one."""
        return aggregation <= self.params.warmup_rounds

    def schedule_warning(self, rounds: int) -> str | None:
        warmup = self.params.warmup_rounds
        if warmup >= rounds:
            return (f"ldawa: warm-up of {warmup} rounds covers all {rounds} rounds; this run is plain FedAvg "
                    f"(run more than {warmup} rounds, or set strategy.params.warmup_rounds)")
        return None

    def fold(self, sums: dict[str, torch.Tensor], update: ClientUpdate, previous: Arrays,
             aggregation: int) -> None:
        if self.in_warmup(aggregation):
            fold_weighted(sums, update)
        else:
            fold_ldawa(sums, update, previous)

    def finalize(self, sums: dict[str, torch.Tensor], previous: Arrays, aggregation: int) -> Arrays:
        if self.in_warmup(aggregation):
            self._info = {"ldawa_warmup": 1.0}
            return cast_like(weighted_mean(sums, previous), previous)
        k = float(sums[COUNT])
        out = {name: sums[SCALED + name] / k if is_float(ref) else sums[MAX_PREFIX + name]
               for name, ref in previous.items()}
        self._info = {"ldawa_warmup": 0.0, "ldawa_mean_delta": float(sums[DELTA_SUM]) / k}
        return cast_like(out, previous)

    def last_round_info(self) -> dict[str, float]:
        """``ldawa_warmup`` (1 in a FedAvg round) and ``ldawa_mean_delta`` (mean δ over
        clients and layers) of the last finalized round."""
        return dict(self._info)

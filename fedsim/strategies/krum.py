"""Krum and Multi-Krum (Blanchard et al., NeurIPS 2017; arXiv 1703.02757), as Flower's ``MultiKrum``.

Non-decomposable (:class:`~fedsim.strategies.base.ListStrategy`). Each client is scored by
the sum of squared L2 distances to its ``m − f − 2`` nearest other clients (f =
``num_malicious``); the ``num_selected`` lowest-scored clients are averaged, weighted by
num-examples (``num_selected = 1`` is Krum: that client's model). The selection is Flower's
own ``select_multikrum`` (flwr 1.41 ``multikrum.py``), fed with the floating-point tensors
only (Flower would also mix integer buffers such as ``num_batches_tracked`` into the
distances). Rows arrive sorted by client id, so ties are broken by client id.
"""

from __future__ import annotations

import torch
from flwr.app import ArrayRecord, RecordDict
from flwr.serverapp.strategy.multikrum import select_multikrum
from pydantic import Field

from fedsim import records as R
from fedsim.registry import register_strategy
from fedsim.strategies.base import Arrays, ListStrategy, StrategyParams, is_float


class KrumParams(StrategyParams):
    """Parameters of :class:`Krum`."""

    num_malicious: int = Field(0, ge=0, description="f, the number of Byzantine clients tolerated")
    num_selected: int = Field(1, ge=1, description="clients averaged: 1 = Krum, more = Multi-Krum")


def krum_select(rows: Arrays, num_malicious: int, num_selected: int) -> list[int]:
    """Indices (into dim 0 of ``rows``) of the clients Flower's ``select_multikrum`` picks."""
    floats = {name: r for name, r in rows.items() if is_float(r)}
    m = next(iter(rows.values())).shape[0]
    contents = [RecordDict({R.ARRAYS: ArrayRecord({name: r[i].contiguous() for name, r in floats.items()})})
                for i in range(m)]
    chosen = select_multikrum(contents, num_malicious_nodes=num_malicious, num_nodes_to_select=num_selected)
    index = {id(c): i for i, c in enumerate(contents)}
    return [index[id(c)] for c in chosen]


@register_strategy("krum")
class Krum(ListStrategy):
    """Krum / Multi-Krum: the mean of the most central client models (arXiv 1703.02757)."""

    Params = KrumParams
    params: KrumParams

    def __init__(self, params: StrategyParams | None = None) -> None:
        super().__init__(params)
        self._info: dict[str, float] = {}

    def combine(self, rows: Arrays, weights: torch.Tensor, previous: Arrays, server_round: int) -> Arrays:
        chosen = torch.tensor(krum_select(rows, self.params.num_malicious, self.params.num_selected))
        w = weights[chosen] / weights[chosen].sum()
        self._info = {"krum_selected": float(len(chosen))}
        return {name: torch.tensordot(w, r[chosen].to(torch.float64), dims=1) for name, r in rows.items()}

    def last_round_info(self) -> dict[str, float]:
        """``krum_selected``: how many clients were averaged in the last round."""
        return dict(self._info)

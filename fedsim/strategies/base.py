"""Aggregation as a reduction: the abstraction behind every fedsim strategy.

Every rule in the source papers is a sum over clients followed by a finalisation
(DESIGN.md, "Aggregation is a reduction"). A strategy therefore says how one client's
update is *folded* into named partial sums and how the sums are *finalized* into the next
global model. :class:`Accumulator` carries the sums; two accumulators over disjoint sets of
clients ``merge`` by adding their sums, which is associative and commutative, so a worker
can reduce its cohort locally and the server only adds partial sums (pfl-research's
``pfl/stats.py`` is the model for this). Server memory is O(model), not O(clients × model).

Strategies know arrays and records only: never Ray, the CLI or a task.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict

Arrays = dict[str, torch.Tensor]
"""A model as an ordered state dict of named tensors."""


class StrategyParams(BaseModel):
    """Base of a strategy's own parameters (``strategy.params``); unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


@dataclass
class ClientUpdate:
    """What one client sends back after local training."""

    client_id: int
    arrays: Arrays
    num_examples: int
    metrics: dict[str, float] = field(default_factory=dict)


def is_float(t: torch.Tensor) -> bool:
    """Whether a tensor is averaged (floating point) or copied (integer buffers)."""
    return t.is_floating_point()


def add_into(sums: dict[str, torch.Tensor], key: str, value: torch.Tensor, alpha: float = 1.0) -> None:
    """``sums[key] += alpha * value`` in float32, creating the entry on first use."""
    acc = sums.get(key)
    if acc is None:
        sums[key] = value.detach().to(torch.float32) * alpha
    else:
        acc.add_(value.detach(), alpha=alpha)


def add_scalar(sums: dict[str, torch.Tensor], key: str, value: float) -> None:
    """``sums[key] += value`` for a scalar kept as a 0-d float64 tensor."""
    acc = sums.get(key)
    if acc is None:
        sums[key] = torch.tensor(float(value), dtype=torch.float64)
    else:
        acc += float(value)


def cast_like(values: Arrays, previous: Arrays) -> Arrays:
    """Cast finalized float sums back to the global model's dtypes (integers rounded)."""
    out: Arrays = {}
    for name, ref in previous.items():
        v = values[name]
        out[name] = v.round().to(ref.dtype) if not is_float(ref) else v.to(ref.dtype)
    return out


class Strategy(ABC):
    """A server aggregation rule in fold / finalize form.

    Subclasses set ``Params`` and register with ``@register_strategy("name")``. The round
    loop (``fedsim.server``) calls :meth:`new_accumulator` once per round, folds every valid
    client reply into it (or merges workers' partial accumulators) and calls
    :meth:`Accumulator.finalize`.
    """

    Params: ClassVar[type[StrategyParams]] = StrategyParams
    decomposable: ClassVar[bool] = True

    def __init__(self, params: StrategyParams | None = None) -> None:
        self.params = params if params is not None else self.Params()

    def new_accumulator(self, previous: Arrays, server_round: int) -> "Accumulator":
        """An empty accumulator for ``server_round`` whose clients started from ``previous``."""
        return Accumulator(self, previous, server_round)

    def client_keys(self, keys: list[str]) -> list[str]:
        """The global tensors a client loads (default: all). FedVSSL loads the backbone only."""
        return keys

    @abstractmethod
    def fold(self, sums: dict[str, torch.Tensor], update: ClientUpdate, previous: Arrays,
             server_round: int) -> None:
        """Add one client's contribution into ``sums`` in place."""

    @abstractmethod
    def finalize(self, sums: dict[str, torch.Tensor], previous: Arrays, server_round: int) -> Arrays:
        """Turn the summed contributions of a round's clients into the next global model."""

    def state_dict(self) -> dict[str, Any]:
        """Strategy state carried across rounds (e.g. server optimiser moments); default none."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


class Accumulator:
    """Named partial sums of one round over some clients.

    ``merge`` is associative and commutative (it adds sums key by key), so any split of a
    round's clients over workers reduces to the same result up to float summation order.
    """

    def __init__(self, strategy: Strategy, previous: Arrays, server_round: int) -> None:
        self.strategy = strategy
        self.previous = previous
        self.server_round = server_round
        self.sums: dict[str, torch.Tensor] = {}
        self.num_clients = 0

    def accumulate(self, update: ClientUpdate) -> None:
        """Fold one client's update in."""
        self.strategy.fold(self.sums, update, self.previous, self.server_round)
        self.num_clients += 1

    def merge(self, other: "Accumulator") -> None:
        """Add another accumulator's sums (over a disjoint set of clients) into this one."""
        self.merge_sums(other.sums, other.num_clients)

    def merge_sums(self, sums: dict[str, torch.Tensor], num_clients: int) -> None:
        """Add raw partial sums (e.g. a worker's reply) into this accumulator."""
        for key, value in sums.items():
            mine = self.sums.get(key)
            if mine is None:
                self.sums[key] = value.clone()
            else:
                mine += value
        self.num_clients += num_clients

    def finalize(self) -> Arrays:
        """The next global model; requires at least one client."""
        if self.num_clients == 0:
            raise ValueError("cannot finalize a round with no client updates")
        return self.strategy.finalize(self.sums, self.previous, self.server_round)

"""Aggregation as a reduction: the abstraction behind every fedsim strategy.

Every rule in the source papers is a sum over clients followed by a finalisation
(docs/concepts/aggregation.md). A strategy therefore says how one client's
update is *folded* into named partial sums and how the sums are *finalized* into the next
global model. :class:`Accumulator` carries the sums; two accumulators over disjoint sets of
clients ``merge`` by adding their sums, which is associative and commutative, so a worker
can reduce its cohort locally and the server only adds partial sums (pfl-research's
``pfl/stats.py`` is the model for this). Server memory is O(model), not O(clients × model).
Sums whose key starts with ``MAX_PREFIX`` are merged by element-wise maximum instead (also
associative and commutative; L-DAWA copies integer buffers this way).

Non-decomposable rules (median, trimmed mean, Krum) subclass :class:`ListStrategy`: their
:class:`ListAccumulator` keeps every update as one row of stacked tensors, so merging is
concatenation — associative and commutative as a multiset, since ``finalize`` sorts the rows
by client id first — and a worker's partial "sums" are still named tensors for an ArrayRecord.

Strategies know arrays and records only: never Ray, the CLI or a task.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict

from fedsim.strategies.hooks import ClientHooks

Arrays = dict[str, torch.Tensor]
"""A model as an ordered state dict of named tensors."""

MAX_PREFIX = "max:"
"""Partial sums under keys with this prefix merge by element-wise maximum, not addition."""


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


STATISTICS_SUFFIXES = ("running_mean", "running_var")  # BatchNorm statistics, not parameters


def is_statistic(name: str) -> bool:
    """Whether a state-dict entry is a running statistic (BatchNorm mean/variance).

    A statistic is averaged by the strategy's own rule but never stepped by a server
    optimiser, never noised by DP and not part of DP's clipped update: it is not a
    parameter of the loss, so there is no gradient to follow, and a momentum/Adam step or
    Gaussian noise can push a variance below zero and eval-mode BatchNorm to NaN.
    """
    return name.endswith(STATISTICS_SUFFIXES)


CONSTANT_SUFFIXES = ("scale_conv", "scale_1x1")  # RepOpt gradient-mask scales (fedsim.optim.repopt)


def is_constant(name: str) -> bool:
    """Whether a state-dict entry is a constant buffer, kept from the previous global.

    The plain RepOpt models (``repopt_vgg``, ``repghost``) carry their Hyper-Searched
    per-channel scales as persistent buffers named ``...scale_conv`` / ``...scale_1x1``;
    the official RepOptimizer code keeps them constant (they define the gradient masks).
    Every strategy therefore copies them from the previous global model
    (:meth:`Accumulator.finalize`), whatever clients send: plain averaging would only
    reproduce them up to float rounding, L-DAWA's cosine factor (≤ 1) and FedVSSL's
    mixing could shrink or move them, and server optimisers and DP noise would step them.
    This is the one place that names them. Caveat: the Hyper-Search models
    (``repvgg_hs``, ``repghost_hs``) have *trainable* parameters with these names; they are
    meant for the central search, and a federated run of them keeps their scales fixed.
    """
    return name.endswith(CONSTANT_SUFFIXES)


def is_trainable(name: str, tensor: torch.Tensor) -> bool:
    """Whether a state-dict entry is a trainable parameter for the server: a float tensor
    that is neither a running statistic nor a constant buffer. Server optimiser steps, DP
    clipping and DP noise act on exactly these."""
    return is_float(tensor) and not is_statistic(name) and not is_constant(name)


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


def max_into(sums: dict[str, torch.Tensor], key: str, value: torch.Tensor) -> None:
    """``sums[key] = max(sums[key], value)`` element-wise; ``key`` must start with ``MAX_PREFIX``."""
    acc = sums.get(key)
    if acc is None:
        sums[key] = value.detach().clone()
    else:
        torch.maximum(acc, value.detach(), out=acc)


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
    :meth:`Accumulator.finalize`. A rule that changes what its clients do sets ``Hooks`` to
    its own :class:`~fedsim.strategies.hooks.ClientHooks` subclass (:meth:`client_hooks`).
    """

    Params: ClassVar[type[StrategyParams]] = StrategyParams
    decomposable: ClassVar[bool] = True
    # A strategy defined by its client side (FedRepOpt) names the client optimiser and the
    # backbone it needs; the config uses them unless ``federation.optimizer``/``model.name``
    # are given explicitly (the client optimiser stays selectable independently).
    client_optimizer: ClassVar[str | None] = None
    default_model: ClassVar[str | None] = None
    Hooks: ClassVar[type[ClientHooks]] = ClientHooks  # the rule's client half (client_hooks)

    def __init__(self, params: StrategyParams | None = None) -> None:
        self.params = params if params is not None else self.Params()

    def new_accumulator(self, previous: Arrays, server_round: int, *,
                        aggregation: int | None = None) -> "Accumulator":
        """An empty accumulator for ``server_round`` whose clients started from ``previous``.

        Parameters
        ----------
        previous
            The global model the round's clients started from.
        server_round
            The server round (1-based).
        aggregation
            The aggregation index: 1 + the number of aggregations completed before this
            one (a skipped round completes none). Strategies decide warm-up, SWA, server
            optimiser steps and DP noise by it, so a skipped round shifts nothing. Defaults
            to ``server_round``, which it equals while no round has been skipped.
        """
        return Accumulator(self, previous, server_round, aggregation=aggregation)

    def client_hooks(self) -> ClientHooks:
        """This rule's client half (:class:`~fedsim.strategies.hooks.ClientHooks`): what its
        clients load, keep, send and add to their training. Rules that change nothing on the
        client keep the default hooks; the others name their subclass as ``Hooks``."""
        return self.Hooks(self)

    def schedule_warning(self, rounds: int) -> str | None:
        """A one-line warning when the strategy's own schedule (a warm-up, a late start) covers
        all ``rounds`` rounds of a run, so the run is not what the strategy's name says;
        ``None`` (the default) when it does not."""
        return None

    @abstractmethod
    def fold(self, sums: dict[str, torch.Tensor], update: ClientUpdate, previous: Arrays,
             aggregation: int) -> None:
        """Add one client's contribution into ``sums`` in place (``aggregation``: the
        1-based aggregation index, see :meth:`new_accumulator`)."""

    @abstractmethod
    def finalize(self, sums: dict[str, torch.Tensor], previous: Arrays, aggregation: int) -> Arrays:
        """Turn the summed contributions of a round's clients into the next global model.

        Constant buffers (:func:`is_constant`) may come out as anything: the accumulator
        replaces them by the previous global's values.
        """

    def finalize_via(self, sums: dict[str, torch.Tensor], previous: Arrays, aggregation: int,
                     release: Callable[[Arrays], Arrays]) -> Arrays:
        """:meth:`finalize` with ``release`` applied to the aggregate where the rule publishes
        it: by default to the finalized model. A rule that steps from an aggregate (a server
        optimiser on the mean) applies it to that aggregate instead, so the step is
        post-processing of what ``release`` returned (central DP adds its noise there)."""
        return release(self.finalize(sums, previous, aggregation))

    def state_dict(self) -> dict[str, Any]:
        """Strategy state carried across rounds (e.g. server optimiser moments); default none."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""

    def last_round_info(self) -> dict[str, float]:
        """Scalars about the last finalized round for the round log (e.g. DP noise); default none."""
        return {}


class Accumulator:
    """Named partial sums of one round over some clients.

    ``merge`` is associative and commutative (it adds sums key by key; ``MAX_PREFIX`` keys
    take the maximum), so any split of a round's clients over workers reduces to the same
    result up to float summation order.
    """

    def __init__(self, strategy: Strategy, previous: Arrays, server_round: int, *,
                 aggregation: int | None = None) -> None:
        self.strategy = strategy
        self.full_previous = previous
        # Only the tensors clients send are validated, folded and finalized.
        self.previous = {k: previous[k] for k in strategy.client_hooks().sent_keys(list(previous))}
        self.server_round = server_round
        self.aggregation = server_round if aggregation is None else aggregation
        self.sums: dict[str, torch.Tensor] = {}
        self.num_clients = 0

    def accumulate(self, update: ClientUpdate) -> None:
        """Fold one client's update in."""
        self.strategy.fold(self.sums, update, self.previous, self.aggregation)
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
            elif key.startswith(MAX_PREFIX):
                torch.maximum(mine, value, out=mine)
            else:
                mine += value
        self.num_clients += num_clients

    def finalize(self) -> Arrays:
        """The next global model; requires at least one client.

        Tensors clients do not send and constant buffers (:func:`is_constant`) keep the
        previous global's values exactly, in every strategy.
        """
        if self.num_clients == 0:
            raise ValueError("cannot finalize a round with no client updates")
        new = self.strategy.finalize(self.sums, self.previous, self.aggregation)
        return {k: v if is_constant(k) else new.get(k, v) for k, v in self.full_previous.items()}


ROW_PREFIX = "row:"  # "row:{name}": the stacked updates of one tensor, shape [m, *shape]
ROW_WEIGHT = "row-n"  # [m] float64: each row's num-examples
ROW_ID = "row-id"  # [m] int64: each row's client id (rows are sorted by it before finalizing)


class ListStrategy(Strategy):
    """A non-decomposable rule (median, trimmed mean, Krum) that needs every client's update.

    It pays O(clients × model) server memory knowingly. Its "sums" are the stacked updates
    (``ROW_PREFIX + name`` of shape ``[m, *shape]``, ``ROW_WEIGHT``, ``ROW_ID``), so a cohort
    worker still replies with named tensors and ``merge_sums`` concatenates them. ``finalize``
    sorts the rows by client id, which makes the result independent of arrival order and of
    the split over workers; subclasses implement :meth:`combine` on the sorted rows.
    """

    decomposable: ClassVar[bool] = False

    def new_accumulator(self, previous: Arrays, server_round: int, *,
                        aggregation: int | None = None) -> "Accumulator":
        return ListAccumulator(self, previous, server_round, aggregation=aggregation)

    def fold(self, sums: dict[str, torch.Tensor], update: ClientUpdate, previous: Arrays,
             aggregation: int) -> None:
        """Append ``update`` as one row (concatenation; :class:`ListAccumulator` batches it)."""
        row = {ROW_PREFIX + name: t.detach().clone().unsqueeze(0) for name, t in update.arrays.items()}
        row[ROW_WEIGHT] = torch.tensor([float(update.num_examples)], dtype=torch.float64)
        row[ROW_ID] = torch.tensor([int(update.client_id)], dtype=torch.int64)
        for key, value in row.items():
            sums[key] = torch.cat([sums[key], value]) if key in sums else value

    def finalize(self, sums: dict[str, torch.Tensor], previous: Arrays, aggregation: int) -> Arrays:
        order = torch.argsort(sums[ROW_ID], stable=True)
        rows = {name: sums[ROW_PREFIX + name].index_select(0, order) for name in previous}
        return cast_like(self.combine(rows, sums[ROW_WEIGHT][order], previous, aggregation), previous)

    @abstractmethod
    def combine(self, rows: Arrays, weights: torch.Tensor, previous: Arrays, aggregation: int) -> Arrays:
        """The next global tensors from ``rows[name]`` (``[m, *shape]``, sorted by client id)
        and the clients' num-examples ``weights`` (``[m]``)."""


class ListAccumulator(Accumulator):
    """Keeps every update as a row; ``merge`` concatenates (see :class:`ListStrategy`).

    Rows are kept as a list of chunks and concatenated once, when ``sums`` is read, so
    folding m clients costs O(m × model), not O(m² × model).
    """

    @property  # type: ignore[override]
    def sums(self) -> dict[str, torch.Tensor]:
        if len(self._chunks) > 1:
            keys = list(self._chunks[0])
            self._chunks = [{k: torch.cat([c[k] for c in self._chunks]) for k in keys}]
        return self._chunks[0] if self._chunks else {}

    @sums.setter
    def sums(self, value: dict[str, torch.Tensor]) -> None:
        self._chunks: list[dict[str, torch.Tensor]] = [value] if value else []

    def accumulate(self, update: ClientUpdate) -> None:
        row: dict[str, torch.Tensor] = {}
        self.strategy.fold(row, update, self.previous, self.aggregation)
        self._chunks.append(row)
        self.num_clients += 1

    def merge_sums(self, sums: dict[str, torch.Tensor], num_clients: int) -> None:
        """Concatenate another accumulator's (or a worker's) rows to these."""
        if sums:
            self._chunks.append({k: v.clone() for k, v in sums.items()})
        self.num_clients += num_clients

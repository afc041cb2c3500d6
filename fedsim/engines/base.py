"""What every engine is: a registered plan (how many simulated SuperNodes, which node trains
which sampled clients, how long a reply may take) and the codec of its train replies (the
keys a worker writes and the server reads back).

An engine is a frozen dataclass subclassing :class:`Engine`, registered by name in
:data:`fedsim.registry.ENGINES`; :func:`fedsim.engines.make_engine` builds the configured
one. A third engine is one module with its subclass plus one line in
:data:`fedsim.registry.BUILTIN` (or ``@register_engine`` in a plugin module).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from fedsim.registry import ENGINES

# The keys of a train reply's metrics record besides fedsim.records' (one place for both
# sides: the ClientApp writes them, the server's reply codecs read them).
TRAIN_SECONDS = "train-seconds"  # seconds the reply spent training (worker-side)
LOSS_SUM = "loss-sum"  # a cohort reply: the sum of its folded clients' losses
REJECTED = "rejected:"  # prefix: "rejected:<reason>" -> clients whose update failed validation
FAILED = "failed:"  # prefix: "failed:<reason>" -> clients that raised or ran out of time


def count_metrics(rejected: Mapping[str, int], failed: Mapping[str, int]) -> dict[str, int]:
    """A reply's per-reason counts as metrics: ``{"rejected:<reason>": n, "failed:<reason>": n}``."""
    return {**{REJECTED + k: int(v) for k, v in rejected.items()}, **{FAILED + k: int(v) for k, v in failed.items()}}


def read_counts(metrics: Mapping[str, Any]) -> tuple[Counter[str], Counter[str]]:
    """``(rejected, failed)`` per-reason counts from a reply's metrics (:func:`count_metrics`)."""
    rejected: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    for key, value in metrics.items():
        if key.startswith(REJECTED):
            rejected[key.removeprefix(REJECTED)] += int(value)
        elif key.startswith(FAILED):
            failed[key.removeprefix(FAILED)] += int(value)
    return rejected, failed


def payload_bytes(arrays: Mapping[str, Any]) -> int:
    """Tensor payload of ``arrays`` in bytes: Σ numel × element size.

    ``arrays`` is a state dict of torch tensors or an ``ArrayRecord`` (whose ``Array``
    entries carry dtype and shape); the record's own framing (names, dtype strings, the
    ``.npy`` header of each array) is not counted.
    """
    total = 0
    for value in arrays.values():
        if hasattr(value, "element_size"):  # torch.Tensor
            total += value.numel() * value.element_size()
        else:  # flwr Array
            total += math.prod(value.shape) * np.dtype(value.dtype).itemsize
    return total


@dataclass(frozen=True)
class Engine:
    """A plan for mapping a round's sampled clients onto simulated SuperNodes.

    Subclasses set :attr:`name` (the ``engine.name`` users type), :attr:`reply` (the round
    record's reply shape, :data:`fedsim.records.REPLY_WEIGHTS` or ``REPLY_SUMS``: which of the
    ClientApp's two training paths a node runs) and implement :meth:`plan`, :meth:`assign` and
    the server side of the codec, :meth:`fold`.
    """

    num_nodes: int
    device: str = "cpu"  # where the workers train: "cpu" or "cuda"
    gpus_per_node: float = 0.0  # Ray's num_gpus per SuperNode (1 / engine.workers_per_gpu on CUDA)

    name: ClassVar[str] = ""
    reply: ClassVar[str] = ""
    node_noun: ClassVar[str] = "worker"  # what the start-up line calls a node
    fast_dispatch: ClassVar[bool] = False  # few nodes: Flower's dispatcher may pass more often

    @classmethod
    def plan(cls, exp: Any, device: str, cluster: Any = None) -> Engine:
        """The engine for ``exp`` (a :class:`fedsim.config.ExperimentConfig`) training on
        ``device``, sized by this machine or by the attached Ray ``cluster``."""
        raise NotImplementedError

    def assign(self, client_ids: list[int], node_ids: list[int]) -> list[tuple[int, list[int]]]:
        """``(node id, client ids)`` pairs for one round; ``node_ids`` sorted and stable."""
        raise NotImplementedError

    def clients_per_reply(self, plan: list[tuple[int, list[int]]]) -> int:
        """The most clients one reply trains one after another (what its time budget covers)."""
        return max(len(ids) for _, ids in plan)

    def round_budget(self, plan: list[tuple[int, list[int]]], round_timeout: float | None) -> float | None:
        """Seconds a round's replies may take once sent (``None``: no limit); ``round_timeout``
        is per virtual client."""
        if round_timeout is None or not plan:
            return None
        return round_timeout * self.clients_per_reply(plan)

    def planned_workers(self, cohort_size: int) -> int:
        """The most Ray actors a round of ``cohort_size`` clients keeps busy."""
        return self.num_nodes

    @staticmethod
    def fold(content: Any, client_ids: list[int], acc: Any, tally: Any) -> int:
        """Server side of the codec: validate a reply's ``content`` (a ``RecordDict`` holding
        metrics and arrays) and fold it into the strategy's ``acc``, counting in ``tally``
        (:class:`fedsim.server.replies.RoundTally`); returns the clients it covered."""
        raise NotImplementedError


def reply_codec(reply: str) -> type[Engine]:
    """The registered engine whose replies have shape ``reply`` (its codec's server side)."""
    for name in ENGINES.names():
        engine = ENGINES.get(name)
        if engine.reply == reply:
            return engine
    raise ValueError(f"no engine replies with shape {reply!r}")

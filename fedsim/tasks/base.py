"""The task contract: one interface for every modality (docs/concepts/task-contract.md).

A task owns its data (generated, or read from ``data_dir``), the model it trains, the
loss of one batch, and the held-out evaluation of the encoder. The rest of fedsim only
sees what the contract names:

* **Batches are mappings** (``{"image": ...}``, ``{"video": ..., "audio": ..., "bpm": ...}``).
  A client's data is a :class:`ClientDataset` (``len`` and ``batches(generator,
  batch_size)``) that the task builds and batches as it likes; the trainer only calls
  ``task.loss(model, batch, generator)`` on each batch.
* **The task evaluates**: :meth:`Task.evaluate` returns ``{metric: value}`` for the metrics
  the task declares in :meth:`Task.metrics` (name, direction; the first is the primary
  one), and :meth:`Task.baselines` the floors reported at round 0. Nothing downstream
  names a metric.
* **The encoder is named**: :attr:`Task.encoder_prefixes` are the state-dict prefixes of
  the shared encoder (what FedVSSL aggregates, what the server evaluates and export writes).
* **Partitioning belongs to the task**, and every client's data is a pure function of
  ``(context.seed, client id)``.

Tasks never import a strategy or the server (imports flow one way, see docs/concepts/layout.md).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from fedsim.objectives.heads import BackboneHead, projection_mlp

Batch = Mapping[str, torch.Tensor]
"""One training batch: named tensors, samples along dim 0."""

__all__ = ["BackboneHead", "Batch", "ClientDataset", "MIN_BATCH", "Metric", "Task", "TaskContext",
           "TaskParams", "TensorDataset", "projection_mlp"]

MIN_BATCH = 2  # BatchNorm and contrastive losses need two samples


class TaskParams(BaseModel):
    """Base of a task's own parameters (``task.params`` in the YAML); unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


@dataclass(frozen=True)
class Metric:
    """A metric a task declares: its name (the key :meth:`Task.evaluate` returns) and direction."""

    name: str
    higher_is_better: bool = True
    description: str = ""

    def better(self, new: float, old: float | None) -> bool:
        """Whether ``new`` improves on ``old`` (anything beats ``None``)."""
        if old is None:
            return True
        return new > old if self.higher_is_better else new < old


@runtime_checkable
class ClientDataset(Protocol):
    """One client's local data as the trainer sees it."""

    def __len__(self) -> int:
        """Number of samples (the client's ``num-examples``)."""

    def batches(self, generator: torch.Generator, batch_size: int) -> Iterator[Batch]:
        """One epoch of batches in an order drawn from ``generator``."""


class TensorDataset:
    """A client dataset of tensors that share their first dimension.

    ``batches`` draws one permutation from ``generator`` per epoch and yields
    ``{name: tensor[idx]}`` for consecutive chunks of ``batch_size``; a last chunk of fewer
    than two samples is dropped (BatchNorm and contrastive losses need two).
    """

    def __init__(self, tensors: Mapping[str, torch.Tensor]) -> None:
        sizes = {name: int(t.shape[0]) for name, t in tensors.items()}
        if not sizes or len(set(sizes.values())) != 1:
            raise ValueError(f"TensorDataset needs tensors of one length along dim 0, got {sizes}")
        self.tensors = dict(tensors)
        self._len = next(iter(sizes.values()))

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.tensors[name]

    def batches(self, generator: torch.Generator, batch_size: int) -> Iterator[Batch]:
        order = torch.randperm(self._len, generator=generator)
        for start in range(0, self._len, batch_size):
            idx = order[start:start + batch_size]
            if idx.numel() < MIN_BATCH:
                continue
            yield {name: t[idx] for name, t in self.tensors.items()}


@dataclass(frozen=True)
class TaskContext:
    """What every task is built from, shared by server and clients.

    ``partitioning`` and ``evaluation`` are :class:`fedsim.config.PartitionConfig` and
    :class:`fedsim.config.EvaluationConfig` (typed ``Any``: tasks do not import the config).
    """

    num_clients: int
    seed: int
    partitioning: Any
    backbone: str
    data_dir: str | None = None
    evaluation: Any = None
    backbone_options: dict[str, Any] = field(default_factory=dict)


class Task(ABC):
    """A (self-)supervised learning task plugin.

    Subclasses set ``Params`` to their own pydantic model and register with
    ``@register_task("name")``. Everything a client does must be a pure function of
    ``(context.seed, client id)`` and of the generator passed in, so both engines and a
    resumed run see the same data. The constructor must be cheap (the command line builds a
    task to check a run before start-up); read folders lazily.
    """

    Params: ClassVar[type[TaskParams]] = TaskParams
    reads_data_dir: ClassVar[bool] = False
    """Whether ``--data-dir`` (``task.data_dir``) means anything to this task."""
    encoder_prefixes: ClassVar[tuple[str, ...]] = ("backbone.",)
    """State-dict prefixes of the shared encoder."""
    experimental: ClassVar[dict[str, str]] = {}
    """Objectives/pretexts (``task.params``) that do not yet beat the random-init encoder and the
    raw-input baseline at their defaults on the bundled data: name -> the measured numbers.
    ``fedsim list`` prints them; ``benchmarks/objectives.py`` measures them."""
    views: ClassVar[frozenset[str]] = frozenset()
    """The views this task can produce for an objective (:data:`fedsim.objectives.base.VIEWS`):
    it can train every registered objective whose needs they cover."""
    default_model: ClassVar[str | None] = None
    """The backbone used when ``model.name`` is not given (``None``: the config's default)."""

    def __init__(self, context: TaskContext, params: TaskParams) -> None:
        self.context = context
        self.params = params

    @abstractmethod
    def build_model(self) -> nn.Module:
        """The trained model, initialised from ``context.seed`` only."""

    @abstractmethod
    def client_dataset(self, client_id: int) -> ClientDataset:
        """Client ``client_id``'s local data; deterministic in (seed, client id)."""

    @abstractmethod
    def loss(self, model: nn.Module, batch: Batch, generator: torch.Generator) -> torch.Tensor:
        """The training loss of one batch (augmentations happen here, drawn from ``generator``)."""

    @abstractmethod
    def metrics(self) -> tuple[Metric, ...]:
        """The metrics :meth:`evaluate` returns; the first one is the primary metric."""

    @abstractmethod
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Score ``model``'s encoder on held-out data no client sees: ``{metric name: value}``."""

    def start_local_training(self, model: nn.Module) -> None:
        """Called once per client before its first local step, after the received weights are
        loaded into ``model``. Default: nothing. A task whose loss needs more than ``model``
        (BYOL's momentum target network) builds it here, so it is a pure function of the
        received weights in both engines and needs no per-client state."""

    def baselines(self) -> dict[str, float]:
        """Floors reported at round 0 beside the random-init encoder (e.g. raw-input kNN).

        Keys are ``<metric>_<baseline>`` (``knn_top1_raw_input``, ``mae_constant_mean``) so a
        report can put each beside its metric. Default: none.
        """
        return {}

    def describe_data(self) -> dict[str, Any]:
        """A JSON-able description of the data (source, sizes, held-out rule) for the run dir.

        Reading a ``data_dir`` happens here at the latest, so a malformed folder fails
        before training starts.
        """
        return {"source": "generated"}

    @property
    def primary_metric(self) -> Metric:
        """The first declared metric."""
        return self.metrics()[0]

    def metric(self, name: str) -> Metric:
        """The declared metric ``name``."""
        for m in self.metrics():
            if m.name == name:
                return m
        raise KeyError(f"unknown metric {name!r}; this task declares: "
                       f"{', '.join(m.name for m in self.metrics())}")

    def encoder_state(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The entries of ``state`` that belong to the encoder (:attr:`encoder_prefixes`)."""
        return {k: v for k, v in state.items() if k.startswith(self.encoder_prefixes)}

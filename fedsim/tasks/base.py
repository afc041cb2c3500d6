"""The task plugin protocol: what an SSL task gives the rest of fedsim.

A task owns its data (bundled or from ``data_dir``), the model it trains (a registered
backbone plus the task's head), the self-supervised loss of one batch, and the labelled
held-out data the server evaluates the encoder on. Tasks never import a strategy or the
server (imports flow one way, see DESIGN.md).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn


class TaskParams(BaseModel):
    """Base of a task's own parameters (``task.params`` in the YAML); unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class ClientData:
    """One client's local data: samples along dim 0, labels only where the objective uses them."""

    x: torch.Tensor
    y: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.x.shape[0])


@dataclass(frozen=True)
class EvalData:
    """Labelled held-out data never seen by a client: a kNN/probe bank and a query split."""

    bank_x: torch.Tensor
    bank_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor


@dataclass(frozen=True)
class TaskContext:
    """What every task is built from, shared by server and clients."""

    num_clients: int
    seed: int
    partitioning: Any  # fedsim.config.PartitionConfig (kept Any: tasks do not import config)
    backbone: str
    data_dir: str | None = None


class BackboneHead(nn.Module):
    """The model a task trains: an encoder (``backbone``) followed by a ``head`` (projection
    MLP, classifier, ...). The server evaluates ``backbone``; FedVSSL aggregates it only."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


class Task(ABC):
    """A self-supervised learning task plugin.

    Subclasses set ``Params`` to their own pydantic model and register with
    ``@register_task("name")``. Everything a client does must be a pure function of
    ``(context.seed, client id)`` and of the generator passed in, so both engines and a
    resumed run see the same data.
    """

    Params: ClassVar[type[TaskParams]] = TaskParams

    def __init__(self, context: TaskContext, params: TaskParams) -> None:
        self.context = context
        self.params = params

    @abstractmethod
    def build_model(self) -> nn.Module:
        """The trained model: ``model.backbone`` (the encoder) and ``model.head``."""

    @abstractmethod
    def client_data(self, client_id: int) -> ClientData:
        """Client ``client_id``'s local data; deterministic in (seed, client id)."""

    @abstractmethod
    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor | None,
             generator: torch.Generator) -> torch.Tensor:
        """The training loss of one batch (augmentations happen here)."""

    @abstractmethod
    def eval_data(self) -> EvalData:
        """Labelled held-out data for the server's kNN / linear-probe evaluation."""

    def features(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Frozen-encoder features used for evaluation (default: the backbone's output)."""
        return model.backbone(x)

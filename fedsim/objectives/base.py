"""What an objective is, and what it may ask of the task that trains it.

An objective owns the heads it trains on top of the task's encoder and its loss on the
views the task produces; the task owns its data, its encoder and its evaluation. A task
declares the *views* it can produce (:data:`VIEWS`), each objective the views it needs, and
a task trains an objective by name when it produces them all (:func:`fedsim.objectives.build_objective`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar, Protocol

import torch
from torch import nn

from fedsim.objectives.heads import BackboneHead

VIEWS = {
    "augmented": "source.view(x, generator): one augmented encoder input per sample",
    "timeline": "the augmented views' last axis is time (log-mel spectrograms)",
    "labels": "batches carry the samples' class labels under 'label'",
    "rgb_clips": "batch[source.sample_key] holds RGB clips (n, 3, t, h, w); the encoder takes grey "
                 "clips and has feature_map()",
}
"""The view kinds a task can declare (name -> what it promises)."""


class ViewSource(Protocol):
    """What an objective sees of its task (the task object itself)."""

    sample_key: str
    """The batch key of the samples (``"image"``, ``"audio"``, ``"video"``)."""

    def view(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One augmented encoder input per sample of ``x`` (tasks declaring ``augmented``)."""

    @property
    def num_classes(self) -> int:
        """Classes of the labels (tasks declaring ``labels``)."""


class Objective(ABC):
    """One training objective: its head(s), its loss, and what it needs from the task.

    ``params`` is the task's parameter object (the objective reads the fields it names, e.g.
    ``temperature``); ``head_path`` is where :meth:`build` (or the task, for several
    objectives at once) put this objective's head in the model (``"head"``, ``"heads.order"``).
    Subclasses register with ``@register_objective("name", needs=...)``.
    """

    name: ClassVar[str] = ""
    needs: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, params: Any, head_path: str = "head") -> None:
        self.params = params
        self.head_path = head_path

    def head(self, dim: int, source: ViewSource) -> nn.Module:
        """The head on ``dim``-wide encoder features (built inside the task's seeded init)."""
        raise NotImplementedError(f"objective {self.name!r} builds its own model (see build)")

    def build(self, backbone: nn.Module, source: ViewSource) -> nn.Module:
        """The trained model: ``backbone`` plus :meth:`head` (state-dict keys ``backbone.*``, ``head.*``)."""
        return BackboneHead(backbone, self.head(backbone.out_dim, source))

    def head_of(self, model: nn.Module) -> nn.Module:
        """This objective's head inside ``model``."""
        return model.get_submodule(self.head_path)

    def start(self, model: nn.Module) -> None:
        """Called when a client starts local training with the received weights loaded (default: nothing)."""

    @abstractmethod
    def loss(self, model: nn.Module, batch: Mapping[str, torch.Tensor], source: ViewSource,
             generator: torch.Generator) -> torch.Tensor:
        """The loss of one batch; every random draw comes from ``generator``."""


class TwoViewObjective(Objective):
    """Two augmented views per sample in one forward pass (BatchNorm sees both), then
    :meth:`pair_loss` of the two halves of the projections."""

    needs = frozenset({"augmented"})

    @abstractmethod
    def pair_loss(self, z0: torch.Tensor, z1: torch.Tensor) -> torch.Tensor:
        """The loss of the projections of view 0 and view 1 ``(n, d)`` each."""

    def loss(self, model: nn.Module, batch: Mapping[str, torch.Tensor], source: ViewSource,
             generator: torch.Generator) -> torch.Tensor:
        x = batch[source.sample_key]
        views = torch.cat([source.view(x, generator), source.view(x, generator)])
        z = self.head_of(model)(model.backbone(views))  # (2n, d): one forward pass
        return self.pair_loss(z[: len(x)], z[len(x):])

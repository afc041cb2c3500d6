"""Supervised training: a linear classifier on one augmented view, label-smoothed cross-entropy
(the FedRepOpt setting, arXiv 2409.15898). Reads ``label_smoothing`` from the task's parameters."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from fedsim.objectives import register_objective
from fedsim.objectives.base import Objective, ViewSource


@register_objective("supervised", needs={"augmented", "labels"})
class Supervised(Objective):
    """Label-smoothed cross-entropy of a linear head on one augmented view."""

    def head(self, dim: int, source: ViewSource) -> nn.Module:
        return nn.Linear(dim, source.num_classes)

    def loss(self, model: nn.Module, batch: Mapping[str, torch.Tensor], source: ViewSource,
             generator: torch.Generator) -> torch.Tensor:
        if "label" not in batch:
            raise ValueError(f"the supervised {source.sample_key} objective needs labels (batch['label'])")
        logits = self.head_of(model)(model.backbone(source.view(batch[source.sample_key], generator)))
        return F.cross_entropy(logits, batch["label"], label_smoothing=self.params.label_smoothing)

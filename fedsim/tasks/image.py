"""The image task: SimCLR (or supervised) training of a small encoder on images.

By default clients hold the bundled digits population of :mod:`fedsim.data.digits`:
label-skewed subsets of scikit-learn's digits, each client drawn in its own writer style.
With ``--data-dir`` they hold images of a local folder instead (ImageFolder tree or
CIFAR-10/100 python batches, :mod:`fedsim.data.folders`), partitioned by label skew or by
the writer/user id in the file names, and evaluation uses the folder's held-out split
(:mod:`fedsim.data.folder_clients`). The
self-supervised objective is SimCLR (Chen et al., arXiv 2002.05709): two augmented views
of every sample, a projection MLP, NT-Xent (:class:`fedsim.losses.NTXentLoss`). The
augmentations cover exactly the nuisances the writer style varies — rotation, slant,
size, aspect, position, elastic wobble, stroke thickness, ink — so invariance to them is what
the encoder learns (docs/getting-started/quickstart.md: augmentations that miss the
population's nuisance make SimCLR *worse* than a random encoder). ``objective: byol`` trains BYOL
(Grill et al., arXiv 2006.07733) on the same two views: :func:`fedsim.objectives.byol.byol_predictor` says what is
aggregated and where the momentum target lives. ``objective: supervised`` trains a
linear classifier with label-smoothed cross-entropy instead (FedRepOpt, arXiv 2409.15898).
Each objective is a registered part (:mod:`fedsim.objectives`) trained on this task's views:
``augmented`` (:func:`fedsim.data.augmentations.augment`) and ``labels``.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import nn

from fedsim.data import digits
from fedsim.data.augmentations import augment
from fedsim.data.folder_augmentations import photo_augment
from fedsim.data.folders import ImageIndex, load_images, scan_image_folder
from fedsim.models import build_backbone
from fedsim.objectives import build_objective
from fedsim.optim.repopt import ProxyData
from fedsim.registry import register_task
from fedsim.tasks.base import Batch, TaskContext, TaskParams, TensorDataset
from fedsim.tasks.classification import EvalData, ProbeEvaluation
from fedsim.tasks.folder import FolderTask


class ImageParams(TaskParams):
    """Parameters of the image task (``task.params`` in the YAML)."""

    objective: Literal["simclr", "byol", "supervised"] = "simclr"
    byol_momentum: float = Field(0.99, ge=0.0, le=1.0, description="BYOL target EMA rate τ (byol only)")
    byol_predictor_lr: float = Field(1.0, gt=0.0, description="BYOL predictor's learning rate as a multiple "
                                                              "of the client lr (byol only)")
    temperature: float = Field(0.5, gt=0.0, description="NT-Xent temperature τ")
    projection_dim: int = Field(64, ge=2, description="output size of the SimCLR/BYOL projection MLP")
    image_size: int = Field(28, ge=12, le=64, description="side of the rendered square images, px")
    min_samples: int = Field(64, ge=2, description="smallest client data set")
    max_samples: int = Field(128, ge=2, description="largest client data set")
    style_strength: float = Field(1.0, ge=0.0, description="spread of the per-client writer styles")
    augment_strength: float = Field(1.0, ge=0.0, description="spread of the SimCLR augmentations")
    augmentations: Literal["writer", "photo"] = Field(
        "writer", description="views: the digit writers' nuisances, or crop-flip-colour for photo "
                              "folders (fedsim.data.folder_augmentations)")
    label_smoothing: float = Field(0.1, ge=0.0, lt=1.0, description="supervised objective only")
    eval_samples: int = Field(500, ge=1, description="--data-dir: held-out images per bank and query set, at most")

    @model_validator(mode="after")
    def _sizes(self) -> "ImageParams":
        if self.min_samples > self.max_samples:
            raise ValueError(f"min_samples ({self.min_samples}) is more than max_samples ({self.max_samples})")
        return self


@register_task("image")
class ImageTask(ProbeEvaluation, FolderTask):
    """SimCLR on images: bundled per-client digit writers or your own folder (or BYOL, supervised)."""

    Params = ImageParams
    views = frozenset({"augmented", "labels"})
    sample_key = "image"
    generated_classes = digits.NUM_CLASSES
    scan_folder = staticmethod(scan_image_folder)

    def __init__(self, context: TaskContext, params: ImageParams | None = None) -> None:
        super().__init__(context, params or ImageParams())
        self.params: ImageParams
        p = self.params
        self._style = digits.StyleScale(strength=p.style_strength)
        self._eval: EvalData | None = None
        self.objective = build_objective(p.objective, self.views, p)

    @property
    def channels(self) -> int:
        """Input channels: 1 for the digits, the folder's (1 or 3) otherwise."""
        return 1 if self._folder is None else self._folder.index.channels

    def load_items(self, index: ImageIndex, items: np.ndarray) -> torch.Tensor:
        return load_images(index, items, image_size=self.params.image_size, channels=index.channels)

    def generated_samples(self, client_id: int) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.params
        return digits.client_sample(client_id, seed=self.context.seed, num_clients=self.context.num_clients,
                                    partitioning=self.context.partitioning, size=p.image_size,
                                    min_samples=p.min_samples, max_samples=p.max_samples, scale=self._style)

    def generated_held_out(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Digits in fresh random writer styles."""
        return digits.eval_sample(seed=self.context.seed, size=self.params.image_size, scale=self._style)

    def generated_description(self) -> dict[str, Any]:
        return {"population": "digits writers (scikit-learn digits)"}

    def proxy_data(self) -> ProxyData:
        """Labelled proxy batches for RepOpt Hyper-Search: a fixed split of this task's data."""
        size = self.params.image_size
        if self._folder is None:  # the digits' client pool of split 0, without writer styles
            return ProxyData(key=f"digits:{size}",
                             batches=lambda bs, seed: digits.proxy_batches(bs, seed, image_size=size))
        return ProxyData(key=f"folder:{self._folder.path}:{self.context.seed}:{size}",
                         batches=self._folder.proxy_batches, num_classes=self.num_classes)

    def build_model(self) -> nn.Module:
        """Backbone ``context.backbone`` plus the objective's head(s); initialised from ``context.seed`` only."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.context.seed)
            backbone = build_backbone(self.context.backbone, in_channels=self.channels,
                                      image_size=self.params.image_size, proxy=self.proxy_data(),
                                      options=self.context.backbone_options)
            return self.objective.build(backbone, self)

    def client_dataset(self, client_id: int) -> TensorDataset:
        """Client ``client_id``'s ``image`` tensor (and ``label``, for an objective that needs labels only)."""
        x, y = self.samples(client_id)
        return TensorDataset({"image": x, "label": y} if "labels" in self.objective.needs else {"image": x})

    def view(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One augmented view of images ``x`` (:func:`fedsim.data.augmentations.augment`, or
        :func:`fedsim.data.folder_augmentations.photo_augment` with ``augmentations: photo``)."""
        if self.params.augmentations == "photo":
            return photo_augment(x, generator, self.params.augment_strength)
        return augment(x, generator, self.params.augment_strength)

    def start_local_training(self, model: nn.Module) -> None:
        """BYOL: the target network restarts from the received global weights."""
        self.objective.start(model)

    def loss(self, model: nn.Module, batch: Batch, generator: torch.Generator) -> torch.Tensor:
        """The objective's loss on this task's views (NT-Xent, BYOL's loss, or cross-entropy)."""
        return self.objective.loss(model, batch, self, generator)

    def eval_data(self) -> EvalData:
        """Held-out images no client ever sees: digits in fresh random writer styles, or the
        folder's held-out split (:class:`fedsim.data.folder_clients.FolderClients`)."""
        if self._eval is None:
            self._eval = EvalData(*self.held_out())
        return self._eval

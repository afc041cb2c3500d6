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
(Grill et al., arXiv 2006.07733) on the same two views: :func:`byol_predictor` says what is
aggregated and where the momentum target lives. ``objective: supervised`` trains a
linear classifier with label-smoothed cross-entropy instead (FedRepOpt, arXiv 2409.15898).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from fedsim.data import digits
from fedsim.data.folder_clients import FolderClients
from fedsim.data.folders import ImageIndex, load_images, scan_image_folder
from fedsim.losses import BYOLNetwork, MomentumTarget, NTXentLoss
from fedsim.models import build_backbone
from fedsim.optim.repopt import ProxyData
from fedsim.registry import register_task
from fedsim.tasks.base import BackboneHead, Batch, Task, TaskContext, TaskParams, TensorDataset, projection_mlp
from fedsim.tasks.classification import EvalData, ProbeEvaluation


class ImageParams(TaskParams):
    """Parameters of the image task (``task.params`` in the YAML)."""

    objective: Literal["simclr", "byol", "supervised"] = "simclr"
    byol_momentum: float = Field(0.99, ge=0.0, le=1.0, description="BYOL target EMA rate τ (byol only)")
    temperature: float = Field(0.5, gt=0.0, description="NT-Xent temperature τ")
    projection_dim: int = Field(64, ge=2, description="output size of the SimCLR/BYOL projection MLP")
    image_size: int = Field(28, ge=12, le=64, description="side of the rendered square images, px")
    min_samples: int = Field(64, ge=2, description="smallest client data set")
    max_samples: int = Field(128, ge=2, description="largest client data set")
    style_strength: float = Field(1.0, ge=0.0, description="spread of the per-client writer styles")
    augment_strength: float = Field(1.0, ge=0.0, description="spread of the SimCLR augmentations")
    label_smoothing: float = Field(0.1, ge=0.0, lt=1.0, description="supervised objective only")
    eval_samples: int = Field(500, ge=1, description="--data-dir: held-out images per bank and query set, at most")

    @model_validator(mode="after")
    def _sizes(self) -> "ImageParams":
        if self.min_samples > self.max_samples:
            raise ValueError(f"min_samples ({self.min_samples}) is more than max_samples ({self.max_samples})")
        return self


@dataclass(frozen=True)
class AugmentRanges:
    """Half-widths of the uniform per-sample augmentation draws (before ``strength``)."""

    rotation_deg: float = 25.0
    shear: float = 0.5
    log_scale: float = 0.25
    log_aspect: float = 0.25
    translate: float = 0.15  # half-canvas units
    elastic: float = 0.05  # std of the coarse displacement field
    thickness: float = 1.0  # blend towards 3×3 dilation (+) or erosion (−)
    ink: float = 0.4  # multiply by 1 − U(0, ink)


def augment(x: torch.Tensor, generator: torch.Generator, strength: float = 1.0,
            ranges: AugmentRanges = AugmentRanges()) -> torch.Tensor:
    """One random view of every square image of ``x`` ``(n, 1, s, s)``, parameters drawn per sample.

    Random rotation, shear, scale, aspect, shift, a smooth elastic field, thicker or thinner
    strokes (a blend towards a 3×3 dilation or erosion) and ink; ranges in
    :class:`AugmentRanges`, geometric ones times ``strength``. Hand-written on
    ``F.affine_grid`` instead of ``torchvision.transforms.v2.RandomAffine``/``ElasticTransform``
    because v2 draws one parameter set per call from the global RNG: per-sample views would
    need a Python loop over the batch (measured ~20× slower here for 64 images) and global-RNG
    forking to be reproducible, while this draws every parameter from ``generator`` at once.
    """
    n, _, h, w = x.shape
    if h != w:  # the warp resamples onto a square canvas (the task renders square images)
        raise ValueError(f"augment needs square images, got {h}x{w}")
    r = ranges

    def uniform(half_width: float) -> torch.Tensor:
        return (torch.rand(n, generator=generator) * 2 - 1) * half_width * strength

    theta = digits.affine_theta(uniform(math.radians(r.rotation_deg)), uniform(r.shear),
                                uniform(r.log_scale), uniform(r.log_aspect),
                                uniform(r.translate), uniform(r.translate))
    coarse = torch.randn((n, 2, 3, 3), generator=generator) * r.elastic * strength
    out = digits.warp(x, theta, digits.elastic_field(coarse, h), h)
    # stroke thickness: a > 0 blends towards dilation, a < 0 towards erosion
    a = uniform(r.thickness).clamp(-1, 1).view(n, 1, 1, 1)
    dilated = F.max_pool2d(out, 3, stride=1, padding=1)
    eroded = -F.max_pool2d(-out, 3, stride=1, padding=1)
    out = out + a.clamp(min=0) * (dilated - out) + (-a).clamp(min=0) * (eroded - out)
    return out * (1.0 - torch.rand((n, 1, 1, 1), generator=generator) * r.ink)


def byol_predictor(dim: int, hidden: int) -> nn.Module:
    """BYOL's predictor q_θ: Linear → BN → ReLU → Linear, ``dim → hidden → dim`` (arXiv 2006.07733, §3.3).

    In a federated run (``objective: byol``) the online encoder, projector and this predictor
    are the model's parameters, so the strategy aggregates all three, as it aggregates SimCLR's
    projector; the momentum target is no parameter: each client rebuilds it from the received
    global encoder + projector when its local training starts (:class:`fedsim.losses.MomentumTarget`).
    The target is not kept per client (as FedVSSL heads are) because in the cross-device
    setting a client is sampled a few times per run at most, so a kept target would be many
    rounds stale or, on first participation, the global model anyway; rebuilding it needs no
    client state, so both engines, resumed runs and deployed nodes behave alike. With the
    demo's ~10 local steps and τ = 0.99 the target stays close to the global model: the
    online network regresses the global model's projections of the other view.
    """
    return nn.Sequential(nn.Linear(dim, hidden, bias=False), nn.BatchNorm1d(hidden),
                         nn.ReLU(inplace=True), nn.Linear(hidden, dim))


@register_task("image")
class ImageTask(ProbeEvaluation, Task):
    """SimCLR on images: bundled per-client digit writers or your own folder (or BYOL, supervised)."""

    experimental = {"byol": "kNN 0.209 after the demo's 20 rounds, seed 0: above init 0.149, below raw pixels 0.579"}

    Params = ImageParams
    reads_data_dir = True

    def __init__(self, context: TaskContext, params: ImageParams | None = None) -> None:
        super().__init__(context, params or ImageParams())
        self.params: ImageParams
        p = self.params
        self._style = digits.StyleScale(strength=p.style_strength)
        self._eval: EvalData | None = None
        self._ntxent = NTXentLoss(p.temperature)
        self._target = MomentumTarget(p.byol_momentum)
        self._folder = None if context.data_dir is None else FolderClients(
            context.data_dir, scan=scan_image_folder, load=self._load, seed=context.seed,
            num_clients=context.num_clients, partitioning=context.partitioning,
            min_samples=p.min_samples, max_samples=p.max_samples, eval_samples=p.eval_samples)

    @property
    def channels(self) -> int:
        """Input channels: 1 for the digits, the folder's (1 or 3) otherwise."""
        return 1 if self._folder is None else self._folder.index.channels

    def _load(self, index: ImageIndex, items: np.ndarray) -> torch.Tensor:
        return load_images(index, items, image_size=self.params.image_size, channels=index.channels)

    @property
    def num_classes(self) -> int:
        return digits.NUM_CLASSES if self._folder is None else self._folder.index.num_classes

    def proxy_data(self) -> ProxyData:
        """Labelled proxy batches for RepOpt Hyper-Search: a fixed split of this task's data."""
        size = self.params.image_size
        if self._folder is None:  # the digits' client pool of split 0, without writer styles
            return ProxyData(key=f"digits:{size}",
                             batches=lambda bs, seed: digits.proxy_batches(bs, seed, image_size=size))
        return ProxyData(key=f"folder:{self._folder.path}:{self.context.seed}:{size}",
                         batches=self._folder.proxy_batches, num_classes=self.num_classes)

    def build_model(self) -> nn.Module:
        """Backbone ``context.backbone`` plus head; initialised from ``context.seed`` only."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.context.seed)
            backbone = build_backbone(self.context.backbone, in_channels=self.channels,
                                      image_size=self.params.image_size, proxy=self.proxy_data(),
                                      options=self.context.backbone_options)
            if self.params.objective == "byol":  # projector and predictor: BYOL's MLP, narrower
                d, hidden = self.params.projection_dim, backbone.out_dim
                return BYOLNetwork(backbone, projection_mlp(hidden, d), byol_predictor(d, hidden))
            if self.params.objective == "simclr":
                head = projection_mlp(backbone.out_dim, self.params.projection_dim)
            else:
                head = nn.Linear(backbone.out_dim, self.num_classes)
        return BackboneHead(backbone, head)

    def client_dataset(self, client_id: int) -> TensorDataset:
        """Client ``client_id``'s ``image`` tensor (and ``label``, for the supervised objective only)."""
        p = self.params
        if self._folder is not None:
            x, y = self._folder.client_samples(client_id)
        else:
            x, y = digits.client_sample(client_id, seed=self.context.seed, num_clients=self.context.num_clients,
                                        partitioning=self.context.partitioning, size=p.image_size,
                                        min_samples=p.min_samples, max_samples=p.max_samples, scale=self._style)
        return TensorDataset({"image": x, "label": y} if p.objective == "supervised" else {"image": x})

    def start_local_training(self, model: nn.Module) -> None:
        """BYOL: the target network restarts from the received global weights (see
        :func:`byol_predictor` for why it is not kept per client)."""
        if self.params.objective == "byol":
            self._target.reset(model)

    def loss(self, model: nn.Module, batch: Batch, generator: torch.Generator) -> torch.Tensor:
        """NT-Xent (or BYOL's loss) of two augmented views, or label-smoothed cross-entropy of one view."""
        strength = self.params.augment_strength
        x = batch["image"]
        if self.params.objective == "supervised":
            if "label" not in batch:
                raise ValueError("the supervised image objective needs labels (batch['label'])")
            return F.cross_entropy(model(augment(x, generator, strength)), batch["label"],
                                   label_smoothing=self.params.label_smoothing)
        if self.params.objective == "byol":
            return self._target.loss(model, augment(x, generator, strength), augment(x, generator, strength))
        views = torch.cat([augment(x, generator, strength), augment(x, generator, strength)])
        z = model(views)  # (2n, projection_dim): one forward pass, BatchNorm sees both views
        return self._ntxent(z[: len(x)], z[len(x):])

    def eval_data(self) -> EvalData:
        """Held-out images no client ever sees: digits in fresh random writer styles, or the
        folder's held-out split (:class:`fedsim.data.folder_clients.FolderClients`)."""
        if self._eval is None:
            if self._folder is not None:
                tensors = self._folder.eval_tensors()
            else:
                tensors = digits.eval_sample(seed=self.context.seed, size=self.params.image_size,
                                             scale=self._style)
            self._eval = EvalData(*tensors)
        return self._eval

    def describe_data(self) -> dict[str, Any]:
        """The bundled digits, or the folder's layout, sizes and held-out items."""
        if self._folder is None:
            return {"source": "generated", "population": "digits writers (scikit-learn digits)"}
        return {"source": "folder", **self._folder.describe()}

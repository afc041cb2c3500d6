"""The audio-image task: one encoder for unpaired images and sounds (FSSUAVL, arXiv 2504.09516).

Clients hold digit images only, digit sounds only, or both — never pairs
(:mod:`fedsim.data.paired_digits`; the mix is ``task.params.modality_mix``, drawn per client
from (seed, client id)). Both modalities enter the encoder as one-channel 2-D inputs: images
``(n, 1, s, s)`` and log-mel spectrograms ``(n, 1, n_mels, frames)`` (the audio task's front
end and views, :class:`fedsim.data.augmentations.SoundViews`), each through a small stem of its own
(3×3 conv + BN + ReLU: the two inputs live on different scales) into one shared trunk
(``encoders: single``, FSSUAVL) or into one trunk per modality (``encoders: separate``, the
paper's baseline of two models). Within-modality SimCLR views (the image task's augmentations,
the audio task's views) are the positives.

The cross-modal term (``cross_modal``) must need no pairs. The issue suggested aligning the
modalities' feature statistics; the paper's abstract says the opposite: "instead of aligning
the audio and image modalities, FSSUAVL jointly discriminates them by projecting them into a
common embedding space using contrastive SSL". We follow the paper by default:

* ``joint`` (default, the paper): on a client holding both modalities, one NT-Xent over the
  image views and the sound views together, so every sample of either modality is a negative
  of every other sample; a sample's only positive is its own other view. No pair is needed.
* ``moments``: the suggestion of the issue — per-modality NT-Xent plus the squared distance
  between the two modalities' class-agnostic statistics (mean and covariance, as CORAL, Sun &
  Saenko 2016) of the normalised projections: both modalities fill the same region.
* ``none``: per-modality NT-Xent only.

A batch is ``{"image": ...}``, ``{"audio": ...}`` or, for a client holding both, the two side
by side with one size (two independent draws, unpaired): a contrastive problem never mixes
modalities by accident, only through the declared cross-modal term.

Evaluation (held-out data no client sees): kNN top-1 per modality, their mean (the primary
metric), and image→audio / audio→image retrieval recall@k over held-out pairs: a query of
class ``k`` is a hit when one of its ``k`` nearest items of the other modality has class ``k``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator, model_validator
from torch import nn

from fedsim.data import digits, paired_digits, sounds
from fedsim.data.augmentations import SoundViews, SoundViewSettings, augment
from fedsim.losses import NTXentLoss
from fedsim.models import build_backbone
from fedsim.registry import MODELS, register_task
from fedsim.tasks.audio_image_parts import (PairedDataset, TwoModalityModel, moment_gap, recall_at_k,
                                            recall_chance)
from fedsim.tasks.base import Batch, Metric, Task, TaskContext, TaskParams
from fedsim.tasks.classification import encode, knn_top1

MODALITIES = paired_digits.MODALITIES


class AudioImageParams(TaskParams):
    """Parameters of the audio-image task (``task.params`` in the YAML)."""

    modality_mix: dict[str, float] = Field(default_factory=lambda: {"image": 0.4, "audio": 0.4, "both": 0.2},
                                           description="share of clients holding image, audio or both")
    encoders: Literal["single", "separate"] = "single"
    cross_modal: Literal["joint", "moments", "none"] = "joint"
    moment_weight: float = Field(1.0, ge=0.0, description="weight of the moments term (cross_modal: moments)")
    stem_channels: int = Field(8, ge=1, le=64, description="output channels of each modality's stem")
    modality_norm: bool = Field(False, description="single encoder: one BatchNorm per modality in the shared "
                                                   "trunk (convolutions stay shared)")
    temperature: float = Field(0.5, gt=0.0, description="NT-Xent temperature")
    projection_dim: int = Field(64, ge=2)
    image_size: int = Field(28, ge=12, le=64, description="side of the digit images, px")
    style_strength: float = Field(1.0, ge=0.0, description="spread of the per-client writer styles")
    augment_strength: float = Field(1.0, ge=0.0, description="spread of the image augmentations")
    clip_seconds: float = Field(0.5, ge=0.2, le=10.0, description="length of a sound clip")
    n_mels: int = Field(40, ge=8, le=256)
    condition_strength: float = Field(1.0, ge=0.0, description="spread of the per-client recording conditions")
    min_samples: int = Field(32, ge=2, description="smallest client data set, per modality held")
    max_samples: int = Field(64, ge=2, description="largest client data set, per modality held")
    eval_per_class: int = Field(30, ge=2, le=sounds.EVAL_PER_CLASS,
                                description="held-out sounds per class, per bank and query")
    recall_k: tuple[int, ...] = Field((1, 5), min_length=1, description="k of the cross-modal recall@k metrics")

    @field_validator("modality_mix")
    @classmethod
    def _mix(cls, mix: dict[str, float]) -> dict[str, float]:
        paired_digits.mix_probabilities(mix)  # raises ValueError naming the problem
        return mix

    @field_validator("recall_k")
    @classmethod
    def _ks(cls, ks: tuple[int, ...]) -> tuple[int, ...]:
        if any(k < 1 for k in ks) or len(set(ks)) != len(ks):
            raise ValueError(f"recall_k needs distinct positive integers (got {list(ks)})")
        return ks

    @model_validator(mode="after")
    def _sizes(self) -> "AudioImageParams":
        if self.min_samples > self.max_samples:
            raise ValueError(f"min_samples ({self.min_samples}) is more than max_samples ({self.max_samples})")
        return self


@dataclass(frozen=True)
class EvalPair:
    """Held-out data of both modalities, digit labels: kNN banks and queries per modality."""

    x: dict[str, tuple[torch.Tensor, torch.Tensor]]  # modality -> (bank, query) inputs
    y: dict[str, tuple[torch.Tensor, torch.Tensor]]  # modality -> (bank, query) labels


KNN = {m: Metric(f"knn_top1_{m}", description=f"kNN top-1 (cosine) on frozen {m} features") for m in MODALITIES}
KNN_MEAN = Metric("knn_top1_mean", description="mean of the image and audio kNN top-1")
DIRECTIONS = (("image", "audio", "i2a"), ("audio", "image", "a2i"))


@register_task("audio_image")
class AudioImageTask(Task):
    """One encoder for unpaired digit images and digit sounds (FSSUAVL), or two separate ones."""

    Params = AudioImageParams

    def __init__(self, context: TaskContext, params: AudioImageParams | None = None) -> None:
        super().__init__(context, params or AudioImageParams())
        self.params: AudioImageParams
        p = self.params
        # the audio task's log-mel front end and sound views, at this task's clip length and mels
        self.sound_views = SoundViews(SoundViewSettings(clip_seconds=p.clip_seconds, n_mels=p.n_mels))
        self._style = digits.StyleScale(strength=p.style_strength)
        self._conditions = sounds.ConditionScale(strength=p.condition_strength)
        self._ntxent = NTXentLoss(p.temperature)
        self._eval: EvalPair | None = None

    # ---- data --------------------------------------------------------------------------

    def modality(self, client_id: int) -> str:
        """What client ``client_id`` holds: ``"image"``, ``"audio"`` or ``"both"``."""
        return paired_digits.client_modality(client_id, seed=self.context.seed, mix=self.params.modality_mix)

    def client_dataset(self, client_id: int) -> PairedDataset:
        """Client ``client_id``'s images and/or clips, as its modality draw says (labels stay home)."""
        p, ctx = self.params, self.context
        holding = self.modality(client_id)
        data: dict[str, torch.Tensor] = {}
        if holding in ("image", "both"):
            data["image"], _ = digits.client_sample(client_id, seed=ctx.seed, num_clients=ctx.num_clients,
                                                    partitioning=ctx.partitioning, size=p.image_size,
                                                    min_samples=p.min_samples, max_samples=p.max_samples,
                                                    scale=self._style)
        if holding in ("audio", "both"):
            data["audio"], _ = paired_digits.client_sounds(
                client_id, seed=ctx.seed, num_clients=ctx.num_clients, partitioning=ctx.partitioning,
                clip_seconds=p.clip_seconds, min_clips=p.min_samples, max_clips=p.max_samples,
                conditions=self._conditions)
        return PairedDataset(data)

    def describe_data(self) -> dict[str, Any]:
        return {"source": "generated", "images": "digits writers (scikit-learn digits)",
                "sounds": {str(k): name for k, name in enumerate(paired_digits.DIGIT_SOUNDS)},
                "modality_mix": dict(self.params.modality_mix), "clip_seconds": self.params.clip_seconds}

    # ---- model and loss ----------------------------------------------------------------

    def build_model(self) -> nn.Module:
        """Per-modality stems, one shared trunk (or two) and projection head(s), seeded by ``context.seed``."""
        name, p = self.context.backbone, self.params
        if MODELS.info(name).fixed_size:
            raise ValueError(f"model {name!r} takes square inputs of one size; the audio_image task needs a "
                             "convolutional backbone (e.g. resnet_small)")
        mels, frames = self.sound_views.spectrogram_shape()
        size = min(p.image_size, mels, frames)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.context.seed)
            return TwoModalityModel(
                lambda: build_backbone(name, in_channels=p.stem_channels, image_size=size,
                                       options=self.context.backbone_options),
                stem_channels=p.stem_channels, projection_dim=p.projection_dim,
                separate=p.encoders == "separate", modality_norm=p.modality_norm)

    def views(self, modality: str, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Two augmented views of ``x`` stacked ``(2n, 1, h, w)``."""
        if modality == "image":
            s = self.params.augment_strength
            return torch.cat([augment(x, generator, s), augment(x, generator, s)])
        return torch.cat([self.sound_views.view(x, generator), self.sound_views.view(x, generator)])

    def loss(self, model: nn.Module, batch: Batch, generator: torch.Generator) -> torch.Tensor:
        """Within-modality NT-Xent, plus the cross-modal term when the batch holds both modalities."""
        present = [m for m in MODALITIES if m in batch]
        if not present:
            raise ValueError(f"an audio_image batch needs 'image' and/or 'audio' (got {sorted(batch)})")
        z = {m: model(self.views(m, batch[m], generator), m) for m in present}  # m -> (2n, d)
        halves = {m: (zm[: len(zm) // 2], zm[len(zm) // 2:]) for m, zm in z.items()}
        if len(present) == 2 and self.params.cross_modal == "joint":
            # one problem over both modalities: each view's negatives span images and sounds
            return self._ntxent(torch.cat([halves[m][0] for m in present]),
                                torch.cat([halves[m][1] for m in present]))
        loss = torch.stack([self._ntxent(*halves[m]) for m in present]).mean()
        if len(present) == 2 and self.params.cross_modal == "moments":
            loss = loss + self.params.moment_weight * moment_gap(F.normalize(z["image"], dim=1),
                                                                 F.normalize(z["audio"], dim=1))
        return loss

    # ---- evaluation --------------------------------------------------------------------

    def metrics(self) -> tuple[Metric, ...]:
        recalls = tuple(Metric(f"{tag}_recall_at_{k}", description=f"{src}→{dst} class retrieval recall@{k}")
                        for src, dst, tag in DIRECTIONS for k in self.params.recall_k)
        return (KNN_MEAN, KNN["image"], KNN["audio"], *recalls)

    def eval_data(self) -> EvalPair:
        """Held-out digits (fresh writer styles) and sounds (fresh recording conditions), centre-cropped log-mels."""
        if self._eval is None:
            p = self.params
            bank_i, bank_iy, query_i, query_iy = digits.eval_sample(seed=self.context.seed, size=p.image_size,
                                                                    scale=self._style)
            bank_w, bank_ay, query_w, query_ay = paired_digits.eval_sounds(
                seed=self.context.seed, clip_seconds=p.clip_seconds, per_class=p.eval_per_class,
                conditions=self._conditions)
            with torch.no_grad():
                bank_a, query_a = (self.sound_views.centre(w) for w in (bank_w, query_w))
            self._eval = EvalPair(x={"image": (bank_i, query_i), "audio": (bank_a, query_a)},
                                  y={"image": (bank_iy, query_iy), "audio": (bank_ay, query_ay)})
        return self._eval

    def _k(self) -> int:
        return int(getattr(self.context.evaluation, "knn_k", 20))

    def _scores(self, feats: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> dict[str, float]:
        y, out = self.eval_data().y, {}
        for m in MODALITIES:
            out[KNN[m].name] = knn_top1(feats[m][0], y[m][0], feats[m][1], y[m][1], k=self._k())
        out[KNN_MEAN.name] = (out[KNN["image"].name] + out[KNN["audio"].name]) / 2
        for src, dst, tag in DIRECTIONS:  # queries of one modality, gallery: the other's query split
            for k in self.params.recall_k:
                out[f"{tag}_recall_at_{k}"] = recall_at_k(feats[src][1], y[src][1], feats[dst][1], y[dst][1], k)
        return out

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        data = self.eval_data()
        feats = {m: tuple(encode(lambda mod, x, m=m: mod.features(x, m), model, x) for x in data.x[m])
                 for m in MODALITIES}
        return self._scores(feats)  # type: ignore[arg-type]

    def baselines(self) -> dict[str, float]:
        """kNN on raw inputs (pixels, flattened log-mel) and the chance level of each recall@k."""
        data, out = self.eval_data(), {}
        for m in MODALITIES:
            (bank, query), (bank_y, query_y) = data.x[m], data.y[m]
            out[f"{KNN[m].name}_raw_input"] = knn_top1(bank.flatten(1), bank_y, query.flatten(1), query_y, k=self._k())
        out[f"{KNN_MEAN.name}_raw_input"] = (out["knn_top1_image_raw_input"] + out["knn_top1_audio_raw_input"]) / 2
        for src, dst, tag in DIRECTIONS:
            for k in self.params.recall_k:
                out[f"{tag}_recall_at_{k}_chance"] = recall_chance(data.y[src][1], data.y[dst][1], k)
        return out

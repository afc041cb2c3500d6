"""The audio task: self-supervised learning on log-mel spectrograms (FASSL, arXiv 2402.02889).

Clients hold 16 kHz mono clips: by default the generated sound population of
:mod:`fedsim.data.sounds` (labelled classes of tones, chirps, vowels, noise bursts, rhythms,
each client recording in its own conditions: gain, noise floor, microphone response,
reverberation), or with ``--data-dir`` a Speech Commands / ESC-50 / class-folder tree read
by :mod:`fedsim.data.audio_folders`. A view of a clip is a random crop, a random gain, a
random room (reverberation) and additive noise on the waveform, then a log-mel spectrogram
(``log(mel + 1e-6)``, FASSL's front end scaled for CPU: 64 mels, n_fft 1024, window 320,
hop 160) with a random microphone response (a smooth offset over the mel bands) and random
time and frequency masking (SpecAugment, torchaudio's masking transforms). The view
augmentations cover the nuisances the population's recording conditions vary by (docs/tasks/audio.md;
augmentations that miss them make SSL worse than a random encoder). The encoder sees the
spectrogram as a one-channel image ``(n, 1, n_mels, frames)``.

Objectives (``task.params.objective``), the three families FASSL compares:

* ``simclr``: NT-Xent of two views (contrastive; Chen et al., arXiv 2002.05709);
* ``barlow``: Barlow Twins (feature matching; Zbontar et al., arXiv 2103.03230);
* ``order``: temporal-order prediction (predictive): the spectrogram of one view is cut into
  three segments along time, shuffled by one of the 6 permutations, each segment encoded by
  the shared encoder, and a head classifies the permutation from the concatenated features
  (the clip-order pretext of Xu et al., CVPR 2019, on audio).

Evaluation: kNN, linear probe and same-class retrieval mAP on held-out clips that no client
sees; the round-0 baselines are kNN on hand-made pooled log-mel features (per-band mean and
standard deviation over time) and on the raw flattened log-mel.

The views (:class:`fedsim.data.augmentations.SoundViews`) are shared with the audio-image
task; the objectives are registered parts (:mod:`fedsim.objectives`) trained on this task's
``augmented`` views whose last axis is time (``timeline``).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import nn

from fedsim.data import sounds
from fedsim.data.augmentations import SAMPLE_RATE, SoundViews
from fedsim.data.folder_augmentations import spectrogram_crop
from fedsim.models import build_backbone
from fedsim.objectives import build_objective
from fedsim.registry import MODELS, register_task
from fedsim.tasks.base import Batch, TaskContext, TaskParams, TensorDataset
from fedsim.tasks.classification import KNN_TOP1, EvalData, ProbeEvaluation, knn_top1
from fedsim.tasks.folder import FolderTask


class AudioParams(TaskParams):
    """Parameters of the audio task (``task.params`` in the YAML)."""

    objective: Literal["simclr", "barlow", "order"] = "simclr"
    clip_seconds: float = Field(1.0, ge=0.2, le=10.0, description="length of a clip")
    crop_fraction: float = Field(0.8, gt=0.2, le=1.0, description="a view's random crop, share of the clip")
    n_mels: int = Field(64, ge=8, le=256)
    n_fft: int = Field(1024, ge=64, le=8192)
    win_length: int = Field(320, ge=16)
    hop_length: int = Field(160, ge=8)
    temperature: float = Field(0.5, gt=0.0, description="NT-Xent temperature (simclr)")
    barlow_lambda: float | None = Field(None, ge=0.0, description="off-diagonal weight λ (barlow); "
                                        "default: 1/projection_dim (fedsim.losses.barlow.scaled_lambda)")
    barlow_scale: float = Field(0.01, gt=0.0, description="loss scale (barlow; solo-learn's scale_loss)")
    projection_dim: int = Field(64, ge=2, description="projection MLP output (simclr, barlow)")
    gain_db: float = Field(6.0, ge=0.0, description="views get a gain of U(-g, g) dB")
    noise_snr_db: tuple[float, float] = Field((10.0, 40.0), description="views get white noise at U(lo, hi) dB SNR")
    eq_db: float = Field(6.0, ge=0.0, description="views get a random microphone response: tilt and one "
                                                  "bump of up to ±eq_db over the mel bands")
    reverb_probability: float = Field(0.5, ge=0.0, le=1.0, description="share of views with a random room")
    time_mask: int = Field(16, ge=0, description="SpecAugment: longest time mask, frames")
    freq_mask: int = Field(12, ge=0, description="SpecAugment: widest frequency mask, mel bands")
    spectrogram_crop: tuple[float, float] | None = Field(
        None, description="views get a random resized crop of the log-mel, U(lo, hi) of each axis "
                          "(BYOL-A; fedsim.data.folder_augmentations.spectrogram_crop); None: off")
    min_clips: int = Field(32, ge=2, description="smallest client data set")
    max_clips: int = Field(64, ge=2, description="largest client data set")
    condition_strength: float = Field(1.0, ge=0.0, description="spread of the per-client recording conditions")
    eval_per_class: int = Field(30, ge=2, description="generated held-out clips per class, per bank and query")
    eval_samples: int = Field(500, ge=1, description="--data-dir: held-out clips per bank and query set, at most")

    @model_validator(mode="after")
    def _consistent(self) -> "AudioParams":
        if self.min_clips > self.max_clips:
            raise ValueError(f"min_clips ({self.min_clips}) is more than max_clips ({self.max_clips})")
        if self.win_length > self.n_fft:
            raise ValueError(f"win_length ({self.win_length}) is more than n_fft ({self.n_fft})")
        lo, hi = self.noise_snr_db
        if lo > hi:
            raise ValueError(f"noise_snr_db: low ({lo}) is more than high ({hi})")
        if self.spectrogram_crop is not None and not 0 < self.spectrogram_crop[0] <= self.spectrogram_crop[1]:
            raise ValueError(f"spectrogram_crop: expected 0 < lo <= hi, got {list(self.spectrogram_crop)}")
        return self


@register_task("audio")
class AudioTask(ProbeEvaluation, FolderTask):
    """SSL on log-mel spectrograms: generated sounds or a Speech Commands / ESC-50 folder (FASSL)."""

    Params = AudioParams
    retrieval = True
    views = frozenset({"augmented", "timeline"})
    sample_key = "audio"
    size_params = ("min_clips", "max_clips", "eval_samples")
    generated_classes = sounds.NUM_CLASSES

    def __init__(self, context: TaskContext, params: AudioParams | None = None) -> None:
        super().__init__(context, params or AudioParams())
        self.params: AudioParams
        p = self.params
        self.sound_views = SoundViews(p)
        self._conditions = sounds.ConditionScale(strength=p.condition_strength)
        self._eval: EvalData | None = None
        self.objective = build_objective(p.objective, self.views, p)

    # ---- data --------------------------------------------------------------------------

    @staticmethod
    def scan_folder(path: str, *, seed: int) -> Any:
        from fedsim.data.audio_folders import scan_audio_folder

        return scan_audio_folder(path, seed=seed)

    def load_items(self, index: Any, items: np.ndarray) -> torch.Tensor:
        from fedsim.data.audio_folders import load_clips

        return load_clips(index, items, clip_samples=self.sound_views.clip_samples, sample_rate=SAMPLE_RATE)

    def generated_samples(self, client_id: int) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.params
        return sounds.client_clips(client_id, seed=self.context.seed, num_clients=self.context.num_clients,
                                   partitioning=self.context.partitioning, clip_seconds=p.clip_seconds,
                                   min_clips=p.min_clips, max_clips=p.max_clips, conditions=self._conditions)

    def generated_held_out(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        return sounds.eval_clips(seed=self.context.seed, clip_seconds=self.params.clip_seconds,
                                 per_class=self.params.eval_per_class, conditions=self._conditions)

    def generated_description(self) -> dict[str, Any]:
        return {"population": f"sounds ({', '.join(sounds.CLASS_NAMES)})",
                "sample_rate": SAMPLE_RATE, "clip_seconds": self.params.clip_seconds}

    def client_dataset(self, client_id: int) -> TensorDataset:
        """Client ``client_id``'s ``audio`` waveforms ``(n, samples)`` (labels stay on the shelf)."""
        wave, _ = self.samples(client_id)
        return TensorDataset({"audio": wave})

    # ---- model and views ---------------------------------------------------------------

    def spectrogram_shape(self) -> tuple[int, int]:
        """``(n_mels, frames)`` of one view."""
        return self.sound_views.spectrogram_shape()

    def build_model(self) -> nn.Module:
        """Backbone on ``(n, 1, n_mels, frames)`` spectrograms plus the objective's head."""
        name = self.context.backbone
        if MODELS.info(name).fixed_size:
            raise ValueError(f"model {name!r} takes square inputs of one size; the audio task needs a "
                             "convolutional backbone (e.g. audio_rep_inceptionnext, resnet_small)")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.context.seed)
            mels, frames = self.spectrogram_shape()
            backbone = build_backbone(name, in_channels=1, image_size=min(mels, frames // 3),
                                      options=self.context.backbone_options)
            return self.objective.build(backbone, self)

    def view(self, wave: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One augmented log-mel view ``(n, 1, n_mels, frames)`` of clips ``(n, samples)``."""
        spec = self.sound_views.view(wave, generator)
        if self.params.spectrogram_crop is None:
            return spec
        return spectrogram_crop(spec, generator, self.params.spectrogram_crop)

    def loss(self, model: nn.Module, batch: Batch, generator: torch.Generator) -> torch.Tensor:
        """The objective's loss of one batch of clips (views drawn from ``generator``)."""
        return self.objective.loss(model, batch, self, generator)

    # ---- evaluation --------------------------------------------------------------------

    def eval_data(self) -> EvalData:
        """Held-out clips no client sees, as centre-cropped log-mels (no augmentation)."""
        if self._eval is None:
            bank_w, bank_y, query_w, query_y = self.held_out()
            with torch.no_grad():
                self._eval = EvalData(self.sound_views.centre(bank_w), bank_y,
                                      self.sound_views.centre(query_w), query_y)
        return self._eval

    def baselines(self) -> dict[str, float]:
        """kNN on pooled log-mel features (per-band mean and std over time) and on raw log-mel."""
        data = self.eval_data()
        k = self._probe_settings()[0]

        def pooled(spec: torch.Tensor) -> torch.Tensor:  # (n, 1, F, T) -> (n, 2F)
            return torch.cat([spec.mean(-1), spec.std(-1)], dim=-1).flatten(1)

        return {**super().baselines(),
                f"{KNN_TOP1.name}_pooled_logmel": knn_top1(pooled(data.bank_x), data.bank_y,
                                                           pooled(data.query_x), data.query_y, k=k)}

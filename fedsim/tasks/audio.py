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
"""

from __future__ import annotations

import itertools
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
import torchaudio
from pydantic import Field, model_validator
from torch import nn

from fedsim.data import sounds
from fedsim.data.folder_clients import FolderClients
from fedsim.losses import BarlowTwinsLoss, NTXentLoss
from fedsim.losses.barlow import barlow_projector, scaled_lambda
from fedsim.models import build_backbone
from fedsim.registry import MODELS, register_task
from fedsim.tasks.base import BackboneHead, Batch, Task, TaskContext, TaskParams, TensorDataset, projection_mlp
from fedsim.tasks.classification import KNN_TOP1, EvalData, ProbeEvaluation, knn_top1

SAMPLE_RATE = 16_000
PERMUTATIONS = torch.tensor(list(itertools.permutations(range(3))))  # (6, 3)


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
        return self


class LogMel(nn.Module):
    """Waveforms ``(n, samples)`` -> ``log(mel + 1e-6)`` as one-channel images ``(n, 1, n_mels, frames)``."""

    def __init__(self, p: AudioParams) -> None:
        super().__init__()
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=SAMPLE_RATE, n_fft=p.n_fft, win_length=p.win_length, hop_length=p.hop_length,
            n_mels=p.n_mels, power=2.0)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return torch.log(self.mel(wave) + 1e-6).unsqueeze(1)


def random_crop(wave: torch.Tensor, length: int, generator: torch.Generator) -> torch.Tensor:
    """A random window of ``length`` samples from every clip of ``wave`` ``(n, samples)``."""
    n, total = wave.shape
    offsets = torch.randint(0, total - length + 1, (n, 1), generator=generator)
    return wave.gather(1, offsets + torch.arange(length))


def reverberate(wave: torch.Tensor, generator: torch.Generator, *, probability: float,
                ir_seconds: float = 0.3) -> torch.Tensor:
    """Each clip, with ``probability``, convolved with a random synthetic room: an
    exponentially decaying noise tail (RT60 U(0.1, 0.6) s) mixed U(−20, −3) dB below the dry
    sound, the level of the clip kept. FFT convolution, cut to the input length."""
    n, length = wave.shape
    taps = int(ir_seconds * SAMPLE_RATE)
    t = torch.arange(taps) / SAMPLE_RATE
    rt60 = 0.1 + 0.5 * torch.rand(n, 1, generator=generator)
    level = 10 ** ((-20 + 17 * torch.rand(n, 1, generator=generator)) / 20)
    on = (torch.rand(n, 1, generator=generator) < probability).float()
    tail = torch.randn(n, taps, generator=generator) * torch.exp(-6.91 * t / rt60)  # -60 dB at rt60
    tail = tail / tail.pow(2).sum(1, keepdim=True).sqrt()
    size = length + taps
    wet = torch.fft.irfft(torch.fft.rfft(wave, size) * torch.fft.rfft(tail, size), size)[:, :length]
    out = wave + on * level * wet
    return out * (wave.abs().amax(1, keepdim=True) / out.abs().amax(1, keepdim=True).clamp_min(1e-8))


def random_eq(n: int, n_mels: int, max_db: float, generator: torch.Generator) -> torch.Tensor:
    """Random microphone responses as log-power offsets ``(n, 1, n_mels, 1)``: a tilt of up
    to ±``max_db`` across the mel bands plus one Gaussian bump of up to ±``max_db``."""
    band = torch.linspace(-1, 1, n_mels)
    tilt = (torch.rand(n, 1, generator=generator) * 2 - 1) * band
    centre = torch.rand(n, 1, generator=generator) * 2 - 1
    width = 0.1 + 0.3 * torch.rand(n, 1, generator=generator)
    bump = (torch.rand(n, 1, generator=generator) * 2 - 1) * torch.exp(-0.5 * ((band - centre) / width) ** 2)
    db = max_db * (tilt + bump)  # (n, n_mels)
    return (db * (torch.log(torch.tensor(10.0)) / 10))[:, None, :, None]  # dB of power -> natural log


def centre_crop(wave: torch.Tensor, length: int) -> torch.Tensor:
    start = (wave.shape[1] - length) // 2
    return wave[:, start:start + length]


@register_task("audio")
class AudioTask(ProbeEvaluation, Task):
    """SSL on log-mel spectrograms: generated sounds or a Speech Commands / ESC-50 folder (FASSL)."""

    experimental = {"barlow": "kNN 0.255 ± 0.023 after 3 rounds, 3 seeds: init 0.273, pooled log-mel 0.450",
                    "order": "kNN 0.276 ± 0.004 after 12 rounds, 3 seeds: init 0.273, pooled log-mel 0.450"}

    Params = AudioParams
    reads_data_dir = True
    retrieval = True

    def __init__(self, context: TaskContext, params: AudioParams | None = None) -> None:
        super().__init__(context, params or AudioParams())
        self.params: AudioParams
        p = self.params
        self.clip_samples = int(round(p.clip_seconds * SAMPLE_RATE))
        self.crop_samples = int(round(p.crop_fraction * self.clip_samples))
        self.logmel = LogMel(p)
        self._conditions = sounds.ConditionScale(strength=p.condition_strength)
        self._eval: EvalData | None = None
        self._ntxent = NTXentLoss(p.temperature)
        lam = scaled_lambda(p.projection_dim) if p.barlow_lambda is None else p.barlow_lambda
        self._barlow = BarlowTwinsLoss(lam, scale=p.barlow_scale)
        self._folder = None if context.data_dir is None else FolderClients(
            context.data_dir, scan=self._scan, load=self._load, seed=context.seed,
            num_clients=context.num_clients, partitioning=context.partitioning,
            min_samples=p.min_clips, max_samples=p.max_clips, eval_samples=p.eval_samples)

    # ---- data --------------------------------------------------------------------------

    @staticmethod
    def _scan(path: str, *, seed: int) -> Any:
        from fedsim.data.audio_folders import scan_audio_folder

        return scan_audio_folder(path, seed=seed)

    def _load(self, index: Any, items: np.ndarray) -> torch.Tensor:
        from fedsim.data.audio_folders import load_clips

        return load_clips(index, items, clip_samples=self.clip_samples, sample_rate=SAMPLE_RATE)

    @property
    def num_classes(self) -> int:
        return sounds.NUM_CLASSES if self._folder is None else self._folder.index.num_classes

    def client_dataset(self, client_id: int) -> TensorDataset:
        """Client ``client_id``'s ``audio`` waveforms ``(n, samples)`` (labels stay on the shelf)."""
        p = self.params
        if self._folder is not None:
            wave, _ = self._folder.client_samples(client_id)
        else:
            wave, _ = sounds.client_clips(client_id, seed=self.context.seed, num_clients=self.context.num_clients,
                                          partitioning=self.context.partitioning, clip_seconds=p.clip_seconds,
                                          min_clips=p.min_clips, max_clips=p.max_clips,
                                          conditions=self._conditions)
        return TensorDataset({"audio": wave})

    def describe_data(self) -> dict[str, Any]:
        if self._folder is None:
            return {"source": "generated", "population": f"sounds ({', '.join(sounds.CLASS_NAMES)})",
                    "sample_rate": SAMPLE_RATE, "clip_seconds": self.params.clip_seconds}
        return {"source": "folder", **self._folder.describe()}

    # ---- model and views ---------------------------------------------------------------

    def spectrogram_shape(self) -> tuple[int, int]:
        """``(n_mels, frames)`` of one view."""
        p = self.params
        return p.n_mels, self.crop_samples // p.hop_length + 1

    def build_model(self) -> nn.Module:
        """Backbone on ``(n, 1, n_mels, frames)`` spectrograms plus the objective's head."""
        name, p = self.context.backbone, self.params
        if MODELS.info(name).fixed_size:
            raise ValueError(f"model {name!r} takes square inputs of one size; the audio task needs a "
                             "convolutional backbone (e.g. audio_rep_inceptionnext, resnet_small)")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.context.seed)
            mels, frames = self.spectrogram_shape()
            backbone = build_backbone(name, in_channels=1, image_size=min(mels, frames // 3),
                                      options=self.context.backbone_options)
            d = backbone.out_dim
            if p.objective == "order":
                head: nn.Module = nn.Sequential(nn.Linear(3 * d, d), nn.ReLU(inplace=True),
                                                nn.Linear(d, len(PERMUTATIONS)))
            elif p.objective == "barlow":
                head = barlow_projector(d, p.projection_dim)
            else:
                head = projection_mlp(d, p.projection_dim)
        return BackboneHead(backbone, head)

    def view(self, wave: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One augmented log-mel view ``(n, 1, n_mels, frames)`` of clips ``(n, samples)``."""
        p = self.params
        n = wave.shape[0]
        x = random_crop(wave, self.crop_samples, generator)
        gain = 10 ** ((torch.rand(n, 1, generator=generator) * 2 - 1) * p.gain_db / 20)
        x = x * gain
        lo, hi = p.noise_snr_db
        snr = lo + torch.rand(n, 1, generator=generator) * (hi - lo)
        x = reverberate(x, generator, probability=p.reverb_probability)
        rms = x.pow(2).mean(1, keepdim=True).sqrt().clamp_min(1e-5)
        x = x + torch.randn(x.shape, generator=generator) * rms * 10 ** (-snr / 20)
        spec = self.logmel(x) + random_eq(n, p.n_mels, p.eq_db, generator)
        return self._mask(spec, generator)

    def _mask(self, spec: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        # torchaudio's masking transforms draw from the global RNG; seed a forked global
        # state from ``generator`` so views stay a pure function of (seed, round, client).
        p = self.params
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if p.time_mask:
                spec = torchaudio.transforms.TimeMasking(p.time_mask, iid_masks=True)(spec)
            if p.freq_mask:
                spec = torchaudio.transforms.FrequencyMasking(p.freq_mask, iid_masks=True)(spec)
        return spec

    def loss(self, model: nn.Module, batch: Batch, generator: torch.Generator) -> torch.Tensor:
        """The objective's loss of one batch of clips (views drawn from ``generator``)."""
        wave = batch["audio"]
        n = wave.shape[0]
        if self.params.objective == "order":
            return self._order_loss(model, self.view(wave, generator), generator)
        views = torch.cat([self.view(wave, generator), self.view(wave, generator)])
        z = model(views)  # (2n, projection_dim): one forward pass, BatchNorm sees both views
        loss_fn = self._ntxent if self.params.objective == "simclr" else self._barlow
        return loss_fn(z[:n], z[n:])

    def _order_loss(self, model: nn.Module, spec: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n, frames = spec.shape[0], spec.shape[-1] // 3
        segments = spec[..., : 3 * frames].reshape(n, 1, spec.shape[2], 3, frames)  # (n, 1, F, 3, t)
        label = torch.randint(0, len(PERMUTATIONS), (n,), generator=generator)
        order = PERMUTATIONS[label]  # (n, 3): which segment goes to each slot
        shuffled = segments[torch.arange(n)[:, None], :, :, order]  # (n, 3, 1, F, t)
        feats = model.backbone(shuffled.reshape(n * 3, 1, spec.shape[2], frames))  # (3n, d)
        logits = model.head(feats.reshape(n, -1))
        return F.cross_entropy(logits, label)

    # ---- evaluation --------------------------------------------------------------------

    def eval_data(self) -> EvalData:
        """Held-out clips no client sees, as centre-cropped log-mels (no augmentation)."""
        if self._eval is None:
            if self._folder is not None:
                bank_w, bank_y, query_w, query_y = self._folder.eval_tensors()
            else:
                bank_w, bank_y, query_w, query_y = sounds.eval_clips(
                    seed=self.context.seed, clip_seconds=self.params.clip_seconds,
                    per_class=self.params.eval_per_class, conditions=self._conditions)
            with torch.no_grad():
                self._eval = EvalData(self.logmel(centre_crop(bank_w, self.crop_samples)), bank_y,
                                      self.logmel(centre_crop(query_w, self.crop_samples)), query_y)
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

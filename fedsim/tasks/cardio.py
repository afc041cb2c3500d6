"""The cardio task: audio-visual heart-rate estimation (CardioLive, arXiv 2502.00702).

A sample is a window (default 8 s) of one subject's recording on the common 25 Hz timeline
(:mod:`fedsim.data.cardio_timeline`): ``video`` ``(3, T)`` the pooled skin colour (relative
change, per-window standardised), ``audio`` ``(16, T)`` heart-sound log-mel bands (per-band
mean removed, standardised) and ``bpm`` the mean reference heart rate over the window. The
model is the registered ``cardionet_lite`` (:class:`fedsim.models.cardionet.CardioNetLite`,
``task.params.modalities``: ``av``, ``video`` or ``audio`` for the ablations), the task's
default ``model.name``; image backbones do not apply.

Training is **supervised** on the clients' labelled recordings: cross-entropy of the fused
logits against a Gaussian around the true BPM (σ = ``label_sigma``) plus an L1 term on the
soft-argmax estimate. Chosen over SSL pre-training + a head because every recording carries
its reference BPM (as in CardioLive, which trains CardioNet supervised), and because a
second (head) stage would double the CPU budget of a run for no information the labels do
not already give.

Data: the generated population of :mod:`fedsim.data.cardio_synth` (each client a few
subjects recorded by its own device: frame rate 15–60 FPS, an unrecorded A/V offset up to
±0.5 s, lighting, motion, compression, audio SNR), or with ``--data-dir`` one folder per
subject (:mod:`fedsim.data.cardio_folders`). Evaluation: MAE and RMSE in BPM on held-out
subjects no client holds; round-0 baselines: the constant-mean predictor (the held-out mean,
the best constant in hindsight) and the frequency-domain reference on the green channel
(GREEN, Verkruysse et al. 2008; :func:`fedsim.data.cardio_timeline.spectral_bpm`).
``eval_fps`` / ``eval_offset_s`` re-record the held-out subjects at one frame rate / with one
A/V offset (the FPS-change and desync measurements).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import nn

from fedsim.data import cardio_synth as synth
from fedsim.data.cardio_timeline import BPM_RANGE, RATE, Recording, spectral_bpm, windows
from fedsim.models import cardionet  # noqa: F401  (registers cardionet_lite)
from fedsim.registry import MODELS, register_task
from fedsim.seeding import numpy_generator
from fedsim.tasks.base import Batch, Metric, Task, TaskContext, TaskParams, TensorDataset

MAE = Metric("mae", higher_is_better=False, description="mean absolute error, BPM")
RMSE = Metric("rmse", higher_is_better=False, description="root mean squared error, BPM")
_STREAM_CLIENT, _STREAM_EVAL = 0xCA1, 0xCA2
CACHED_CLIENTS = 32  # a client's windows cost ~0.3 s per subject to render; they are a pure function of
# (seed, client id), so a worker keeps the most recent ones (~0.3 MB each) for the rounds that resample them


class CardioParams(TaskParams):
    """Parameters of the cardio task (``task.params`` in the YAML)."""

    modalities: Literal["av", "video", "audio"] = "av"
    window_s: float = Field(8.0, ge=4.0, le=30.0, description="window length, s")
    stride_s: float = Field(4.0, gt=0.0, description="training windows start this far apart, s")
    record_s: float = Field(30.0, ge=4.0, le=600.0, description="generated recording per subject, s")
    min_subjects: int = Field(2, ge=1, description="generated subjects per client, at least")
    max_subjects: int = Field(4, ge=1, description="generated subjects per client, at most")
    frame_size: int = Field(16, ge=8, le=128, description="generated frames are size×size")
    pulse_amplitude: float = Field(0.006, gt=0.0, le=0.2, description="relative skin-colour pulse")
    condition_strength: float = Field(1.0, ge=0.0, description="spread of lighting/motion/noise conditions")
    fps_range: tuple[float, float] = Field((15.0, 60.0), description="client frame rates, FPS")
    max_offset_s: float = Field(0.5, ge=0.0, le=2.0, description="clients' unrecorded A/V offset, ±s")
    eval_subjects: int = Field(24, ge=2, description="generated held-out subjects")
    eval_fps: float | None = Field(None, ge=5.0, le=240.0, description="held-out frame rate (default: drawn)")
    eval_offset_s: float | None = Field(None, ge=-2.0, le=2.0, description="held-out A/V offset (default: drawn)")
    eval_fraction: float = Field(0.2, gt=0.0, lt=1.0, description="--data-dir: share of subjects held out")
    width: int = Field(16, ge=2, le=256, description="learned traces per branch")
    label_sigma: float = Field(3.0, gt=0.0, description="BPM spread of the soft target")
    l1_weight: float = Field(0.05, ge=0.0, description="weight of the L1 term on the estimate (per BPM)")

    @model_validator(mode="after")
    def _consistent(self) -> "CardioParams":
        if self.min_subjects > self.max_subjects:
            raise ValueError(f"min_subjects ({self.min_subjects}) is more than max_subjects ({self.max_subjects})")
        lo, hi = self.fps_range
        if not 5.0 <= lo <= hi <= 240.0:
            raise ValueError(f"fps_range ({lo}, {hi}): need 5 <= low <= high <= 240")
        if self.window_s > self.record_s:
            raise ValueError(f"window_s ({self.window_s}) is longer than record_s ({self.record_s})")
        return self


def standardise(video: np.ndarray, audio: np.ndarray) -> dict[str, torch.Tensor]:
    """Per-window input normalisation: video ``(n, 3, T)`` -> relative colour change over the
    window, divided by its std; audio ``(n, M, T)`` -> per-band mean removed, divided by its std."""
    v = video / np.clip(video.mean(-1, keepdims=True), 1e-6, None) - 1.0
    v = v / np.clip(v.std(axis=(1, 2), keepdims=True), 1e-8, None)
    a = audio - audio.mean(-1, keepdims=True)
    a = a / np.clip(a.std(axis=(1, 2), keepdims=True), 1e-8, None)
    return {"video": torch.as_tensor(v, dtype=torch.float32), "audio": torch.as_tensor(a, dtype=torch.float32)}


def to_samples(recordings: list[Recording], *, window_s: float, stride_s: float) -> dict[str, torch.Tensor]:
    """Windows of ``recordings`` as ``{"video", "audio", "bpm"}`` tensors."""
    cut = [windows(r, window_s=window_s, stride_s=stride_s) for r in recordings]
    if sum(len(c["bpm"]) for c in cut) == 0:
        raise ValueError(f"no recording is as long as task.params.window_s ({window_s} s); "
                         "choose a shorter window or longer recordings")
    video = np.concatenate([c["video"] for c in cut])
    audio = np.concatenate([c["audio"] for c in cut])
    return {**standardise(video, audio), "bpm": torch.as_tensor(np.concatenate([c["bpm"] for c in cut]),
                                                                dtype=torch.float32)}


@register_task("cardio")
class CardioTask(Task):
    """Audio-visual heart rate (BPM) with CardioNet-lite, supervised; MAE/RMSE (CardioLive)."""

    Params = CardioParams
    reads_data_dir = True
    encoder_prefixes = ("video.", "audio.")
    default_model = "cardionet_lite"

    def __init__(self, context: TaskContext, params: CardioParams | None = None) -> None:
        super().__init__(context, params or CardioParams())
        self.params: CardioParams
        if context.backbone != self.default_model:
            raise ValueError(f"model.name: task 'cardio' trains {self.default_model} on its timeline streams; "
                             f"{context.backbone!r} takes images (leave model.name unset)")
        self.steps = int(round(self.params.window_s * RATE))
        self.bpm_grid = torch.arange(BPM_RANGE[0], BPM_RANGE[1] + 0.5, 1.0)
        self._eval: dict[str, torch.Tensor] | None = None
        self._clients: OrderedDict[int, TensorDataset] = OrderedDict()  # the last CACHED_CLIENTS built
        self._folder = None
        if context.data_dir is not None:
            from fedsim.data.cardio_folders import CardioFolder

            self._folder = CardioFolder(context.data_dir, seed=context.seed, num_clients=context.num_clients,
                                        eval_fraction=self.params.eval_fraction)

    # ---- data --------------------------------------------------------------------------

    def _draw_conditions(self, rng: np.random.Generator) -> synth.DeviceConditions:
        p = self.params
        return synth.draw_conditions(rng, strength=p.condition_strength, fps=p.fps_range, max_offset_s=p.max_offset_s)

    def _subject(self, rng: np.random.Generator, cond: synth.DeviceConditions) -> Recording:
        p = self.params
        return synth.subject_recording(rng, cond, seconds=p.record_s, frame_size=p.frame_size,
                                       pulse_amplitude=p.pulse_amplitude)

    def client_dataset(self, client_id: int) -> TensorDataset:
        """Client ``client_id``'s windows: ``video``, ``audio`` and ``bpm`` tensors."""
        if client_id in self._clients:
            self._clients.move_to_end(client_id)
            return self._clients[client_id]
        data = self._client_windows(client_id)
        self._clients[client_id] = data
        if len(self._clients) > CACHED_CLIENTS:
            self._clients.popitem(last=False)
        return data

    def _client_windows(self, client_id: int) -> TensorDataset:
        p = self.params
        if self._folder is not None:
            recordings = self._folder.client_recordings(client_id)
        else:
            rng = numpy_generator(self.context.seed, _STREAM_CLIENT, client_id)
            cond = self._draw_conditions(rng)  # one device per client
            count = int(rng.integers(p.min_subjects, p.max_subjects + 1))
            recordings = [self._subject(rng, cond) for _ in range(count)]
        data = TensorDataset(to_samples(recordings, window_s=p.window_s, stride_s=p.stride_s))
        if len(data) < 2:
            raise ValueError(f"client {client_id}'s recordings give {len(data)} window(s) of {p.window_s} s; "
                             "training needs 2: choose a shorter task.params.window_s or stride_s")
        return data

    def eval_samples(self) -> dict[str, torch.Tensor]:
        """Held-out windows (non-overlapping) of subjects no client holds."""
        if self._eval is None:
            p = self.params
            if self._folder is not None:
                recordings = self._folder.eval_recordings()
            else:
                recordings = []
                for i in range(p.eval_subjects):  # each held-out subject on its own device and generator,
                    rng = numpy_generator(self.context.seed, _STREAM_EVAL, i)  # so eval_fps keeps the subjects
                    cond = synth.with_overrides(self._draw_conditions(rng), fps=p.eval_fps, offset_s=p.eval_offset_s)
                    recordings.append(self._subject(rng, cond))
            self._eval = to_samples(recordings, window_s=p.window_s, stride_s=p.window_s)
        return self._eval

    def describe_data(self) -> dict[str, Any]:
        p = self.params
        if self._folder is not None:
            return {"source": "folder", **self._folder.describe()}
        return {"source": "generated", "population": "synthetic subjects (face video + heart sounds)",
                "record_s": p.record_s, "window_s": p.window_s, "timeline_hz": RATE,
                "subjects_per_client": [p.min_subjects, p.max_subjects], "eval_subjects": p.eval_subjects,
                "fps_range": list(p.fps_range), "max_offset_s": p.max_offset_s,
                "eval_fps": p.eval_fps, "eval_offset_s": p.eval_offset_s}

    # ---- model and loss ----------------------------------------------------------------

    def build_model(self) -> nn.Module:
        """CardioNet-lite for ``task.params.modalities``, initialised from the seed."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.context.seed)
            return MODELS.get(self.default_model)(modalities=self.params.modalities, steps=self.steps, rate=RATE,
                                                  width=self.params.width, bpm_grid=self.bpm_grid)

    def loss(self, model: nn.Module, batch: Batch, generator: torch.Generator) -> torch.Tensor:
        """Soft-label cross-entropy over the BPM grid plus ``l1_weight``·|estimate − bpm|
        (no augmentation: ``generator`` unused)."""
        logits = model(batch)  # (n, K)
        target = torch.exp(-0.5 * ((self.bpm_grid[None] - batch["bpm"][:, None]) / self.params.label_sigma) ** 2)
        target = target / target.sum(-1, keepdim=True)
        ce = -(target * logits.log_softmax(-1)).sum(-1).mean()
        return ce + self.params.l1_weight * (model.estimate(logits) - batch["bpm"]).abs().mean()

    # ---- evaluation --------------------------------------------------------------------

    def metrics(self) -> tuple[Metric, ...]:
        return (MAE, RMSE)

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """MAE and RMSE (BPM) of the model's estimates on the held-out windows."""
        data = self.eval_samples()
        was = model.training
        model.eval()
        est = torch.cat([model.estimate(model({k: v[i:i + 256] for k, v in data.items()}))
                         for i in range(0, len(data["bpm"]), 256)])
        model.train(was)
        return _errors(est - data["bpm"])

    def baselines(self) -> dict[str, float]:
        """Constant-mean predictor and the green-channel spectral reference, on the held-out windows."""
        data = self.eval_samples()
        bpm = data["bpm"]
        mean = _errors(bpm.mean() - bpm)
        green = torch.tensor([spectral_bpm(v[1].numpy()) for v in data["video"]])
        ref = _errors(green - bpm)
        return {"mae_constant_mean": mean["mae"], "rmse_constant_mean": mean["rmse"],
                "mae_green_spectral": ref["mae"]}


def _errors(err: torch.Tensor) -> dict[str, float]:
    return {"mae": float(err.abs().mean()), "rmse": float(err.pow(2).mean().sqrt())}

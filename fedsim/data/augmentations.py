"""The view augmentations the tasks share: images, sounds and video clips.

Every draw comes from the ``generator`` passed in, so a view is a pure function of (seed,
round, client) in both engines. One module so that a task (or an objective) that needs
another modality's views imports them from here, not from another task:

* **images** — :func:`augment`: per-sample rotation, shear, scale, aspect, shift, elastic
  wobble, stroke thickness and ink (the nuisances the digit writers vary by);
* **sounds** — :class:`SoundViews`: a random crop, gain, room and noise on the waveform, then
  a log-mel spectrogram with a random microphone response and SpecAugment masking;
* **video clips** — :func:`grey`, :func:`temporal_crop`, :func:`camera_jitter`,
  :func:`centre_frames`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn
from torchvision.transforms.v2.functional import rgb_to_grayscale

from fedsim.data import digits
from fedsim.data.sound_synth import SAMPLE_RATE

# ---- images ------------------------------------------------------------------------------


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


# ---- sounds ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SoundViewSettings:
    """The front end and view ranges of :class:`SoundViews` (the audio task's parameters of the
    same names, which any object with these attributes can stand in for)."""

    clip_seconds: float = 1.0
    crop_fraction: float = 0.8
    n_mels: int = 64
    n_fft: int = 1024
    win_length: int = 320
    hop_length: int = 160
    gain_db: float = 6.0
    noise_snr_db: tuple[float, float] = (10.0, 40.0)
    eq_db: float = 6.0
    reverb_probability: float = 0.5
    time_mask: int = 16
    freq_mask: int = 12


class LogMel(nn.Module):
    """Waveforms ``(n, samples)`` -> ``log(mel + 1e-6)`` as one-channel images ``(n, 1, n_mels, frames)``."""

    def __init__(self, p: Any) -> None:
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


def centre_crop(wave: torch.Tensor, length: int) -> torch.Tensor:
    """The central ``length`` samples of every clip of ``wave`` ``(n, samples)``."""
    start = (wave.shape[1] - length) // 2
    return wave[:, start:start + length]


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


class SoundViews:
    """Augmented log-mel views of 16 kHz clips, and the un-augmented front end for evaluation.

    ``settings`` is a :class:`SoundViewSettings` or any object with its attributes (the audio
    task's parameters).
    """

    def __init__(self, settings: Any = SoundViewSettings()) -> None:
        self.settings = settings
        self.clip_samples = int(round(settings.clip_seconds * SAMPLE_RATE))
        self.crop_samples = int(round(settings.crop_fraction * self.clip_samples))
        self.logmel = LogMel(settings)

    def spectrogram_shape(self) -> tuple[int, int]:
        """``(n_mels, frames)`` of one view."""
        return self.settings.n_mels, self.crop_samples // self.settings.hop_length + 1

    def centre(self, wave: torch.Tensor) -> torch.Tensor:
        """The un-augmented view: the log-mel of the central crop (held-out clips)."""
        return self.logmel(centre_crop(wave, self.crop_samples))

    def view(self, wave: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One augmented log-mel view ``(n, 1, n_mels, frames)`` of clips ``(n, samples)``."""
        p = self.settings
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
        p = self.settings
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if p.time_mask:
                spec = torchaudio.transforms.TimeMasking(p.time_mask, iid_masks=True)(spec)
            if p.freq_mask:
                spec = torchaudio.transforms.FrequencyMasking(p.freq_mask, iid_masks=True)(spec)
        return spec


# ---- video clips -------------------------------------------------------------------------


# ITU-R 601 luma weights of R, G, B, exact. torchvision's rgb_to_grayscale (``grey``) rounds R's to
# 0.2989; the colour-space maths (a photo view's hue rotation, a colouriser's chroma) needs
# weights that sum to 1.
LUMA = (0.299, 0.587, 0.114)


def grey(clips: torch.Tensor) -> torch.Tensor:
    """RGB clips ``(n, 3, t, h, w)`` -> luminance ``(n, 1, t, h, w)`` (ITU-R 601, torchvision)."""
    return rgb_to_grayscale(clips.transpose(1, 2)).transpose(1, 2)


def temporal_crop(clips: torch.Tensor, frames: int, generator: torch.Generator) -> torch.Tensor:
    """Per clip, ``frames`` consecutive frames from a random start (a gather: torchvision's
    video transforms crop space, not time)."""
    n, t = clips.shape[0], clips.shape[2]
    start = torch.randint(0, t - frames + 1, (n,), generator=generator)
    idx = (start[:, None] + torch.arange(frames)[None, :]).to(clips.device)
    return clips.gather(2, idx[:, None, :, None, None].expand(-1, clips.shape[1], -1, *clips.shape[3:]))


def camera_jitter(clips: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Per-clip random gain, offset and sensor noise on grey clips in [0, 1] (the camera
    nuisance of :class:`fedsim.data.moving_digits.CameraScale`; written out because
    torchvision's ColorJitter draws from the global RNG, not ``generator``)."""
    n = clips.shape[0]
    shape = (n,) + (1,) * (clips.dim() - 1)
    gain = 0.6 + 0.8 * torch.rand(shape, generator=generator)
    offset = 0.2 * torch.rand(shape, generator=generator) - 0.1
    noise = 0.06 * torch.rand(shape, generator=generator) * torch.randn(clips.shape, generator=generator)
    return (clips * gain.to(clips) + offset.to(clips) + noise.to(clips)).clamp(0, 1)


def centre_frames(clips: torch.Tensor, frames: int) -> torch.Tensor:
    """The central ``frames`` frames of clips ``(n, c, t, h, w)``."""
    start = (clips.shape[2] - frames) // 2
    return clips[:, :, start:start + frames]

"""Recording conditions of the generated sound population: how a client's "device" hears a clip.

A condition is a row of :data:`CONDITION_FIELDS` uniforms in [0, 1) that
:func:`condition_values` maps to physical values inside the ranges of a
:class:`ConditionScale`; :func:`record` applies a batch of conditions to clean clips:

1. **Microphone response** — a zero-phase magnitude curve in dB on the FFT grid: a tilt of
   ``tilt`` dB/octave around 1 kHz, a 2nd-order low cut at ``low_cut_hz``, a 2nd-order high
   cut at ``high_cut_hz`` and one Gaussian (in octaves) peak or dip of ``resonance_db``.
2. **Reverberation** — the dry clip plus ``wet`` × (clip ⊛ an exponentially decaying noise
   tail of reverberation time ``rt60_s``, unit energy, after a 2–20 ms pre-delay).
3. **Gain** — the peak is set to ``0.5 · 10^(gain_db / 20)``.
4. **Noise floor** — Gaussian noise with a ``1/f^colour`` power spectrum (0 white, 1 pink,
   2 brown) at ``snr_db`` below the clip's RMS.
5. **Clipping** — a device with ``clips`` hard-clips at ``clip_level`` × the clip's peak.

Then every sample is clamped to [-1, 1]. ``strength`` scales every nuisance: it multiplies the
gain and the mic curve in dB, the reverberant and noise amplitudes and the chance that a device
clips, so ``strength=0`` records every clip clean at a 0.5 peak.

Each client draws one condition (its device) and every clip it holds jitters around it by up
to ``jitter`` of each range; held-out clips get a fresh condition each. Everything is a pure
function of its arguments (the noise from the ``torch.Generator`` passed in).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

CONDITION_FIELDS = ("gain_db", "snr_db", "noise_colour", "tilt", "low_cut_hz", "high_cut_hz",
                    "resonance_db", "resonance_hz", "resonance_octaves", "rt60_s", "reverb_db",
                    "clips", "clip_level", "predelay_s")
IR_SECONDS = 0.5  # the reverberant tail is cut here
REFERENCE_PEAK = 0.5  # the peak of a clip recorded at 0 dB gain
RECORD_CHUNK = 128  # clips recorded per batch of FFTs
MIC_GRID = 513  # frequencies the mic curve is computed at before linear interpolation


@dataclass(frozen=True)
class ConditionScale:
    """Ranges of the recording conditions; ``strength`` scales every nuisance (0: clean).

    Pairs are (low, high) of a uniform draw (log-uniform for Hz and seconds).
    """

    strength: float = 1.0
    gain_db: tuple[float, float] = (-18.0, 6.0)
    snr_db: tuple[float, float] = (10.0, 35.0)
    noise_colour: tuple[float, float] = (0.0, 2.0)  # power spectrum 1/f^colour
    tilt_db_per_octave: float = 3.0  # ± around 1 kHz
    low_cut_hz: tuple[float, float] = (40.0, 400.0)
    high_cut_hz: tuple[float, float] = (2500.0, 8000.0)
    resonance_db: float = 8.0  # ± one peak or dip
    resonance_hz: tuple[float, float] = (300.0, 5000.0)
    resonance_octaves: tuple[float, float] = (0.3, 1.0)  # its width (std, in octaves)
    rt60_s: tuple[float, float] = (0.1, 0.8)
    reverb_db: tuple[float, float] = (-20.0, -3.0)  # reverberant energy relative to the dry clip
    clip_probability: float = 0.2  # share of devices that hard-clip
    clip_level: tuple[float, float] = (0.4, 0.8)  # their threshold, relative to the clip's peak
    jitter: float = 0.15  # per-clip variation around a client's device, as a share of each range

    def __post_init__(self) -> None:
        if self.strength < 0 or not 0 <= self.jitter <= 1 or not 0 <= self.clip_probability <= 1:
            raise ValueError("ConditionScale needs strength >= 0 and jitter, clip_probability in [0, 1]")


def draw_device(rng: np.random.Generator) -> np.ndarray:
    """One device's condition: ``(len(CONDITION_FIELDS),)`` uniforms in [0, 1)."""
    return rng.random(len(CONDITION_FIELDS))


def jitter_conditions(rng: np.random.Generator, device: np.ndarray, n: int, jitter: float) -> np.ndarray:
    """``n`` per-clip conditions ``(n, F)``: the device's uniforms moved by up to ``±jitter``.

    Values are reflected back into [0, 1) at the ends, so a device keeps its place in each range.
    """
    u = device[None, :] + jitter * rng.uniform(-1.0, 1.0, size=(n, len(device)))
    u = np.abs(u)  # reflect below 0
    return np.where(u >= 1.0, np.clip(2.0 - u, 0.0, 1.0 - 1e-9), u)


def _lin(u: np.ndarray, lo_hi: tuple[float, float]) -> np.ndarray:
    return lo_hi[0] + u * (lo_hi[1] - lo_hi[0])


def _log(u: np.ndarray, lo_hi: tuple[float, float]) -> np.ndarray:
    return lo_hi[0] * (lo_hi[1] / lo_hi[0]) ** u


def condition_values(u: np.ndarray, scale: ConditionScale) -> dict[str, np.ndarray]:
    """Physical values ``{field: (n,)}`` of conditions ``u`` ``(n, F)``, before ``strength``."""
    u = np.atleast_2d(u)
    col = {name: u[:, k] for k, name in enumerate(CONDITION_FIELDS)}
    return {
        "gain_db": _lin(col["gain_db"], scale.gain_db),
        "snr_db": _lin(col["snr_db"], scale.snr_db),
        "noise_colour": _lin(col["noise_colour"], scale.noise_colour),
        "tilt": _lin(col["tilt"], (-scale.tilt_db_per_octave, scale.tilt_db_per_octave)),
        "low_cut_hz": _log(col["low_cut_hz"], scale.low_cut_hz),
        "high_cut_hz": _log(col["high_cut_hz"], scale.high_cut_hz),
        "resonance_db": _lin(col["resonance_db"], (-scale.resonance_db, scale.resonance_db)),
        "resonance_hz": _log(col["resonance_hz"], scale.resonance_hz),
        "resonance_octaves": _lin(col["resonance_octaves"], scale.resonance_octaves),
        "rt60_s": _log(col["rt60_s"], scale.rt60_s),
        "reverb_db": _lin(col["reverb_db"], scale.reverb_db),
        "clips": (col["clips"] < min(1.0, scale.clip_probability * scale.strength)).astype(np.float64),
        "clip_level": _lin(col["clip_level"], scale.clip_level),
        "predelay_s": _log(col["predelay_s"], (0.002, 0.02)),
    }


def mic_response_db(freqs: torch.Tensor, v: dict[str, np.ndarray]) -> torch.Tensor:
    """Magnitude response in dB ``(n, len(freqs))`` of the microphones ``v`` (see the module doc)."""
    def col(name: str) -> torch.Tensor:
        return torch.as_tensor(v[name], dtype=torch.float64)[:, None]

    f = freqs.to(torch.float64).clamp(min=10.0)[None, :]
    octaves = torch.log2(f / 1000.0)
    db = col("tilt") * octaves
    db = db - 10 * torch.log10(1 + (col("low_cut_hz") / f) ** 4)
    db = db - 10 * torch.log10(1 + (f / col("high_cut_hz")) ** 4)
    db = db + col("resonance_db") * torch.exp(-0.5 * (torch.log2(f / col("resonance_hz"))
                                                      / col("resonance_octaves")) ** 2)
    return db.clamp(-40.0, 15.0)


def _reverb_tails(v: dict[str, np.ndarray], length: int, sample_rate: int,
                  generator: torch.Generator) -> torch.Tensor:
    """Unit-energy decaying noise tails ``(n, length)`` after each clip's pre-delay."""
    n = len(v["rt60_s"])
    t = torch.arange(length, dtype=torch.float32) / sample_rate
    rt60 = torch.as_tensor(v["rt60_s"], dtype=torch.float32)[:, None]
    delay = torch.as_tensor(v["predelay_s"], dtype=torch.float32)[:, None]
    decay = torch.exp(-3 * math.log(10) * (t - delay).clamp(min=0) / rt60) * (t >= delay)
    tail = torch.randn(n, length, generator=generator) * decay
    return tail / tail.norm(dim=1, keepdim=True).clamp(min=1e-12)


def coloured_noise(n: int, length: int, colour: np.ndarray, generator: torch.Generator) -> torch.Tensor:
    """Unit-RMS Gaussian noise ``(n, length)`` with power spectrum ``1/f^colour`` per row."""
    white = torch.fft.rfft(torch.randn(n, length, generator=generator), dim=1)
    f = torch.arange(white.shape[1], dtype=torch.float32).clamp(min=1.0)  # cycles per clip
    shape = f[None, :] ** (-torch.as_tensor(colour, dtype=torch.float32)[:, None] / 2)
    noise = torch.fft.irfft(white * shape, n=length, dim=1)
    noise = noise - noise.mean(dim=1, keepdim=True)
    return noise / noise.pow(2).mean(dim=1, keepdim=True).sqrt().clamp(min=1e-12)


def _peak(x: torch.Tensor) -> torch.Tensor:
    return x.abs().amax(dim=1, keepdim=True).clamp(min=1e-9)


def record(clean: torch.Tensor, u: np.ndarray, scale: ConditionScale, *, sample_rate: int,
           generator: torch.Generator) -> torch.Tensor:
    """Clean clips ``(n, L)`` as heard through conditions ``u`` ``(n, F)``: float32 in [-1, 1].

    See the module docstring for the chain; ``generator`` draws the reverberant tails and noise,
    chunk after chunk of :data:`RECORD_CHUNK` clips (3× faster than one big batch on a CPU).
    """
    u = np.atleast_2d(u)
    if len(u) != len(clean):
        raise ValueError(f"{len(clean)} clips but {len(u)} conditions")
    return torch.cat([_record_chunk(clean[i:i + RECORD_CHUNK], u[i:i + RECORD_CHUNK], scale,
                                    sample_rate=sample_rate, generator=generator)
                      for i in range(0, len(clean), RECORD_CHUNK)] or [clean.float()])


def _record_chunk(clean: torch.Tensor, u: np.ndarray, scale: ConditionScale, *, sample_rate: int,
                  generator: torch.Generator) -> torch.Tensor:
    n, length = clean.shape
    s = scale.strength
    v = condition_values(u, scale)
    ir_len = min(length, int(IR_SECONDS * sample_rate))
    nfft = length + ir_len
    spectrum = torch.fft.rfft(clean.to(torch.float32), n=nfft, dim=1)
    freqs = torch.fft.rfftfreq(nfft, d=1.0 / sample_rate)
    coarse = torch.linspace(0, sample_rate / 2, MIC_GRID)  # the curve is smooth: interpolate it
    mic_db = F.interpolate(mic_response_db(coarse, v).float()[:, None], size=len(freqs), mode="linear",
                           align_corners=True)[:, 0]
    mic = 10 ** (s * mic_db / 20)
    wet = s * torch.as_tensor(10 ** (v["reverb_db"] / 20), dtype=torch.float32)[:, None]
    room = 1 + wet * torch.fft.rfft(_reverb_tails(v, ir_len, sample_rate, generator), n=nfft, dim=1)
    y = torch.fft.irfft(spectrum * mic * room, n=nfft, dim=1)[:, :length]
    y = y * (REFERENCE_PEAK * torch.as_tensor(10 ** (s * v["gain_db"] / 20), dtype=torch.float32)[:, None]
             / _peak(y))
    rms = y.pow(2).mean(dim=1, keepdim=True).sqrt()
    noise_amp = s * rms * torch.as_tensor(10 ** (-v["snr_db"] / 20), dtype=torch.float32)[:, None]
    y = y + noise_amp * coloured_noise(n, length, v["noise_colour"], generator)
    level = torch.as_tensor(np.where(v["clips"] > 0, v["clip_level"], np.inf), dtype=torch.float32)[:, None]
    limit = level * _peak(y)
    y = torch.maximum(torch.minimum(y, limit), -limit)
    return y.clamp_(-1.0, 1.0).contiguous()

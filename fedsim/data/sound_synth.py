"""Clean synthesis of the generated sound classes (:mod:`fedsim.data.sounds` documents them).

A clip is its class plus a row of :data:`NUM_PARAMS` uniforms in [0, 1) that each class maps
to its own ranges: columns 0–3 are the timing shared by every class (duration as a share of
the clip, onset within what is left, attack 5–40 ms, release 20–150 ms, raised-sine ramps),
columns 4–9 the class's own parameters. :func:`synthesise` renders a batch vectorised per
class (float64 phases, float32 out) and scales every clip to peak 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

SAMPLE_RATE = 16_000
NUM_PARAMS = 10
CLASS_NAMES = ("tone", "chirp_up", "chirp_down", "vowel_a", "vowel_i", "vowel_u", "noise_band",
               "click_train", "click_gallop", "tremolo", "vibrato", "dyad")
# Peterson & Barney (1952) mean formants F1-F3 of adult male speakers, Hz
VOWEL_FORMANTS = {"vowel_a": (730.0, 1090.0, 2440.0), "vowel_i": (270.0, 2290.0, 3010.0),
                  "vowel_u": (300.0, 870.0, 2240.0)}
FORMANT_BANDWIDTHS = (90.0, 110.0, 170.0)
FORMANT_WEIGHTS = (1.0, 0.7, 0.4)
WAVETABLE = 2048  # samples in one period of a vowel's glottal waveform
HARMONIC_LIMIT_HZ = 7000.0
CLICK_SECONDS = 0.03  # the click kernel is cut here
_STREAM_NOISE = 21
_TWO_PI = 2 * math.pi

Synth = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, Sequence[tuple[int, int]]], torch.Tensor]


def _lin(u: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    return lo + u * (hi - lo)


def _log(u: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    return lo * (hi / lo) ** u


def _progress(t: torch.Tensor, on: torch.Tensor, dur: torch.Tensor) -> torch.Tensor:
    """0 → 1 over each clip's sound, ``(n, L)``."""
    return ((t - on) / dur).clamp(0.0, 1.0)


def _sweep(freq: torch.Tensor, phase0: torch.Tensor) -> torch.Tensor:
    """A sine whose instantaneous frequency is ``freq`` ``(n, L)`` Hz."""
    return torch.sin(_TWO_PI * (torch.cumsum(freq, dim=1) / SAMPLE_RATE + phase0))


# ---- classes: (u (n, P), t (1, L) s, on (n, 1) s, dur (n, 1) s, noise keys) -> (n, L) ----------------

def _tone(u, t, on, dur, keys):
    return torch.sin(_TWO_PI * (_log(u[:, 4:5], 250, 2000) * t + u[:, 5:6]))


def _chirp_up(u, t, on, dur, keys):
    ratio = _log(u[:, 5:6], 2, 4) ** _progress(t, on, dur)
    return _sweep(_log(u[:, 4:5], 250, 1000) * ratio, u[:, 6:7])


def _chirp_down(u, t, on, dur, keys):
    ratio = _log(u[:, 5:6], 2, 4) ** (1 - _progress(t, on, dur))
    return _sweep(_log(u[:, 4:5], 250, 1000) * ratio, u[:, 6:7])


def _vowel(formants: tuple[float, float, float]) -> Synth:
    def synth(u, t, on, dur, keys):
        f0 = _log(u[:, 4:5], 90, 250)
        glide = _lin(u[:, 5:6], -0.1, 0.1)
        centre = torch.tensor(formants, dtype=u.dtype) * (1 + 0.08 * (2 * u[:, 6:9] - 1))  # (n, 3)
        k = torch.arange(1, WAVETABLE // 2, dtype=u.dtype)[None, :]
        fk = k * f0  # (n, K) Hz of each harmonic at the starting f0
        amp = torch.full_like(fk, 0.02)
        for j, (bw, w) in enumerate(zip(FORMANT_BANDWIDTHS, FORMANT_WEIGHTS)):
            amp = amp + w / (1 + ((fk - centre[:, j:j + 1]) / (bw / 2)) ** 2)
        amp = amp * (fk * (1 + glide.clamp(min=0)) < HARMONIC_LIMIT_HZ)
        harmonics = (HARMONIC_LIMIT_HZ / f0).clamp(min=1)
        phase = math.pi * k * (k - 1) / harmonics  # Schroeder phases: a low crest factor
        spectrum = torch.cat([torch.zeros_like(f0), amp], 1) * torch.exp(
            1j * torch.cat([torch.zeros_like(f0), phase], 1))
        table = torch.fft.irfft(spectrum, n=WAVETABLE, dim=1)  # one period, (n, WAVETABLE)
        cycles = torch.cumsum(f0 * (1 + glide * _progress(t, on, dur)), 1) / SAMPLE_RATE + u[:, 9:10]
        pos = torch.frac(cycles) * WAVETABLE
        i0 = pos.floor().long() % WAVETABLE
        w = pos - pos.floor()
        return table.gather(1, i0) * (1 - w) + table.gather(1, (i0 + 1) % WAVETABLE) * w
    return synth


def _noise_band(u, t, on, dur, keys):
    length = t.shape[1]
    noise = torch.as_tensor(np.stack([np.random.default_rng([seed, _STREAM_NOISE, item]).standard_normal(length)
                                      for seed, item in keys]))
    f = torch.fft.rfftfreq(length, d=1 / SAMPLE_RATE).to(u.dtype).clamp(min=1.0)[None, :]
    sigma = _lin(u[:, 5:6], 0.3, 1.5) / 2  # octaves
    band = torch.exp(-0.5 * (torch.log2(f / _log(u[:, 4:5], 400, 5000)) / sigma) ** 2)
    return torch.fft.irfft(torch.fft.rfft(noise, dim=1) * band, n=length, dim=1)


def _clicks(times: torch.Tensor, amps: torch.Tensor, u: torch.Tensor, end: torch.Tensor,
            length: int) -> torch.Tensor:
    """Damped-sine clicks (1–4 kHz, 1–4 ms decay from u[:, 5:7]) at ``times`` ``(n, M)`` s before ``end``."""
    idx = torch.round(times * SAMPLE_RATE).long()
    keep = (times <= end) & (idx >= 0) & (idx < length)
    impulses = torch.zeros(len(u), length, dtype=u.dtype)
    impulses.scatter_add_(1, idx.clamp(0, length - 1), amps * keep)
    tk = torch.arange(int(CLICK_SECONDS * SAMPLE_RATE), dtype=u.dtype)[None, :] / SAMPLE_RATE
    kernel = torch.exp(-tk / _log(u[:, 6:7], 0.001, 0.004)) * torch.sin(_TWO_PI * _log(u[:, 5:6], 1000, 4000) * tk)
    nfft = length + tk.shape[1]
    out = torch.fft.irfft(torch.fft.rfft(impulses, n=nfft) * torch.fft.rfft(kernel, n=nfft), n=nfft)
    return out[:, :length]


def _click_train(u, t, on, dur, keys):
    rate = _log(u[:, 4:5], 4, 10)
    beats = torch.arange(int(math.ceil(t[0, -1].item() * 10)) + 2, dtype=u.dtype)[None, :]
    times = on + (u[:, 7:8] + beats) / rate
    return _clicks(times, torch.ones_like(times), u, on + dur, t.shape[1])


def _click_gallop(u, t, on, dur, keys):
    rate = _log(u[:, 4:5], 1.8, 3.5)
    beats = torch.arange(int(math.ceil(t[0, -1].item() * 3.5)) + 2, dtype=u.dtype)[None, :]
    first = on + (u[:, 7:8] + beats) / rate
    gap = _lin(u[:, 8:9], 0.05, 0.09)
    times = torch.cat([first, first + gap], 1)
    amps = torch.cat([torch.ones_like(first), _lin(u[:, 9:10], 0.5, 0.9).expand_as(first)], 1)
    return _clicks(times, amps, u, on + dur, t.shape[1])


def _tremolo(u, t, on, dur, keys):
    carrier = torch.sin(_TWO_PI * (_log(u[:, 4:5], 250, 2000) * t + u[:, 7:8]))
    lfo = 0.5 - 0.5 * torch.cos(_TWO_PI * (_log(u[:, 5:6], 3, 12) * t + u[:, 8:9]))
    return carrier * (1 - _lin(u[:, 6:7], 0.6, 1.0) * lfo)


def _vibrato(u, t, on, dur, keys):
    f, rate, depth = _log(u[:, 4:5], 250, 2000), _log(u[:, 5:6], 4, 8), _lin(u[:, 6:7], 0.03, 0.08)
    lfo = _TWO_PI * (rate * t + u[:, 8:9])
    return torch.sin(_TWO_PI * (f * t + u[:, 7:8]) - f * depth / rate * torch.cos(lfo))


def _dyad(u, t, on, dur, keys):
    low = _log(u[:, 4:5], 200, 1200)
    high = low * _lin(u[:, 5:6], 1.25, 1.6)
    return (torch.sin(_TWO_PI * (low * t + u[:, 7:8]))
            + _lin(u[:, 6:7], 0.6, 1.0) * torch.sin(_TWO_PI * (high * t + u[:, 8:9])))


SYNTHS: tuple[Synth, ...] = (_tone, _chirp_up, _chirp_down, *(_vowel(VOWEL_FORMANTS[v]) for v in
                             ("vowel_a", "vowel_i", "vowel_u")), _noise_band, _click_train,
                             _click_gallop, _tremolo, _vibrato, _dyad)
DURATIONS = {"noise_band": (0.3, 0.8), "click_train": (0.6, 1.0), "click_gallop": (0.6, 1.0)}
SUSTAINED = (0.5, 0.95)  # share of the clip a sound of any other class lasts


def envelope(u: torch.Tensor, t: torch.Tensor, dur_range: tuple[float, float],
             clip_seconds: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(envelope (n, L), onset (n, 1) s, duration (n, 1) s)`` from the timing columns 0–3."""
    dur = _lin(u[:, 0:1], *dur_range) * clip_seconds
    on = u[:, 1:2] * (clip_seconds - dur)
    attack, release = _log(u[:, 2:3], 0.005, 0.04), _log(u[:, 3:4], 0.02, 0.15)
    rise = ((t - on) / attack).clamp(0, 1)
    fall = ((on + dur - t) / release).clamp(0, 1)
    return torch.sin(0.5 * math.pi * rise) ** 2 * torch.sin(0.5 * math.pi * fall) ** 2, on, dur


def synthesise(labels: np.ndarray, params: np.ndarray, length: int, *,
               noise_keys: Sequence[tuple[int, int]], variation: float = 1.0) -> torch.Tensor:
    """Clean clips ``(n, length)`` float32, peak 1, of classes ``labels`` with uniforms ``params``.

    ``noise_keys[i]`` = (seed, base id) seeds clip ``i``'s noise if it is a ``noise_band``.
    ``variation`` in [0, 1] shrinks the class parameters (columns 4–9: pitch, rate, depth, ...)
    towards the middle of their ranges (0: every clip of a class alike but for its timing).
    """
    if not 0.0 <= variation <= 1.0:
        raise ValueError(f"variation must be in [0, 1] (got {variation})")
    labels = np.asarray(labels)
    out = torch.zeros(len(labels), length, dtype=torch.float32)
    t = torch.arange(length, dtype=torch.float64)[None, :] / SAMPLE_RATE
    u_all = torch.as_tensor(np.asarray(params, dtype=np.float64)).clone()
    u_all[:, 4:] = 0.5 + variation * (u_all[:, 4:] - 0.5)
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        u = u_all[rows]
        env, on, dur = envelope(u, t, DURATIONS.get(CLASS_NAMES[c], SUSTAINED), length / SAMPLE_RATE)
        wave = SYNTHS[c](u, t, on, dur, [noise_keys[i] for i in rows]) * env
        out[torch.as_tensor(rows)] = (wave / wave.abs().amax(dim=1, keepdim=True).clamp(min=1e-12)).float()
    return out

"""The generated CardioLive population: synthetic subjects with a known, slowly varying BPM.

A subject's heart rate ``bpm(t) = bpm0 + A·sin(2πt/P + φ)`` (bpm0 in 55–145, A up to 5 BPM,
P 30–90 s, kept in 50–150) drives both streams through one cardiac phase:

* **video**: face-like frames (a skin-coloured ellipse on a background) whose skin colour
  pulses with the blood volume wave (systolic peak plus a dicrotic notch, mostly in green:
  relative weights R 0.33, G 1, B 0.5), a pulse transit time of 0.15–0.25 s after the heart
  sound; head motion (slow sway plus jitter), lighting changes (slow drift and a flicker
  inside the heart-rate band that scales all channels alike), and compression-like noise
  (4×4 block offsets, pixel noise, 8-bit quantisation). Frames are pooled by
  :func:`fedsim.data.cardio_timeline.skin_trace` as they are rendered, so only the trace is
  kept.
* **audio** (2 kHz): S1 (≈45 Hz, 15 ms) at every beat and S2 (≈70 Hz, 10 ms) one systole
  later (0.35·√RR s), beat-to-beat amplitude jitter, breathing (amplitude modulation and
  breath noise at 0.2–0.4 Hz) white background noise at the device's SNR, and
  transient knocks (movement, handling) about twice a second at the same level.

Per-client device conditions (:class:`DeviceConditions`) include the frame rate (15–60 FPS)
and an audio/video offset up to ±0.5 s that the container does *not* record (the streams
are unsynchronised: ``audio_start`` stays 0). Each client holds a few subjects.
Everything is a pure function of the numpy generator passed in.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from fedsim.data.cardio_timeline import AUDIO_RATE, Recording, skin_trace

SKIN_LIGHT = np.array([0.87, 0.70, 0.60])
SKIN_DARK = np.array([0.45, 0.30, 0.22])
PULSE_RGB = np.array([0.33, 1.0, 0.5])


@dataclass(frozen=True)
class DeviceConditions:
    """How one client's device records: frame rate, unrecorded A/V offset (audio late if > 0),
    lighting flicker (relative amplitude, Hz), head-motion amplitude (share of the frame),
    compression noise (8-bit levels) and audio SNR (dB)."""

    fps: float = 30.0
    offset_s: float = 0.0
    flicker: float = 0.005
    flicker_hz: float = 1.5
    motion: float = 0.03
    compression: float = 2.0
    snr_db: float = 10.0


def draw_conditions(rng: np.random.Generator, *, strength: float = 1.0, fps: tuple[float, float] = (15.0, 60.0),
                    max_offset_s: float = 0.5) -> DeviceConditions:
    """One device's conditions; ``strength`` scales the nuisances (0: a clean device)."""
    return DeviceConditions(fps=float(rng.uniform(*fps)), offset_s=float(rng.uniform(-max_offset_s, max_offset_s)),
                            flicker=strength * float(rng.uniform(0.0, 0.012)), flicker_hz=float(rng.uniform(0.7, 2.8)),
                            motion=strength * float(rng.uniform(0.0, 0.06)),
                            compression=strength * float(rng.uniform(0.5, 4.0)),
                            snr_db=float(rng.uniform(10.0, 30.0) - 20.0 * strength))


def bpm_track(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    """A subject's slowly varying heart rate at times ``t`` (s)."""
    bpm0, amp = rng.uniform(55.0, 145.0), rng.uniform(0.0, 5.0)
    period, phase = rng.uniform(30.0, 90.0), rng.uniform(0, 2 * np.pi)
    return np.clip(bpm0 + amp * np.sin(2 * np.pi * t / period + phase), 50.0, 150.0)


def _cycles(bpm: np.ndarray, dt: float) -> np.ndarray:
    """Cardiac phase in cycles (beats so far) on a grid of step ``dt`` from ``bpm`` on it."""
    return np.concatenate([[0.0], np.cumsum(bpm[:-1] / 60.0 * dt)])


def _pulse(cycles: np.ndarray) -> np.ndarray:
    """Blood-volume wave of the cardiac phase: systolic peak and dicrotic wave, mean 0."""
    p = 2 * np.pi * cycles
    return np.sin(p) + 0.35 * np.sin(2 * p + 0.8)


def _frames(rng: np.random.Generator, times: np.ndarray, pulse: np.ndarray, cond: DeviceConditions,
            *, size: int, amplitude: float) -> np.ndarray:
    """Render face-like frames at ``times`` (pulse values given per frame), pooled per frame.

    Rendered in chunks so memory stays O(chunk · size²); returns the ``(T, 3)`` skin trace."""
    tone = SKIN_DARK + rng.uniform() * (SKIN_LIGHT - SKIN_DARK)
    background = rng.uniform(0.1, 0.5, 3) * np.array([0.7, 0.9, 1.2])  # bluish-grey, not skin
    yy, xx = np.meshgrid(np.linspace(-1, 1, size), np.linspace(-1, 1, size), indexing="ij")
    sway = rng.uniform(0.1, 0.5, 2)  # Hz
    sway_phase = rng.uniform(0, 2 * np.pi, 2)
    drift_phase = rng.uniform(0, 2 * np.pi)
    out = []
    for lo in range(0, len(times), 256):
        t, pl = times[lo:lo + 256], pulse[lo:lo + 256]
        n = len(t)
        dx = cond.motion * 2 * (np.sin(2 * np.pi * sway[0] * t + sway_phase[0]) + 0.3 * rng.standard_normal(n))
        dy = cond.motion * 2 * (np.sin(2 * np.pi * sway[1] * t + sway_phase[1]) + 0.3 * rng.standard_normal(n))
        r2 = ((xx - dx[:, None, None]) / 0.6) ** 2 + ((yy - dy[:, None, None]) / 0.8) ** 2
        face = 1.0 / (1.0 + np.exp((r2 - 1.0) * 12.0))  # (n, H, W) soft ellipse
        shade = 1.0 - 0.15 * xx  # light from one side
        skin = tone * (1.0 + amplitude * pl[:, None] * PULSE_RGB)  # (n, 3)
        img = face[..., None] * shade[None, ..., None] * skin[:, None, None, :] \
            + (1 - face[..., None]) * background
        light = 1.0 + 0.05 * np.sin(2 * np.pi * t / 40.0 + drift_phase) \
            + cond.flicker * np.sin(2 * np.pi * cond.flicker_hz * t)
        img = img * light[:, None, None, None]
        blocks = rng.standard_normal((n, size // 4 + 1, size // 4 + 1, 1)).repeat(4, 1).repeat(4, 2)[:, :size, :size]
        img = img + cond.compression / 255.0 * (blocks + 0.5 * rng.standard_normal(img.shape))
        out.append(skin_trace(np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)))
    return np.concatenate(out)


def _burst(freq: float, sigma: float) -> np.ndarray:
    t = np.arange(-4 * sigma, 4 * sigma, 1.0 / AUDIO_RATE)
    return np.exp(-0.5 * (t / sigma) ** 2) * np.sin(2 * np.pi * freq * t)


def _heart_sounds(rng: np.random.Generator, bpm: np.ndarray, cycles: np.ndarray, cond: DeviceConditions) -> np.ndarray:
    """PCG at AUDIO_RATE on the same grid as ``cycles`` (one value per audio sample)."""
    n = len(cycles)
    beats = np.flatnonzero(np.diff(np.floor(cycles)) > 0) + 1  # sample of each beat onset
    s1, s2 = np.zeros(n), np.zeros(n)
    s1[beats] = rng.uniform(0.8, 1.2, len(beats))
    systole = (0.35 * np.sqrt(60.0 / bpm[beats]) * AUDIO_RATE).astype(int)
    keep = beats + systole < n
    s2[(beats + systole)[keep]] = 0.6 * rng.uniform(0.8, 1.2, int(keep.sum()))
    pcg = np.convolve(s1, _burst(rng.uniform(40, 50), 0.015), "same") \
        + np.convolve(s2, _burst(rng.uniform(60, 80), 0.010), "same")
    t = np.arange(n) / AUDIO_RATE
    breath = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.2, 0.4) * t + rng.uniform(0, 2 * np.pi))
    pcg = pcg * (1.0 + 0.3 * breath)
    rms = np.sqrt(np.mean(pcg ** 2)) + 1e-8
    breath_noise = np.convolve(rng.standard_normal(n), np.ones(8) / 8, "same") * breath ** 2 * 0.3 * rms
    # transient interference (movement, speech, handling): random bursts about twice a second
    events = np.zeros(n)
    hits = rng.integers(0, n, int(rng.poisson(2.0 * n / AUDIO_RATE)))
    events[hits] = rng.uniform(0.3, 1.5, len(hits))
    knocks = np.convolve(events, _burst(rng.uniform(30, 120), 0.02), "same")
    noise = rng.standard_normal(n) * rms * 10 ** (-cond.snr_db / 20)
    return pcg + breath_noise + knocks * 10 ** (-cond.snr_db / 20) + noise


def subject_recording(rng: np.random.Generator, cond: DeviceConditions, *, seconds: float,
                      frame_size: int = 16, pulse_amplitude: float = 0.01) -> Recording:
    """One synthetic subject recorded by a device with conditions ``cond``.

    The subject (heart rate, pulse transit time) comes from ``rng``; the video and the audio
    noise from two generators spawned from it, so re-recording the same subject at another
    frame rate leaves its audio as it was, and another offset leaves its video."""
    video_rng, audio_rng = rng.spawn(2)
    pad = 1.0  # audio rendered from 1 s early so a late or early track still covers the video
    fine = np.arange(-pad, seconds + pad, 1.0 / AUDIO_RATE)
    bpm = bpm_track(rng, fine)
    cycles = _cycles(bpm, 1.0 / AUDIO_RATE)
    frame_times = np.arange(0.0, seconds + 1e-9, 1.0 / cond.fps)  # frames at 0 .. seconds
    ptt = rng.uniform(0.15, 0.25)  # the pulse reaches the face after the heart sound
    pulse = _pulse(np.interp(frame_times - ptt, fine, cycles))
    amplitude = pulse_amplitude * rng.uniform(0.6, 1.4)
    trace = _frames(video_rng, frame_times, pulse, cond, size=frame_size, amplitude=amplitude)
    pcg = _heart_sounds(audio_rng, bpm, cycles, cond)
    # the track as recorded: the device's audio lags the video by offset_s, unrecorded
    start = int(round((pad - cond.offset_s) * AUDIO_RATE))
    audio = pcg[start:start + int(seconds * AUDIO_RATE)].astype(np.float32)
    return Recording(trace=trace, frame_times=frame_times, audio=audio, audio_rate=AUDIO_RATE, audio_start=0.0,
                     bpm_times=fine, bpm=bpm)


def with_overrides(cond: DeviceConditions, *, fps: float | None = None, offset_s: float | None = None) -> DeviceConditions:
    """``cond`` with its frame rate and/or offset replaced (the FPS-change and desync tests)."""
    return replace(cond, **{k: v for k, v in (("fps", fps), ("offset_s", offset_s)) if v is not None})

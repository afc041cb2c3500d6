"""One timeline for the two CardioLive streams (arXiv 2502.00702), and the spectral reference.

A recording is a face video and an audio track, each with its own clock: frames at the
device's frame rate (15–60 FPS, possibly irregular timestamps), audio at its sample rate,
starting ``audio_start`` seconds after the first frame by the container's timestamps. Before
fusion both become features on one grid ``t_k = k / RATE`` (``RATE`` = 25 Hz, on the video
clock):

* video: the spatially pooled skin colour of every frame (:func:`skin_trace`), resampled from
  its frame timestamps onto the grid (:func:`to_timeline`);
* audio: resampled to ``AUDIO_RATE`` (torchaudio's band-limited resampler), shifted by
  ``audio_start`` to whole samples, and turned into a log-mel spectrogram whose hop is one
  grid step, so spectrogram frame ``k`` is centred on ``t_k`` (:func:`audio_features`).

A changed frame rate therefore changes only the resampling, and a known offset only the
shift; an unknown offset (unsynchronised devices) stays a shift between the feature tracks
that the model must tolerate. :func:`spectral_bpm` is the frequency-domain reference: the
peak of the Hann-windowed spectrum of a trace inside the heart-rate band.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torchaudio

RATE = 25  # Hz: the common timeline of both streams
AUDIO_RATE = 2000  # Hz: heart sounds (PCG) carry little above 500 Hz
HOP = AUDIO_RATE // RATE  # audio samples per timeline step
N_MELS = 16
BPM_RANGE = (40.0, 170.0)  # the band searched (the population's 50–150 BPM with a margin)


def skin_trace(frames: np.ndarray) -> np.ndarray:
    """Mean RGB of the skin pixels of each frame: ``(T, H, W, 3)`` (uint8 or float in [0, 1])
    -> ``(T, 3)`` float in [0, 1].

    Skin is the classic YCbCr box (Chai & Ngan 1999: 77 <= Cb <= 127, 133 <= Cr <= 173, in
    8-bit units); a frame with fewer than 5 % skin pixels is pooled over its central half
    instead (no face found: assume it is centred). Written out here because torchvision and
    PyAV offer the colour conversion but no skin segmentation.
    """
    x = frames.astype(np.float32) / (255.0 if frames.dtype == np.uint8 else 1.0)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    cb = 128 - 37.797 * r - 74.203 * g + 112.0 * b  # ITU-R BT.601, 8-bit range
    cr = 128 + 112.0 * r - 93.786 * g - 18.214 * b
    mask = ((cb >= 77) & (cb <= 127) & (cr >= 133) & (cr <= 173)).astype(np.float32)  # (T, H, W)
    h, w = mask.shape[1:]
    centre = np.zeros((h, w), np.float32)
    centre[h // 4: h - h // 4, w // 4: w - w // 4] = 1.0
    few = mask.mean(axis=(1, 2)) < 0.05
    mask[few] = centre
    return np.einsum("thw,thwc->tc", mask, x) / mask.sum(axis=(1, 2))[:, None]


def to_timeline(values: np.ndarray, times: np.ndarray, steps: int) -> np.ndarray:
    """Samples ``values`` ``(T, C)`` taken at ``times`` ``(T,)`` seconds -> ``(steps, C)`` on
    the grid ``k / RATE``.

    Linear interpolation between timestamps (frame times may be irregular, which rules out
    torchaudio's uniform-rate resampler); when the source is faster than the grid, each
    sample is first averaged over one grid step (a box anti-aliasing filter). Before the
    first or after the last timestamp the edge value is held.
    """
    times = np.asarray(times, np.float64)
    if len(times) < 2 or np.any(np.diff(times) <= 0):
        raise ValueError("frame timestamps must be increasing (at least two frames)")
    values = np.asarray(values, np.float64).reshape(len(times), -1)
    period = float(np.median(np.diff(times)))
    width = int(round(1.0 / (RATE * period)))
    if width > 1:  # moving average over one grid step, edges by the nearest sample
        kernel = np.ones(width) / width
        padded = np.pad(values, ((width // 2, width - 1 - width // 2), (0, 0)), mode="edge")
        values = np.stack([np.convolve(padded[:, c], kernel, mode="valid") for c in range(values.shape[1])], 1)
    grid = np.arange(steps) / RATE
    return np.stack([np.interp(grid, times, values[:, c]) for c in range(values.shape[1])], 1).astype(np.float32)


_MEL = torchaudio.transforms.MelSpectrogram(sample_rate=AUDIO_RATE, n_fft=128, win_length=128, hop_length=HOP,
                                            f_min=20.0, f_max=500.0, n_mels=N_MELS, power=2.0)


def audio_features(audio: np.ndarray, rate: int, audio_start: float, steps: int) -> np.ndarray:
    """Log-mel frames of a mono track on the timeline: ``(S,)`` at ``rate`` Hz, starting
    ``audio_start`` s after the first video frame -> ``(N_MELS, steps)``; frame ``k`` is
    centred on ``k / RATE`` (silence where the track does not cover the grid)."""
    wave = torch.as_tensor(np.asarray(audio, np.float32))
    if rate != AUDIO_RATE:
        wave = torchaudio.functional.resample(wave, int(rate), AUDIO_RATE)
    shift = int(round(audio_start * AUDIO_RATE))
    wave = torch.cat([torch.zeros(shift), wave]) if shift >= 0 else wave[-shift:]
    need = (steps - 1) * HOP + 1
    wave = torch.nn.functional.pad(wave, (0, max(0, need - len(wave))))[:need]
    with torch.no_grad():
        mel = _MEL(wave)  # (N_MELS, steps): centred frames, hop = one grid step
    return torch.log(mel + 1e-6).numpy()


def spectral_bpm(trace: np.ndarray, rate: float = RATE, *, bpm_range: tuple[float, float] = BPM_RANGE,
                 resolution: float = 0.1) -> float:
    """The frequency-domain reference: the BPM of the largest peak of the detrended,
    Hann-windowed spectrum of ``trace`` ``(T,)`` inside ``bpm_range``, evaluated on a
    ``resolution``-BPM grid (a zero-padded DFT, so the peak is not limited to the 60/T-BPM
    spacing of the FFT bins)."""
    x = np.asarray(trace, np.float64)
    t = np.arange(len(x)) / rate
    x = x - np.polyval(np.polyfit(t, x, 1), t)
    x = x * np.hanning(len(x))
    bpm = np.arange(bpm_range[0], bpm_range[1] + resolution / 2, resolution)
    phase = np.exp(-2j * np.pi * np.outer(bpm / 60.0, t))  # (K, T)
    return float(bpm[np.argmax(np.abs(phase @ x))])


@dataclass(frozen=True)
class Recording:
    """One subject's recording, each stream on its own clock.

    ``trace`` ``(T, 3)``: pooled skin colour of each frame (:func:`skin_trace`) at
    ``frame_times`` ``(T,)`` s; ``audio`` ``(S,)`` mono at ``audio_rate`` Hz, starting
    ``audio_start`` s after the first frame; the reference BPM ``bpm`` at ``bpm_times`` s.
    """

    trace: np.ndarray
    frame_times: np.ndarray
    audio: np.ndarray
    audio_rate: int
    audio_start: float
    bpm_times: np.ndarray
    bpm: np.ndarray

    @property
    def duration(self) -> float:
        """Seconds covered by the video (the timeline's clock)."""
        return float(self.frame_times[-1] - self.frame_times[0])


def windows(rec: Recording, *, window_s: float, stride_s: float) -> dict[str, np.ndarray]:
    """Cut a recording into windows on the timeline: ``video`` ``(n, 3, W)`` pooled colour,
    ``audio`` ``(n, N_MELS, W)`` log-mel, ``bpm`` ``(n,)`` the mean reference BPM over each
    window (``W = window_s · RATE``; no window if the video is shorter than one)."""
    steps = int(rec.duration * RATE) + 1
    width, stride = int(round(window_s * RATE)), max(1, int(round(stride_s * RATE)))
    video = to_timeline(rec.trace, rec.frame_times - rec.frame_times[0], steps)  # (steps, 3)
    audio = audio_features(rec.audio, rec.audio_rate, rec.audio_start, steps)  # (M, steps)
    bpm = np.interp(np.arange(steps) / RATE + rec.frame_times[0], rec.bpm_times, rec.bpm)
    starts = list(range(0, steps - width + 1, stride))
    return {"video": np.stack([video[s:s + width].T for s in starts]) if starts else np.zeros((0, 3, width)),
            "audio": np.stack([audio[:, s:s + width] for s in starts]) if starts else np.zeros((0, N_MELS, width)),
            "bpm": np.asarray([bpm[s:s + width].mean() for s in starts])}

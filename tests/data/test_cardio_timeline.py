"""The cardio timeline: spectral reference, skin pooling, frame-rate and offset alignment."""

from __future__ import annotations

import numpy as np
import pytest

from fedsim.data.cardio_timeline import (AUDIO_RATE, N_MELS, RATE, Recording, audio_features, skin_trace,
                                         spectral_bpm, to_timeline, windows)


@pytest.mark.parametrize("bpm", [50.0, 72.4, 118.7, 150.0])  # the population's range and between bins
def test_the_spectral_reference_recovers_a_known_bpm_within_1(bpm):
    # Prepare: 8 s at 25 Hz of a pulse wave (fundamental + weaker harmonic) on a drift, in noise
    rng = np.random.default_rng(1)
    t = np.arange(200) / RATE
    phase = 2 * np.pi * bpm / 60 * t
    trace = np.sin(phase) + 0.35 * np.sin(2 * phase + 0.8) + 0.3 * t + 0.3 * rng.standard_normal(len(t))
    # Execute
    est = spectral_bpm(trace)
    # Assert
    assert abs(est - bpm) <= 1.0, est


def test_skin_pooling_averages_skin_pixels_and_falls_back_to_the_centre():
    # Prepare: frame 0 a skin patch (200, 120, 100) on blue; frame 1 no skin at all
    frames = np.zeros((2, 8, 8, 3), np.uint8)
    frames[:] = (20, 40, 200)
    frames[0, 2:5, 3:7] = (200, 120, 100)  # Cb ≈ 96, Cr ≈ 168: inside the skin box
    frames[1, 2:6, 2:6] = (0, 200, 0)  # the centre half, green
    # Execute
    trace = skin_trace(frames)
    # Assert
    np.testing.assert_allclose(trace[0], np.array([200, 120, 100]) / 255, atol=1e-6)
    np.testing.assert_allclose(trace[1], np.array([0, 200, 0]) / 255, atol=1e-6)


@pytest.mark.parametrize("fps", [15.0, 30.0, 60.0, 23.976])
def test_a_changed_frame_rate_lands_on_the_same_timeline(fps):
    # Prepare: a 1.2 Hz colour wave sampled at the device's frame rate, first frame at t = 0
    times = np.arange(0, 10, 1 / fps)
    values = np.stack([np.sin(2 * np.pi * 1.2 * times), np.full_like(times, 0.5)], 1)
    # Execute
    grid = to_timeline(values, times, steps=200)
    # Assert: the timeline holds the wave at k / 25 s (box filter at 60 FPS costs ≤ 2 % amplitude)
    expected = np.sin(2 * np.pi * 1.2 * np.arange(200) / RATE)
    assert grid.shape == (200, 2)
    assert np.abs(grid[:, 0] - expected)[:-3].max() < 0.12
    np.testing.assert_allclose(grid[:, 1], 0.5, atol=1e-6)
    assert abs(spectral_bpm(grid[:, 0]) - 72.0) <= 1.0


@pytest.mark.parametrize("audio_start, rate", [(0.0, AUDIO_RATE), (0.4, AUDIO_RATE), (-0.3, 44_100), (0.5, 16_000)])
def test_a_known_audio_offset_is_aligned_to_the_video_clock(audio_start, rate):
    # Prepare: a 100 Hz knock at 3.0 s on the video clock, in a track that starts audio_start s
    # after the first frame (so at 3.0 - audio_start s into the file)
    t = np.arange(int(6 * rate)) / rate
    at = 3.0 - audio_start
    track = np.exp(-0.5 * ((t - at) / 0.01) ** 2) * np.sin(2 * np.pi * 100 * (t - at))
    # Execute
    mel = audio_features(track.astype(np.float32), rate, audio_start, steps=150)
    # Assert: the loudest frame is 3.0 s · 25 Hz = 75; silence where the track does not reach
    assert mel.shape == (N_MELS, 150)
    assert int(mel.max(0).argmax()) == 75
    if audio_start > 0:
        assert mel[:, : int(audio_start * RATE) - 1].max() < np.log(1e-5)


def test_windows_cut_both_streams_and_average_the_reference_bpm():
    # Prepare: 12 s at 30 FPS, audio from the first frame, BPM rising 60 -> 72 linearly
    times = np.arange(0, 12, 1 / 30)
    rec = Recording(trace=np.ones((len(times), 3)), frame_times=times, audio=np.zeros(12 * AUDIO_RATE, np.float32),
                    audio_rate=AUDIO_RATE, audio_start=0.0, bpm_times=np.array([0.0, 12.0]),
                    bpm=np.array([60.0, 72.0]))
    # Execute
    cut = windows(rec, window_s=8.0, stride_s=2.0)
    # Assert: the timeline has steps 0..299 (the last frame is at 11.967 s), so windows of 200
    # steps start at 0, 2 and 4 s; the mean BPM of the ramp over [s, s + 7.96] s is 60 + s + 3.98
    assert cut["video"].shape == (3, 3, 200) and cut["audio"].shape == (3, N_MELS, 200)
    np.testing.assert_allclose(cut["bpm"], [63.98, 65.98, 67.98], atol=1e-6)

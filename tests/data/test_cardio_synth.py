"""The generated cardio population: known BPM in both streams, device frame rate and offset."""

from __future__ import annotations

import numpy as np
import pytest

from fedsim.data import cardio_synth as synth
from fedsim.data.cardio_timeline import AUDIO_RATE, RATE, spectral_bpm, to_timeline

CLEAN = synth.DeviceConditions(fps=30.0, offset_s=0.0, flicker=0.0, motion=0.0, compression=0.5, snr_db=30.0)


def _record(seed: int, cond: synth.DeviceConditions, seconds: float = 10.0):
    return synth.subject_recording(np.random.default_rng(seed), cond, seconds=seconds, pulse_amplitude=0.02)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_clean_device_films_the_subjects_bpm_in_the_skin_colour(seed):
    # Prepare
    rec = _record(seed, CLEAN)
    # Execute: green channel of the pooled skin colour on the timeline, spectral peak
    green = to_timeline(rec.trace, rec.frame_times, steps=250)[:, 1]
    # Assert: within 1.5 BPM of the mean reference BPM (the rate drifts by up to ±5 over 90 s)
    truth = float(np.interp(np.arange(250) / RATE, rec.bpm_times, rec.bpm).mean())
    assert 50 <= truth <= 150
    assert abs(spectral_bpm(green) - truth) <= 1.5, (spectral_bpm(green), truth)


def test_the_heart_sounds_beat_at_the_subjects_rate():
    # Prepare
    rec = _record(3, CLEAN)
    # Execute: S1/S2 energy envelope at 25 Hz; S1 and S2 give a fundamental at the heart rate
    # and harmonics, so the reference is searched below the second harmonic
    env = np.abs(rec.audio[: len(rec.audio) // 80 * 80]).reshape(-1, 80).mean(1)
    truth = float(np.interp(np.arange(len(env)) / RATE, rec.bpm_times, rec.bpm).mean())
    est = spectral_bpm(env, bpm_range=(0.7 * truth, 1.3 * truth))
    # Assert
    assert abs(est - truth) <= 1.5, (est, truth)


@pytest.mark.parametrize("fps", [15.0, 30.0, 60.0])
def test_the_device_frame_rate_sets_the_frame_times(fps):
    rec = _record(4, synth.with_overrides(CLEAN, fps=fps), seconds=4.0)
    assert len(rec.frame_times) == len(rec.trace) == int(4.0 * fps) + 1  # frames at 0 .. 4 s
    np.testing.assert_allclose(np.diff(rec.frame_times), 1 / fps)


def test_an_unrecorded_offset_shifts_the_audio_and_nothing_else():
    # Prepare: the same subject and device, audio 0.25 s late
    synced = _record(5, CLEAN)
    late = _record(5, synth.with_overrides(CLEAN, offset_s=0.25))
    shift = int(0.25 * AUDIO_RATE)
    # Assert: same frames, same reference; the late track is the synced one 500 samples later,
    # and the container still says both start together
    np.testing.assert_array_equal(synced.trace, late.trace)
    np.testing.assert_allclose(late.audio[shift:], synced.audio[:-shift], atol=1e-6)
    assert late.audio_start == synced.audio_start == 0.0


def test_another_frame_rate_re_records_the_same_subject_and_audio():
    slow, fast = _record(6, synth.with_overrides(CLEAN, fps=15.0)), _record(6, synth.with_overrides(CLEAN, fps=60.0))
    np.testing.assert_array_equal(slow.audio, fast.audio)
    np.testing.assert_array_equal(slow.bpm, fast.bpm)
    assert len(fast.trace) == 4 * len(slow.trace) - 3  # frames at 0 .. 10 s


def test_drawn_conditions_stay_in_the_documented_ranges():
    rng = np.random.default_rng(0)
    conds = [synth.draw_conditions(rng) for _ in range(200)]
    assert all(15 <= c.fps <= 60 and abs(c.offset_s) <= 0.5 for c in conds)
    assert min(c.fps for c in conds) < 20 and max(c.fps for c in conds) > 55
    assert all(c.flicker == 0 and c.motion == 0 for c in
               (synth.draw_conditions(rng, strength=0.0) for _ in range(5)))

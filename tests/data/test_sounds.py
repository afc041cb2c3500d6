"""The generated sound population: determinism, held-out split, class structure, recording conditions."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torchaudio

from fedsim.data import sound_conditions, sounds
from fedsim.data.sound_conditions import (CONDITION_FIELDS, ConditionScale, coloured_noise, condition_values,
                                          jitter_conditions, record)
from fedsim.data.sounds import (BASE_PER_CLASS, CLASS_NAMES, NUM_CLASSES, SAMPLE_RATE, clean_clips, client_clips,
                                client_device, client_items, eval_clips, split_indices)

pytestmark = pytest.mark.timeout(120)

IID = SimpleNamespace(kind="iid", alpha=1.0, classes_per_client=1)
DIRICHLET = SimpleNamespace(kind="dirichlet", alpha=0.5, classes_per_client=2)
PATHOLOGICAL = SimpleNamespace(kind="pathological", alpha=1.0, classes_per_client=2)
CLIP = 0.25  # seconds: short clips keep the tests fast


def _client(client_id: int, *, seed: int = 0, num_clients: int = 20, partitioning=DIRICHLET,
            min_clips: int = 8, max_clips: int = 12, conditions: ConditionScale = ConditionScale()):
    return client_clips(client_id, seed=seed, num_clients=num_clients, partitioning=partitioning,
                        clip_seconds=CLIP, min_clips=min_clips, max_clips=max_clips, conditions=conditions)


def _base(cls: str, rows: range | list[int]) -> np.ndarray:
    return CLASS_NAMES.index(cls) * BASE_PER_CLASS + np.asarray(list(rows))


def _log_mel(x: torch.Tensor) -> torch.Tensor:
    mel = torchaudio.transforms.MelSpectrogram(SAMPLE_RATE, n_fft=1024, win_length=320, hop_length=160, n_mels=64)
    return torch.log(mel(x) + 1e-6)  # (n, 64, frames)


def _dominant_hz(x: torch.Tensor) -> torch.Tensor:
    """Peak frequency of each row's magnitude spectrum."""
    spectrum = torch.fft.rfft(x, dim=-1).abs()
    return spectrum.argmax(-1).float() * SAMPLE_RATE / x.shape[-1]


# ---- the population ------------------------------------------------------------------------------

def test_classes_and_base_split():
    # Execute
    pool, bank, query = split_indices()
    labels = sounds.base_labels()
    # Assert: at least 10 named classes; a disjoint cover of the base set, every class in each part
    assert NUM_CLASSES == len(CLASS_NAMES) >= 10 and len(set(CLASS_NAMES)) == NUM_CLASSES
    np.testing.assert_array_equal(np.sort(np.concatenate([pool, bank, query])), np.arange(len(labels)))
    for part in (pool, bank, query):
        assert set(np.unique(labels[part])) == set(range(NUM_CLASSES))


def test_client_clips_shape_range_and_size():
    # Execute
    x, y = _client(3)
    # Assert
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert x.shape[1] == round(CLIP * SAMPLE_RATE) and 8 <= len(x) <= 12 and len(y) == len(x)
    assert torch.isfinite(x).all() and x.abs().max() <= 1.0 and x.abs().amax(1).min() > 0


def test_client_clips_are_a_pure_function_of_seed_and_client():
    # Execute
    a, b = _client(5), _client(5)
    other_client, other_seed = _client(6), _client(5, seed=1)
    # Assert
    torch.testing.assert_close(a[0], b[0], rtol=0, atol=0)
    torch.testing.assert_close(a[1], b[1], rtol=0, atol=0)
    assert not torch.equal(a[0][:4], other_client[0][:4])
    assert not torch.equal(a[0][:4], other_seed[0][:4])


def test_pathological_partitioning_skews_labels():
    # Execute
    label_sets = [set(_client(c, partitioning=PATHOLOGICAL)[1].tolist()) for c in range(4)]
    # Assert: each client sees at most its 2 classes, and not all clients the same ones
    assert all(1 <= len(s) <= 2 for s in label_sets)
    assert len({frozenset(s) for s in label_sets}) > 1


@pytest.mark.parametrize("partitioning", [  # each synthesises ~250 clips: the non-IID cases are slow
    IID, pytest.param(DIRICHLET, marks=pytest.mark.slow), pytest.param(PATHOLOGICAL, marks=pytest.mark.slow)])
def test_held_out_base_clips_never_reach_a_client(monkeypatch, partitioning):
    # Prepare: record which base clips get synthesised
    synthesised: list[np.ndarray] = []
    real = sounds.clean_clips

    def spy(base_ids, **kwargs):
        synthesised.append(np.asarray(base_ids))
        return real(base_ids, **kwargs)

    monkeypatch.setattr(sounds, "clean_clips", spy)
    pool, bank, query = split_indices()
    # Execute: 1000 clients, so shards are small and clips repeat
    for c in (0, 1, 7, 49, 50, 999):
        _client(c, num_clients=1000, partitioning=partitioning, min_clips=30, max_clips=40)
    clients = np.concatenate(synthesised)
    synthesised.clear()
    eval_clips(seed=0, clip_seconds=CLIP, per_class=3, conditions=ConditionScale())
    held = np.concatenate(synthesised)
    # Assert
    assert np.isin(clients, pool).all()
    assert not np.isin(held, pool).any() and np.isin(held, np.concatenate([bank, query])).all()


def test_eval_clips_balanced_and_deterministic():
    # Execute
    a = eval_clips(seed=2, clip_seconds=CLIP, per_class=2, conditions=ConditionScale())
    b = eval_clips(seed=2, clip_seconds=CLIP, per_class=2, conditions=ConditionScale())
    # Assert
    bank_w, bank_y, query_w, query_y = a
    assert bank_w.shape == query_w.shape == (2 * NUM_CLASSES, round(CLIP * SAMPLE_RATE))
    for y in (bank_y, query_y):
        np.testing.assert_array_equal(np.bincount(y.numpy(), minlength=NUM_CLASSES), [2] * NUM_CLASSES)
    for x, z in zip(a, b):
        assert torch.equal(x, z)
    assert not torch.equal(bank_w, query_w)


@pytest.mark.parametrize("call", [
    lambda: eval_clips(seed=0, per_class=0, conditions=ConditionScale()),  # per_class below 1
    lambda: eval_clips(seed=0, per_class=101, conditions=ConditionScale()),  # more than the held-out rows
    lambda: _client(0, min_clips=5, max_clips=4),  # min above max
    lambda: client_clips(0, seed=0, num_clients=2, partitioning=IID, clip_seconds=0.01, min_clips=2,
                         max_clips=2, conditions=ConditionScale()),  # clip too short
    lambda: ConditionScale(strength=-1.0),  # negative strength
])
def test_bad_arguments_raise_value_error(call):
    with pytest.raises(ValueError):
        call()


# ---- class structure (clean clips) ---------------------------------------------------------------

def test_classes_are_distinguishable_by_a_nearest_centroid_on_pooled_log_mel():
    # Prepare: clean clips (no recording conditions), 20 per class in bank and query
    bank_w, bank_y, query_w, query_y = eval_clips(seed=0, clip_seconds=0.5, per_class=20,
                                                  conditions=ConditionScale(strength=0.0))

    def features(x):
        m = _log_mel(x)
        return torch.cat([m.mean(-1), m.std(-1)], 1)

    # Execute
    bank, query = features(bank_w), features(query_w)
    centroids = torch.stack([bank[bank_y == c].mean(0) for c in range(NUM_CLASSES)])
    accuracy = (torch.cdist(query, centroids).argmin(1) == query_y).float().mean().item()
    # Assert: well above chance (1/12); measured 0.48-0.52 over seeds with 50 per class at 1 s
    assert accuracy > 3.5 / NUM_CLASSES


def test_tone_pitch_is_in_range_and_varies_within_the_class():
    # Execute
    hz = _dominant_hz(clean_clips(_base("tone", range(20)), seed=0, clip_samples=SAMPLE_RATE))
    # Assert
    assert ((hz > 240) & (hz < 2010)).all() and hz.max() / hz.min() > 2


@pytest.mark.parametrize("cls, rising", [("chirp_up", True), ("chirp_down", False)])
def test_chirps_sweep_in_their_direction(cls, rising):
    # Prepare: every clip's log-mel peak bin over the frames where the clip is loud
    m = _log_mel(clean_clips(_base(cls, range(8)), seed=0, clip_samples=SAMPLE_RATE))
    for frames in m:
        loud = frames.amax(0) > frames.amax() - 3
        peak = frames.argmax(0)[loud].float()
        # Execute
        slope = np.polyfit(np.arange(len(peak)), peak.numpy(), 1)[0]
        # Assert
        assert (slope > 0) == rising and abs(slope) > 0.05


def test_click_rhythms_differ():
    # Prepare: onsets of clicks from the frame energy of clean clips
    def intervals(cls):
        x = clean_clips(_base(cls, range(6)), seed=0, clip_samples=2 * SAMPLE_RATE)
        energy = x.pow(2).unfold(1, 80, 80).sum(-1)  # 5 ms frames
        out = []
        for e in energy:
            onset = torch.nonzero((e[1:] > 0.1 * e.max()) & (e[:-1] <= 0.1 * e.max())).flatten().float() * 0.005
            out.append(torch.diff(onset))
        return out

    # Execute
    regular, gallop = intervals("click_train"), intervals("click_gallop")
    # Assert: a regular train has near-equal gaps; a gallop alternates short (50-90 ms) and long ones
    assert all(g.std() < 0.01 for g in regular)
    assert all(g.min() < 0.1 and g.max() > 0.18 for g in gallop)


def test_variation_zero_makes_a_class_alike_but_for_timing():
    # Execute
    hz = _dominant_hz(clean_clips(_base("tone", range(10)), seed=0, clip_samples=SAMPLE_RATE, variation=0.0))
    # Assert: the middle of 250-2000 Hz on a log scale
    assert torch.allclose(hz, torch.full_like(hz, (250 * 2000) ** 0.5), atol=2.0)


# ---- recording conditions ------------------------------------------------------------------------

def test_strength_zero_records_clean_clips_at_half_scale():
    # Prepare
    clean = clean_clips(_base("dyad", range(4)), seed=0, clip_samples=4000)
    u = np.random.default_rng(0).random((4, len(CONDITION_FIELDS)))
    # Execute
    out = record(clean, u, ConditionScale(strength=0.0), sample_rate=SAMPLE_RATE,
                 generator=torch.Generator().manual_seed(0))
    # Assert
    torch.testing.assert_close(out, 0.5 * clean, atol=1e-5, rtol=0)


def test_condition_values_span_the_ranges():
    # Prepare
    scale = ConditionScale()
    # Execute
    low = condition_values(np.zeros((1, len(CONDITION_FIELDS))), scale)
    high = condition_values(np.full((1, len(CONDITION_FIELDS)), 1 - 1e-12), scale)
    # Assert: uniform 0 and 1 land on the range ends (log ranges too)
    assert low["gain_db"][0] == -18.0 and np.isclose(high["gain_db"][0], 6.0)
    assert np.isclose(low["low_cut_hz"][0], 40.0) and np.isclose(high["low_cut_hz"][0], 400.0)
    assert np.isclose(low["tilt"][0], -3.0) and np.isclose(high["rt60_s"][0], 0.8)
    assert low["clips"][0] == 1.0 and high["clips"][0] == 0.0  # a low draw clips


def test_clients_have_different_devices_and_clips_jitter_around_them():
    # Prepare
    devices = np.stack([client_device(c, seed=0) for c in range(10)])
    rng = np.random.default_rng(0)
    # Execute
    jittered = jitter_conditions(rng, devices[0], 200, 0.15)
    # Assert: every field differs between clients; a client's clips stay within the jitter
    assert (devices.std(0) > 0.1).all()
    assert (np.abs(jittered - devices[0]) <= 0.15 + 1e-12).all() and jittered.std(0).min() > 0.01
    assert ((jittered >= 0) & (jittered < 1)).all()


def test_device_is_a_bigger_nuisance_than_the_jitter_within_a_client():
    # Prepare: the same 24 clean clips heard by two devices, each twice (fresh jitter and noise)
    clean = clean_clips(np.concatenate([_base(c, range(2)) for c in CLASS_NAMES]), seed=0, clip_samples=8000)
    rng = np.random.default_rng(1)
    a, b = client_device(0, seed=0), client_device(1, seed=0)

    def hear(device, key):
        u = jitter_conditions(rng, device, len(clean), ConditionScale().jitter)
        x = record(clean, u, ConditionScale(), sample_rate=SAMPLE_RATE, generator=torch.Generator().manual_seed(key))
        return _log_mel(x).mean(-1)  # (n, 64) average spectrum in log-mel

    # Execute
    a1, a2, b1 = hear(a, 1), hear(a, 2), hear(b, 3)
    within = (a1 - a2).norm(dim=1).mean()
    across = (a1 - b1).norm(dim=1).mean()
    # Assert
    assert across > 1.5 * within


def test_noise_colour_tilts_the_spectrum():
    # Execute
    noise = coloured_noise(2, 16000, np.array([0.0, 2.0]), torch.Generator().manual_seed(0))
    power = torch.fft.rfft(noise, dim=1).abs().pow(2)
    low, high = power[:, 10:200].mean(1), power[:, 4000:8000].mean(1)
    # Assert: unit RMS; white is flat, brown falls by far more than 20 dB
    torch.testing.assert_close(noise.pow(2).mean(1).sqrt(), torch.ones(2), atol=1e-4, rtol=0)
    assert 0.5 < low[0] / high[0] < 2 and low[1] / high[1] > 100


def test_client_items_follow_the_partition_and_draw_sizes():
    # Execute
    ids = client_items(4, seed=0, num_clients=20, partitioning=DIRICHLET, min_clips=50, max_clips=60)
    again = client_items(4, seed=0, num_clients=20, partitioning=DIRICHLET, min_clips=50, max_clips=60)
    # Assert
    assert 50 <= len(ids) <= 60 and np.array_equal(ids, again)
    assert np.isin(ids, split_indices()[0]).all()


def test_record_chunks_do_not_change_the_result_shape(monkeypatch):
    # Prepare: chunks of 3 clips for 7 clips
    monkeypatch.setattr(sound_conditions, "RECORD_CHUNK", 3)
    clean = clean_clips(_base("tone", range(7)), seed=0, clip_samples=2000)
    u = np.random.default_rng(0).random((7, len(CONDITION_FIELDS)))
    # Execute
    out = record(clean, u, ConditionScale(), sample_rate=SAMPLE_RATE, generator=torch.Generator().manual_seed(0))
    # Assert
    assert out.shape == (7, 2000) and out.abs().max() <= 1.0

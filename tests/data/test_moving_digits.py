"""The generated moving-digit population: deterministic per (seed, client), cameras, held-out split."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from fedsim.data import digits, moving_digits as md

pytestmark = pytest.mark.timeout(60)
IID = SimpleNamespace(kind="iid")
SMALL = dict(num_clients=10, partitioning=IID, frames=6, size=16, min_clips=3, max_clips=5)


def test_a_client_clips_are_a_pure_function_of_seed_and_client_id():
    a, ya = md.client_clips(4, seed=0, **SMALL)
    b, yb = md.client_clips(4, seed=0, **SMALL)
    other, _ = md.client_clips(5, seed=0, **SMALL)
    reseeded, _ = md.client_clips(4, seed=1, **SMALL)
    assert a.shape[1:] == (3, 6, 16, 16) and 3 <= len(a) <= 5 and a.dtype == torch.float32
    assert torch.equal(a, b) and torch.equal(ya, yb)
    assert a.shape != other.shape or not torch.equal(a, other)
    assert a.shape != reseeded.shape or not torch.equal(a, reseeded)
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0


def test_the_main_digit_moves_and_takes_the_hue_of_its_class():
    # Prepare: no camera nuisance, no hue spread, one clip per class
    images, labels = digits.load_base()
    ids = np.asarray([np.flatnonzero(labels == c)[0] for c in range(10)])
    scene = md.SceneScale(class_hue_spread=0.0)
    u = np.full((10, len(md.CAMERA_FIELDS)), 0.5)
    # Execute
    clips = md.render(ids, np.random.default_rng(0), u, frames=4, size=32, scene=scene,
                      camera=md.CameraScale(strength=0.0), pool=ids)
    slots = md._draw_objects(np.random.default_rng(0), 10, labels[ids], scene, ids)
    # Assert: frames differ (objects move); the main slot's hue is class / 10
    assert all(float((clip[:, 0] - clip[:, -1]).abs().max()) > 0.1 for clip in clips)
    assert np.allclose(slots[0]["hsv"][:, 0], np.arange(10) / 10)
    assert slots[0]["present"].all() and len(slots) == 1 + md.MAX_DISTRACTORS


def test_hsv_to_rgb_hand_values():
    rgb = md.hsv_to_rgb(torch.tensor([1 / 3, 2 / 3, 0.0]), torch.tensor([1.0, 1.0, 0.0]),
                        torch.tensor([1.0, 0.5, 0.25]))
    assert torch.allclose(rgb, torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 0.5], [0.25, 0.25, 0.25]]), atol=1e-6)


def test_bounce_reflects_positions_between_the_walls():
    x = torch.tensor([0.5, 1.5, 2.5, -0.5, 4.2])
    assert torch.allclose(md.bounce(x, torch.tensor(0.0), torch.tensor(2.0)),
                          torch.tensor([0.5, 1.5, 1.5, 0.5, 0.2]), atol=1e-6)


def test_cameras_differ_between_clients_and_change_frame_rate_brightness_and_noise():
    scale = md.CameraScale()
    cams = np.stack([md.client_camera(c, seed=0) for c in range(20)])
    v = scale.values(cams)
    assert np.ptp(v["frame_interval"]) > 0.5 and np.ptp(v["gain"]) > 0.3 and np.ptp(v["noise"]) > 0.02
    ideal = md.CameraScale(strength=0.0).values(cams)
    assert np.allclose(ideal["frame_interval"], 1.0) and np.allclose(ideal["noise"], 0.0)


def test_held_out_clips_come_from_digits_no_client_holds():
    pool, bank, query = digits.split_indices(0)
    assert not set(pool) & (set(bank) | set(query))
    bank_x, bank_y, query_x, query_y = md.eval_clips(seed=0, frames=4, size=16, per_split=12)
    assert bank_x.shape == (12, 3, 4, 16, 16) and query_x.shape == (12, 3, 4, 16, 16)
    assert set(bank_y.tolist()) <= set(range(10)) and len(query_y) == 12

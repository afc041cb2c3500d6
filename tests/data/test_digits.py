"""The bundled digits population: held-out split, per-client determinism and sizes, rendering."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from fedsim.data import digits
from fedsim.data.digits import (EVAL_FRACTION, NUM_CLASSES, StyleScale, affine_theta, client_sample,
                                eval_sample, load_base, split_indices, stroke, warp)

pytestmark = pytest.mark.timeout(60)

SIZE = 12
IID = SimpleNamespace(kind="iid", alpha=1.0, classes_per_client=1)
DIRICHLET = SimpleNamespace(kind="dirichlet", alpha=0.5, classes_per_client=2)
PATHOLOGICAL = SimpleNamespace(kind="pathological", alpha=1.0, classes_per_client=2)


def _client(client_id: int, *, seed: int = 0, num_clients: int = 20, partitioning=DIRICHLET,
            min_samples: int = 16, max_samples: int = 24, scale: StyleScale = StyleScale()):
    return client_sample(client_id, seed=seed, num_clients=num_clients, partitioning=partitioning,
                         size=SIZE, min_samples=min_samples, max_samples=max_samples, scale=scale)


def test_base_images_are_the_1797_sklearn_digits_in_unit_range():
    # Execute
    images, labels = load_base()
    # Assert
    assert images.shape == (1797, 8, 8) and images.dtype == np.float32
    assert images.min() == 0.0 and images.max() == 1.0
    assert labels.dtype == np.int64 and set(np.unique(labels)) == set(range(NUM_CLASSES))


def test_split_is_a_disjoint_stratified_cover_of_the_base_set():
    # Prepare
    _, labels = load_base()
    # Execute
    pool, bank, query = split_indices(0)
    # Assert: disjoint, together every base image exactly once
    everything = np.concatenate([pool, bank, query])
    np.testing.assert_array_equal(np.sort(everything), np.arange(len(labels)))
    # about EVAL_FRACTION held out, and every class in each part
    assert abs((len(bank) + len(query)) / len(labels) - EVAL_FRACTION) < 0.01
    for part in (pool, bank, query):
        assert set(np.unique(labels[part])) == set(range(NUM_CLASSES))


def test_split_depends_on_the_seed_only():
    # Execute
    a, b, c = split_indices(0), split_indices(0), split_indices(1)
    # Assert
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize("partitioning", [IID, DIRICHLET, PATHOLOGICAL])
def test_held_out_images_never_reach_a_client(monkeypatch, partitioning):
    # Prepare: tag every base image with its own index and record what a client renders
    images, labels = load_base()
    tagged = images.copy()
    tagged[:, 0, 0] = np.arange(len(images), dtype=np.float32)
    monkeypatch.setattr(digits, "load_base", lambda: (tagged, labels))
    drawn: list[np.ndarray] = []

    def spy(base, style, size, box):
        drawn.append(np.asarray(base)[:, 0, 0].astype(np.int64))
        return torch.zeros(len(base), 1, size, size)

    monkeypatch.setattr(digits, "render", spy)
    pool, bank, query = split_indices(0)
    # Execute: 1000 clients with shards smaller than a client, so samples repeat
    for c in (0, 1, 7, 49, 50, 333, 999):
        _client(c, num_clients=1000, partitioning=partitioning, min_samples=40, max_samples=48)
    # Assert
    used = np.unique(np.concatenate(drawn))
    assert np.isin(used, pool).all()
    assert not np.isin(used, np.concatenate([bank, query])).any()


def test_client_sample_is_a_pure_function_of_seed_and_client_id():
    # Execute
    x, y = _client(5)
    x_again, y_again = _client(5)
    x_other, _ = _client(6)
    x_reseeded, _ = _client(5, seed=1)
    # Assert
    assert x.shape == (len(y), 1, SIZE, SIZE) and x.dtype == torch.float32
    assert torch.equal(x, x_again) and torch.equal(y, y_again)
    assert x_other.shape != x.shape or not torch.equal(x, x_other)
    assert x_reseeded.shape != x.shape or not torch.equal(x, x_reseeded)
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0


def test_every_client_of_a_thousand_has_between_min_and_max_samples():
    # Prepare: shards of ~24 pool images, fewer than min_samples: clients resample with repeats
    ids = [0, 1, 2, 49, 50, 51, 250, 500, 777, 998, 999]
    # Execute
    sizes = {c: len(_client(c, num_clients=1000, min_samples=32, max_samples=40)[1]) for c in ids}
    # Assert
    assert all(32 <= n <= 40 for n in sizes.values()), sizes
    assert len(set(sizes.values())) > 1  # sizes are drawn per client, not all equal


def test_min_equal_to_max_fixes_the_client_size():
    # Execute
    x, y = _client(3, min_samples=20, max_samples=20)
    # Assert
    assert x.shape[0] == 20 and y.shape == (20,)


def test_pathological_clients_hold_few_classes():
    # Execute
    classes = [set(_client(c, partitioning=PATHOLOGICAL)[1].tolist()) for c in range(10)]
    # Assert
    assert all(1 <= len(c) <= 2 for c in classes)


def test_clients_on_one_shard_differ_by_writer_style():
    # Prepare: 1000 clients over 50 shards: clients 3 and 53 share a shard
    x3, _ = _client(3, num_clients=1000, min_samples=20, max_samples=20)
    x53, _ = _client(53, num_clients=1000, min_samples=20, max_samples=20)
    # Assert
    assert not torch.equal(x3, x53)


def test_eval_sample_matches_the_split_and_is_fixed():
    # Prepare
    _, labels = load_base()
    _, bank, query = split_indices(0)
    # Execute
    bank_x, bank_y, query_x, query_y = eval_sample(seed=0, size=SIZE, scale=StyleScale())
    again = eval_sample(seed=0, size=SIZE, scale=StyleScale())
    # Assert
    assert bank_x.shape == (len(bank), 1, SIZE, SIZE) and query_x.shape == (len(query), 1, SIZE, SIZE)
    np.testing.assert_array_equal(bank_y.numpy(), labels[bank])
    np.testing.assert_array_equal(query_y.numpy(), labels[query])
    assert torch.equal(bank_x, again[0]) and torch.equal(query_x, again[2])


def test_affine_theta_identity_and_quarter_turn_by_hand():
    # Prepare
    zero = torch.zeros(1)
    # Execute
    identity = affine_theta(zero, zero, zero, zero, zero, zero)
    zoomed = affine_theta(zero, zero, zero, zero, zero, zero, source_zoom=2.0)
    turned = affine_theta(torch.tensor([math.pi / 2]), zero, zero, zero,
                          torch.tensor([0.5]), zero)
    # Assert: inverse of R(90°) is [[0, 1], [-1, 0]]; shift = -inv @ (0.5, 0) = (0, 0.5)
    torch.testing.assert_close(identity, torch.tensor([[[1.0, 0, 0], [0, 1, 0]]]))
    torch.testing.assert_close(zoomed, torch.tensor([[[2.0, 0, 0], [0, 2, 0]]]))
    torch.testing.assert_close(turned, torch.tensor([[[0.0, 1, 0], [-1, 0, 0.5]]]), atol=1e-6, rtol=0)


def test_affine_theta_inverts_scale_and_shear_by_hand():
    # Prepare: forward M = diag(2, 2) @ [[1, 0.5], [0, 1]] scaled: M = [[2, 1], [0, 2]]
    zero = torch.zeros(1)
    # Execute
    theta = affine_theta(zero, torch.tensor([0.5]), torch.tensor([math.log(2.0)]), zero, zero, zero)
    # Assert: inv(M) = [[0.5, -0.25], [0, 0.5]]
    torch.testing.assert_close(theta, torch.tensor([[[0.5, -0.25, 0], [0, 0.5, 0]]]))


def test_warp_with_the_identity_keeps_the_image():
    # Prepare
    images = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    zero = torch.zeros(3)
    # Execute
    out = warp(images, affine_theta(zero, zero, zero, zero, zero, zero), None, 8)
    # Assert
    torch.testing.assert_close(out, images)


def test_stroke_is_blank_at_zero_full_ink_when_saturated_and_thicker_at_lower_threshold():
    # Prepare
    field = torch.linspace(0, 1, 11).view(1, 1, 1, 11).repeat(2, 1, 1, 1)
    threshold, ink = torch.tensor([0.2, 0.6]), torch.tensor([0.8, 0.8])
    # Execute
    out = stroke(field, threshold, ink)
    # Assert
    torch.testing.assert_close(out[:, ..., 0], torch.zeros(2, 1, 1))
    assert float(out.max()) <= 0.8 + 1e-6 and float(out[0, ..., -1]) > 0.79
    assert float(out[0].sum()) > float(out[1].sum())


def test_zero_style_strength_draws_no_geometric_variation():
    # Prepare
    rng = np.random.default_rng(0)
    # Execute
    style = digits.draw_styles(rng, 4, StyleScale(strength=0.0))
    # Assert
    for key in ("rotation", "shear", "log_scale", "log_aspect", "tx", "ty"):
        np.testing.assert_array_equal(style[key], np.zeros(4))
    assert style["elastic"].shape == (4, 2, 3, 3) and not style["elastic"].any()
    assert ((0.2 <= style["threshold"]) & (style["threshold"] <= 0.6)).all()

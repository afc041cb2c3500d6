"""Label-skew shards for any population: determinism, O(base set) memory, skew by kind."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from fedsim.data.partition import (MAX_SHARDS, MIN_SHARD_SIZE, PartitionError, client_base_indices,
                                   num_shards)

pytestmark = pytest.mark.timeout(60)

NUM_CLASSES = 10
# 10 classes × 60 samples, classes interleaved (label of index i is i % 10)
LABELS = np.arange(600, dtype=np.int64) % NUM_CLASSES


def _kind(kind: str, alpha: float = 0.5, classes_per_client: int = 2) -> SimpleNamespace:
    return SimpleNamespace(kind=kind, alpha=alpha, classes_per_client=classes_per_client)


def _entropy(labels: np.ndarray) -> float:
    p = np.bincount(labels, minlength=NUM_CLASSES) / len(labels)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def _mean_entropy(partitioning: SimpleNamespace, num_clients: int = 20, seed: int = 0) -> float:
    return float(np.mean([_entropy(LABELS[client_base_indices(LABELS, c, num_clients, partitioning, seed)])
                          for c in range(num_clients)]))


@pytest.mark.parametrize("num_clients, num_samples, expected", [
    (1000, 1797, MAX_SHARDS),  # case: a large population is capped at MAX_SHARDS
    (3, 1797, 3),  # case: few clients, one shard each
    (1000, 12, 2),  # case: a tiny base set gives at most n // MIN_SHARD_SIZE shards
    (5, 3, 1),  # case: fewer samples than MIN_SHARD_SIZE still gives one shard
])
def test_num_shards_table(num_clients, num_samples, expected):
    # Execute
    got = num_shards(num_clients, num_samples)
    # Assert
    assert got == expected


def test_num_shards_rejects_an_empty_population():
    # Execute / Assert
    with pytest.raises(PartitionError, match="at least 1"):
        num_shards(0, 100)


@pytest.mark.parametrize("kind", ["iid", "dirichlet", "pathological"])
def test_client_indices_are_a_pure_function_of_seed_and_client(kind):
    # Prepare
    part = _kind(kind)
    # Execute
    first = client_base_indices(LABELS, 3, 10, part, seed=0)
    again = client_base_indices(LABELS.copy(), 3, 10, _kind(kind), seed=0)
    other_client = client_base_indices(LABELS, 4, 10, part, seed=0)
    other_seed = client_base_indices(LABELS, 3, 10, part, seed=1)
    # Assert
    assert first.dtype == np.int64 and first.size > 0
    assert np.all(np.diff(first) > 0)  # sorted, no duplicates
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other_client)
    assert not np.array_equal(first, other_seed)


@pytest.mark.parametrize("kind", ["iid", "dirichlet", "pathological"])
def test_a_thousand_clients_share_max_shards_lazily(kind):
    # Prepare: 1000 clients over 600 base samples -> 50 shards, client c uses shard c % 50
    part = _kind(kind, alpha=0.5, classes_per_client=2)
    ids = [0, 1, 49, 50, 123, 500, 999]
    # Execute
    got = {c: client_base_indices(LABELS, c, 1000, part, seed=0) for c in ids}
    # Assert: no per-client copies, the cached shard itself comes back (read-only)
    assert got[0] is got[50] and got[49] is got[999]
    assert got[0] is client_base_indices(LABELS, 0, 1000, part, seed=0)
    assert not got[0].flags.writeable
    for idx in got.values():
        assert idx.size > 0 and 0 <= idx.min() and idx.max() < len(LABELS)
    assert not np.array_equal(got[0], got[1])


@pytest.mark.parametrize("kind", ["iid", "dirichlet", "pathological"])
def test_shards_are_disjoint_and_hold_each_base_sample_at_most_once(kind):
    # Prepare
    labels = LABELS
    parts = [client_base_indices(labels, c, 20, _kind(kind), seed=2) for c in range(20)]
    # Execute
    everything = np.concatenate(parts)
    # Assert: memory is O(base set) -- every base index lives in at most one shard
    assert len(np.unique(everything)) == len(everything) <= len(labels)
    if kind != "pathological":  # iid and dirichlet hand out the whole base set
        assert len(everything) == len(labels)


def test_iid_shards_are_balanced_and_cover_every_class():
    # Execute
    parts = [client_base_indices(LABELS, c, 10, None, seed=0) for c in range(10)]
    # Assert: None means iid; 600 samples / 10 shards = 60 each, all classes present
    assert [len(p) for p in parts] == [60] * 10
    for p in parts:
        assert len(np.unique(LABELS[p])) == NUM_CLASSES


def test_small_alpha_dirichlet_concentrates_labels_more_than_iid():
    # Execute: mean label entropy over 20 clients of 30 samples each (uniform: log 10 = 2.30)
    iid = _mean_entropy(_kind("iid"))
    skewed = _mean_entropy(_kind("dirichlet", alpha=0.1))
    mild = _mean_entropy(_kind("dirichlet", alpha=100.0))
    # Assert
    assert iid > 0.9 * np.log(NUM_CLASSES)  # 30 samples a shard: a little below log 10
    assert skewed < iid - 0.5
    assert skewed < mild


@pytest.mark.parametrize("k", [1, 2, 3])
def test_pathological_gives_each_client_k_classes(k):
    # Prepare
    part = _kind("pathological", classes_per_client=k)
    # Execute
    classes = [np.unique(LABELS[client_base_indices(LABELS, c, 20, part, seed=0)]) for c in range(20)]
    # Assert
    assert all(1 <= len(c) <= k for c in classes)
    assert max(len(c) for c in classes) == k


def test_client_id_outside_the_population_is_an_error():
    # Execute / Assert
    with pytest.raises(PartitionError, match="outside 0..9"):
        client_base_indices(LABELS, 10, 10, None, seed=0)
    with pytest.raises(PartitionError):
        client_base_indices(LABELS, -1, 10, None, seed=0)


def test_unknown_kind_is_an_error_naming_the_allowed_kinds():
    # Execute / Assert
    with pytest.raises(PartitionError, match="choose one of: iid, dirichlet, pathological"):
        client_base_indices(LABELS, 0, 4, _kind("shards"), seed=0)


def test_very_skewed_dirichlet_falls_back_to_fewer_non_empty_shards():
    # Prepare: 60 samples of 3 classes, 12 shards requested, alpha tiny -> some would be empty
    labels = np.arange(60, dtype=np.int64) % 3
    part = _kind("dirichlet", alpha=0.01)
    # Execute
    parts = [client_base_indices(labels, c, 12, part, seed=0, max_shards=12) for c in range(12)]
    # Assert: every client still gets a shard of at least MIN_SHARD_SIZE samples
    distinct = {id(p): p for p in parts}.values()
    assert all(len(p) >= MIN_SHARD_SIZE for p in parts)
    assert sum(len(p) for p in distinct) == len(labels)

"""Label-skew partitioning of a small base set for any number of clients.

The base labels become an in-memory ``datasets.Dataset`` split by a flwr-datasets
partitioner (``IidPartitioner``, ``DirichletPartitioner``, ``PathologicalPartitioner``) into
``S = min(num_clients, max_shards)`` *shards*; client ``c`` draws on shard ``c % S``. A small
bundled set cannot give 100,000 clients disjoint samples, so clients that share a shard share
its label distribution and base images, and differ by what the data module layers on top
(resampling, per-client writer style). Memory is O(base set), whatever the number of
clients: the shards are computed once per process (``functools.lru_cache``) and a client's
indices are looked up lazily.
"""

from __future__ import annotations

import hashlib
import warnings
from functools import lru_cache
from typing import Any

import numpy as np

MAX_SHARDS = 50
MIN_SHARD_SIZE = 5  # Dirichlet resamples until every shard has at least this many samples
_LABEL, _INDEX = "label", "base_index"


class PartitionError(ValueError):
    """The requested partitioning cannot be made from this base set."""


def num_shards(num_clients: int, num_samples: int, max_shards: int = MAX_SHARDS) -> int:
    """How many label-skewed shards the base set is split into."""
    if num_clients < 1:
        raise PartitionError(f"num_clients must be at least 1 (got {num_clients})")
    return max(1, min(num_clients, max_shards, num_samples // MIN_SHARD_SIZE))


def client_base_indices(labels: np.ndarray, client_id: int, num_clients: int,
                        partitioning: Any, seed: int, *, max_shards: int = MAX_SHARDS) -> np.ndarray:
    """Indices into ``labels`` that client ``client_id`` draws its samples from.

    Parameters
    ----------
    labels
        Integer class labels of the base set, shape ``(n,)``.
    client_id
        The client, ``0 <= client_id < num_clients``.
    num_clients
        Size of the registered population.
    partitioning
        Anything with ``kind`` (``"iid" | "dirichlet" | "pathological"``), ``alpha`` and
        ``classes_per_client`` (:class:`fedsim.config.PartitionConfig`); ``None`` means iid.
    seed
        Seeds the partitioner.
    max_shards
        Cap on the number of distinct shards.

    Returns
    -------
    np.ndarray
        Sorted, non-empty int64 indices (a view of the cached shard: do not modify).
    """
    if not 0 <= client_id < num_clients:
        raise PartitionError(f"client id {client_id} is outside 0..{num_clients - 1}")
    labels = np.ascontiguousarray(labels, dtype=np.int64)
    kind = getattr(partitioning, "kind", "iid")
    alpha = float(getattr(partitioning, "alpha", 1.0))
    k = int(getattr(partitioning, "classes_per_client", 1))
    shards = shard_indices(_labels_key(labels), kind, alpha, k,
                           num_shards(num_clients, len(labels), max_shards), seed)
    return shards[client_id % len(shards)]


_LABELS_BY_KEY: dict[str, np.ndarray] = {}


def _labels_key(labels: np.ndarray) -> str:
    key = hashlib.sha1(labels.tobytes()).hexdigest()
    _LABELS_BY_KEY.setdefault(key, labels.copy())
    return key


@lru_cache(maxsize=32)
def shard_indices(labels_key: str, kind: str, alpha: float, classes_per_client: int,
                  shards: int, seed: int) -> tuple[np.ndarray, ...]:
    """All shards' sorted base indices, made once per process by a flwr-datasets partitioner.

    A very skewed Dirichlet draw (small ``alpha``, many shards) can leave shards empty: the
    partitioner then gives up after its own retries, and the shard count is halved until
    every shard holds at least ``MIN_SHARD_SIZE`` samples (at worst one shard, the whole set).
    """
    labels = _LABELS_BY_KEY[labels_key]
    while True:
        try:
            return _split(labels, kind, alpha, classes_per_client, shards, seed)
        except (PartitionError, ValueError) as err:
            if shards == 1 or "unknown partitioning kind" in str(err):
                raise PartitionError(f"{kind} partitioning failed: {err}") from None
            shards = max(1, shards // 2)


def _split(labels: np.ndarray, kind: str, alpha: float, classes_per_client: int,
           shards: int, seed: int) -> tuple[np.ndarray, ...]:
    from datasets import Dataset

    order = np.arange(len(labels), dtype=np.int64)
    if kind == "iid":  # IidPartitioner cuts contiguous shards and takes no seed: shuffle first
        order = np.random.default_rng(seed).permutation(order)
    table = Dataset.from_dict({_LABEL: labels[order], _INDEX: order})
    partitioner = _partitioner(kind, alpha, classes_per_client, shards, seed, len(np.unique(labels)))
    partitioner.dataset = table
    out = []
    with warnings.catch_warnings():  # the Dirichlet partitioner warns on every retry
        warnings.simplefilter("ignore")
        for shard in range(shards):
            idx = np.sort(np.asarray(partitioner.load_partition(shard)[_INDEX], dtype=np.int64))
            if idx.size == 0:
                raise PartitionError(f"{kind} partitioning left shard {shard} of {shards} empty")
            idx.setflags(write=False)
            out.append(idx)
    return tuple(out)


def _partitioner(kind: str, alpha: float, k: int, shards: int, seed: int, num_classes: int) -> Any:
    from flwr_datasets.partitioner import (
        DirichletPartitioner,
        IidPartitioner,
        PathologicalPartitioner,
    )

    if kind == "iid":
        return IidPartitioner(num_partitions=shards)
    if kind == "dirichlet":
        return DirichletPartitioner(num_partitions=shards, partition_by=_LABEL, alpha=alpha,
                                    min_partition_size=MIN_SHARD_SIZE, self_balancing=True,
                                    shuffle=True, seed=seed)
    if kind == "pathological":  # "first-deterministic" as in the paper (arXiv 2102.02079)
        return PathologicalPartitioner(num_partitions=shards, partition_by=_LABEL,
                                       num_classes_per_partition=min(k, num_classes),
                                       class_assignment_mode="first-deterministic",
                                       shuffle=True, seed=seed)
    raise PartitionError(f"unknown partitioning kind {kind!r}; choose one of: iid, dirichlet, pathological")

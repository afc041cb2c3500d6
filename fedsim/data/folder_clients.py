"""Clients, held-out data and proxy data drawn from a real data folder (``--data-dir``).

A reader indexes the folder (names and labels, no samples: e.g.
:func:`fedsim.data.folders.scan_image_folder`) and loads the samples of some item ids;
this module decides who holds what, as a pure function of (seed, client id), for any
modality whose index has ``labels``, ``train_ids``, ``eval_ids``, ``root``, ``describe()``
and optionally ``natural_ids``:

* **Partitioning.** ``partitioning.kind: natural`` gives client ``c`` the items of natural id
  ``c mod G`` (writer/user ids parsed from file names; G ids). The label-skew kinds (iid,
  dirichlet, pathological) split the training items' labels with the flwr-datasets
  partitioners of :mod:`fedsim.data.partition`, into at most ``MAX_SHARDS`` shards; client
  ``c`` draws on shard ``c mod S``.
* **Sampling.** A client holds ``U(min_samples, max_samples)`` items of its shard or group,
  drawn without replacement where it is big enough; it reads only those files, when it is
  sampled. 100,000 registered clients cost the index and nothing else.
* **Held-out data.** The index's held-out items (the folder's ``test/`` split, or its seeded
  split) never reach a client; a seeded half of them (at most ``eval_samples``) is the
  kNN/probe bank, the rest (at most ``eval_samples``) the query set.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from fedsim.data.folders import DataFolderError, natural_id_groups
from fedsim.data.partition import client_base_indices

_STREAM_CLIENT, _STREAM_EVAL, _STREAM_PROXY = 0xF01, 0xF02, 0xF03
PROXY_ITEMS = 512  # labelled training items Hyper-Search draws its batches from


Scan = Callable[..., Any]  # scan(path, *, seed) -> index
Load = Callable[[Any, np.ndarray], torch.Tensor]  # load(index, item ids) -> samples along dim 0


@lru_cache(maxsize=4)
def cached_index(scan: Scan, path: str, seed: int) -> Any:
    """The folder's index, scanned once per process."""
    return scan(path, seed=seed)


@lru_cache(maxsize=4)
def _groups(index: Any) -> tuple[np.ndarray, ...]:
    return tuple(natural_id_groups(index))


class FolderClients:
    """Who holds which items of an indexed folder, and the samples of those items.

    ``scan`` indexes the folder (cached per process), ``load(index, item_ids)`` reads items.
    """

    def __init__(self, path: str, *, scan: Scan, load: Load, seed: int, num_clients: int,
                 partitioning: Any, min_samples: int, max_samples: int, eval_samples: int) -> None:
        self.path, self.seed, self.num_clients = path, seed, num_clients
        self.scan, self.load = scan, load
        self.partitioning = partitioning
        self.eval_samples = eval_samples
        self.min_samples, self.max_samples = min_samples, max_samples

    @property
    def index(self) -> Any:
        """The scanned folder (raises :class:`DataFolderError` for a malformed one)."""
        return cached_index(self.scan, self.path, self.seed)

    def client_items(self, client_id: int) -> np.ndarray:
        """Item ids of client ``client_id``; a pure function of (seed, client id)."""
        index = self.index
        if getattr(self.partitioning, "kind", "iid") == "natural":
            groups = _groups(index)
            pool = groups[client_id % len(groups)]
        else:
            train = index.train_ids
            pool = train[client_base_indices(index.labels[train], client_id, self.num_clients,
                                             self.partitioning, self.seed)]
        rng = np.random.default_rng([self.seed, _STREAM_CLIENT, client_id])
        n = int(rng.integers(self.min_samples, self.max_samples + 1))
        return np.sort(rng.choice(pool, size=n, replace=n > len(pool)))

    def client_samples(self, client_id: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Client ``client_id``'s samples and labels ``(n,)``."""
        items = self.client_items(client_id)
        return self.load(self.index, items), torch.as_tensor(self.index.labels[items])

    def eval_split(self) -> tuple[np.ndarray, np.ndarray]:
        """Held-out (bank, query) item ids: a seeded halving of the held-out items, capped."""
        held = self.index.eval_ids
        order = np.random.default_rng([self.seed, _STREAM_EVAL]).permutation(held)
        half = len(order) // 2
        if half == 0:
            raise DataFolderError(f"data folder {self.index.root} holds {len(held)} held-out image(s); "
                                  "evaluation needs at least 2 (a bank and a query)")
        return np.sort(order[:half][: self.eval_samples]), np.sort(order[half:][: self.eval_samples])

    def eval_tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(bank_x, bank_y, query_x, query_y)`` of the held-out items."""
        out = []
        for items in self.eval_split():
            out += [self.load(self.index, items), torch.as_tensor(self.index.labels[items])]
        return tuple(out)  # type: ignore[return-value]

    def proxy_batches(self, batch_size: int, seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Endless labelled batches from a fixed seeded subset of the training items."""
        train = self.index.train_ids
        rng = np.random.default_rng([self.seed, _STREAM_PROXY])
        items = np.sort(rng.choice(train, size=min(PROXY_ITEMS, len(train)), replace=False))
        x, y = self.load(self.index, items), torch.as_tensor(self.index.labels[items])
        gen = torch.Generator().manual_seed(seed)
        while True:
            idx = torch.randint(len(y), (batch_size,), generator=gen)
            yield x[idx], y[idx]

    def describe(self) -> dict[str, Any]:
        """The index's record plus how clients and evaluation draw on it, after every file's
        header was checked (the pre-check before start-up and a new run's ``data.json``)."""
        self.index.check_files()
        bank, query = self.eval_split()
        return {**self.index.describe(), "partitioning": getattr(self.partitioning, "kind", "iid"),
                "eval_bank": int(len(bank)), "eval_query": int(len(query))}

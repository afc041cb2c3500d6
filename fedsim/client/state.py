"""Per-client persistent state (e.g. FedVSSL heads), on disk, keyed by client id.

Any worker can train any client, and 100,000 registered clients cost nothing until they
are sampled: a client's tensors live in their own file, read when it is sampled and
written back after it trains. Each file keeps the two latest versions tagged with the
round that wrote them, so a run resumed from round r reads the state as it was after
round r even if an interrupted round r+1 had already overwritten some clients.
"""

from __future__ import annotations

import io
from pathlib import Path

import torch

from fedsim.atomic import atomic_write_bytes

Tensors = dict[str, torch.Tensor]


class ClientStateStore:
    """A folder of ``<shard>/<client id>.pt`` files, written atomically."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _path(self, client_id: int) -> Path:
        return self.root / f"{client_id // 1000:05d}" / f"{client_id}.pt"

    def _versions(self, client_id: int) -> list[tuple[int, Tensors]]:
        path = self._path(client_id)
        if not path.exists():
            return []
        return torch.load(path, weights_only=True)["versions"]

    def get(self, client_id: int, before_round: int) -> Tensors | None:
        """The client's latest state written by a round earlier than ``before_round``."""
        for rnd, tensors in self._versions(client_id):
            if rnd < before_round:
                return tensors
        return None

    def put(self, client_id: int, server_round: int, tensors: Tensors) -> None:
        """Save the state the client ended ``server_round`` with (keeps one older version)."""
        older = [(r, t) for r, t in self._versions(client_id) if r < server_round][:1]
        versions = [(server_round, {k: v.detach().clone() for k, v in tensors.items()}), *older]
        path = self._path(client_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        torch.save({"versions": versions}, buf)
        atomic_write_bytes(path, lambda fh: fh.write(buf.getvalue()))

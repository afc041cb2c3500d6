"""Shared test helpers: one factory for client updates, tiny models as state dicts."""

from __future__ import annotations

import torch

from fedsim.strategies.base import ClientUpdate


def make_update(client_id: int, n: int = 10, loss: float = 1.0, **arrays: object) -> ClientUpdate:
    """A client update whose tensors are given as keyword lists, e.g. ``w=[1.0, 2.0]``."""
    tensors = {k.replace("__", "."): torch.as_tensor(v) for k, v in arrays.items()}
    return ClientUpdate(client_id=client_id, arrays=tensors, num_examples=n, metrics={"loss": loss})

"""Fault injection: corrupt chosen clients' replies to study (and test) robustness.

``faults: {nan: [3], exception: [5], ...}`` in the experiment makes those clients
misbehave after training, in the same way whatever the engine. The server (or a cohort
worker) must then reject or count them; nothing here is active unless configured.
"""

from __future__ import annotations

import time

import torch

from fedsim.strategies.base import ClientUpdate


class InjectedClientError(RuntimeError):
    """The exception an ``exception`` fault raises inside the client."""


def fault_of(faults: dict[str, list[int]], client_id: int) -> str | None:
    """The fault configured for ``client_id``, if any."""
    for kind, ids in faults.items():
        if client_id in ids:
            return kind
    return None


def _first_float(update: ClientUpdate) -> str:
    return next(k for k, v in update.arrays.items() if v.is_floating_point())


def apply_fault(kind: str, update: ClientUpdate, *, timeout: float | None) -> ClientUpdate:
    """Return ``update`` corrupted as ``kind`` says (or raise / stall for the run-time faults)."""
    arrays = dict(update.arrays)
    key = _first_float(update)
    if kind == "nan":
        arrays[key] = torch.full_like(arrays[key], float("nan"))
    elif kind == "inf":
        arrays[key] = torch.full_like(arrays[key], float("inf"))
    elif kind == "wrong-shape":
        arrays[key] = torch.zeros(arrays[key].numel() + 1)
    elif kind == "wrong-dtype":
        arrays[key] = arrays[key].to(torch.float64)
    elif kind == "missing-tensor":
        del arrays[key]
    elif kind == "no-num-examples":
        return ClientUpdate(update.client_id, arrays, None, update.metrics)  # type: ignore[arg-type]
    elif kind == "negative-num-examples":
        return ClientUpdate(update.client_id, arrays, -update.num_examples, update.metrics)
    elif kind == "exception":
        raise InjectedClientError(f"injected failure in client {update.client_id}")
    elif kind == "timeout":
        if timeout is None:
            raise ValueError("a 'timeout' fault needs federation.round_timeout")
        time.sleep(timeout + 0.5)
    else:
        raise ValueError(f"unknown fault {kind!r}")
    return ClientUpdate(update.client_id, arrays, update.num_examples, update.metrics)

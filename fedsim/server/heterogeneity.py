"""Simulated system heterogeneity: which sampled clients drop out or miss the deadline.

Pure functions of (seed, round, client id), decided before a round is sent so that
stragglers and dropouts cost no training time and a run stays reproducible.
"""

from __future__ import annotations

import math

from fedsim.config import HeterogeneityConfig
from fedsim.seeding import numpy_generator

SPEED_STREAM = 0x5BEED
DROPOUT_STREAM = 0xD209


def speed_factor(seed: int, client_id: int, sigma: float) -> float:
    """Client ``client_id``'s fixed slowness, drawn from LogNormal(0, sigma)."""
    if sigma == 0.0:
        return 1.0
    return float(math.exp(sigma * numpy_generator(seed, SPEED_STREAM, client_id).standard_normal()))


def unavailable(het: HeterogeneityConfig, *, seed: int, server_round: int, client_ids: list[int],
                local_epochs: int) -> dict[int, str]:
    """``{client id: "dropout" | "straggler"}`` for the sampled clients that will not report."""
    out: dict[int, str] = {}
    for cid in client_ids:
        if het.dropout > 0 and numpy_generator(seed, DROPOUT_STREAM, server_round, cid).random() < het.dropout:
            out[cid] = "dropout"
        elif het.deadline is not None and (
                local_epochs * het.epoch_seconds * speed_factor(seed, cid, het.speed_sigma) > het.deadline):
            out[cid] = "straggler"
    return out

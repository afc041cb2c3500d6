"""Derived seeds: every random choice is a pure function of (seed, round[, client id]).

Nothing in fedsim uses global random state for its own choices; the generators here are
seeded from a tuple of integers through numpy's ``SeedSequence`` (good mixing, unlike
``hash`` of a tuple, and stable across processes and Python versions).
"""

from __future__ import annotations

import random

import numpy as np
import torch


def derive_seed(*parts: int) -> int:
    """A 63-bit seed mixed from integer ``parts`` (e.g. seed, round, client id)."""
    state = np.random.SeedSequence([int(p) for p in parts]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


def torch_generator(*parts: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded by ``derive_seed(*parts)``."""
    return torch.Generator().manual_seed(derive_seed(*parts))


def numpy_generator(*parts: int) -> np.random.Generator:
    """A numpy ``Generator`` seeded by ``derive_seed(*parts)``."""
    return np.random.default_rng(derive_seed(*parts))


def sample_clients(seed: int, server_round: int, num_clients: int, k: int) -> list[int]:
    """The ``k`` client ids of ``server_round``, sorted; O(k) memory for any population."""
    if not 1 <= k <= num_clients:
        raise ValueError(f"cannot sample {k} of {num_clients} clients")
    rng = random.Random(derive_seed(seed, server_round, 0x5A3))
    return sorted(rng.sample(range(num_clients), k))

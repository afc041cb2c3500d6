"""Tiny random models and client updates shared by the strategy tests (not a test module)."""

from __future__ import annotations

import torch

from fedsim.strategies.base import Arrays, ClientUpdate, Strategy

# A miniature backbone + head, with BatchNorm statistics, an integer buffer and a 0-d float.
SHAPES: dict[str, tuple[int, ...]] = {
    "backbone.conv.weight": (3, 2, 2),
    "backbone.conv.bias": (3,),
    "backbone.bn.running_mean": (3,),
    "backbone.bn.running_var": (3,),
    "backbone.bn.num_batches_tracked": (),
    "backbone.scale": (),
    "head.weight": (2, 3),
}


def random_global(seed: int) -> Arrays:
    """A random global model with the ``SHAPES`` above (``num_batches_tracked`` = 10)."""
    g = torch.Generator().manual_seed(seed)
    out: Arrays = {}
    for name, shape in SHAPES.items():
        if name.endswith("num_batches_tracked"):
            out[name] = torch.tensor(10, dtype=torch.int64)
        elif name.endswith("running_var"):
            out[name] = torch.rand(shape, generator=g) + 0.5
        else:
            out[name] = torch.randn(shape, generator=g)
    return out


def random_updates(previous: Arrays, num_clients: int, seed: int, keys: list[str] | None = None,
                   ) -> list[ClientUpdate]:
    """Clients that moved away from ``previous`` (some far: negative cosines happen)."""
    g = torch.Generator().manual_seed(seed + 1)
    keys = list(previous) if keys is None else keys
    updates = []
    for k in range(num_clients):
        arrays: Arrays = {}
        for name in keys:
            ref = previous[name]
            if ref.is_floating_point():
                step = torch.randn(ref.shape, generator=g) * (0.2 if k % 2 else 2.0)
                arrays[name] = ref + step
            else:
                arrays[name] = ref + int(torch.randint(1, 20, (), generator=g))
        n = int(torch.randint(1, 50, (), generator=g))
        loss = float(torch.rand((), generator=g)) * 3 + 0.1
        updates.append(ClientUpdate(client_id=100 + k, arrays=arrays, num_examples=n, metrics={"loss": loss}))
    return updates


def run_round(strategy: Strategy, previous: Arrays, updates: list[ClientUpdate], server_round: int, *,
              aggregation: int | None = None) -> Arrays:
    """Fold ``updates`` into one accumulator (aggregation index default: ``server_round``) and finalize."""
    acc = strategy.new_accumulator(previous, server_round, aggregation=aggregation)
    for u in updates:
        acc.accumulate(u)
    return acc.finalize()

"""Pooled pre-training for the learning tests: several clients' data in one SGD loop, in-process.

A task "learns" when its objective, trained on a few clients' data, lifts kNN above the
random-init encoder (and, where the task has one, a raw-input baseline). Federation is
tested elsewhere; these tests check the objective itself at a budget a test can afford.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from fedsim.tasks.base import Task


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread (as the calibrations ran), then restore the caller's count, so
    the later tests of the same pytest(-xdist) worker keep their threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def pretrain_pooled(task: Task, key: str, *, steps: int, clients: int = 8, batch_size: int = 32,
                    lr: float = 0.05, momentum: float = 0.9, weight_decay: float = 0.0,
                    seed: int = 0) -> tuple[dict[str, float], dict[str, float]]:
    """The task's evaluation of a fresh model, then of the same model after ``steps`` SGD steps
    of ``task.loss`` on batches drawn (with replacement, from one generator seeded ``seed``)
    from the pooled ``key`` samples of clients ``0..clients-1``. The task's
    ``start_local_training`` runs once before the first step, as for one long local training
    (BYOL builds its momentum target there)."""
    samples = torch.cat([task.client_dataset(c)[key] for c in range(clients)])
    model = task.build_model()
    before = task.evaluate(model)
    task.start_local_training(model)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        loss = task.loss(model, {key: samples[torch.randint(0, len(samples), (batch_size,), generator=g)]}, g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return before, task.evaluate(model.eval())

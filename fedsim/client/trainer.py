"""Local training of one virtual client, shared by both engines and by deployment.

``train_client`` is a pure function of (global weights, client id, round, seed): the data
comes from the task (its client dataset batches itself), the batch order and augmentations
from a generator seeded by (seed, round, client id), so the flower engine, the cohort engine
and a resumed run train every client identically.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from fedsim.optim import build_optimizer
from fedsim.seeding import torch_generator
from fedsim.strategies.base import Arrays, ClientUpdate
from fedsim.tasks.base import Task


def load_global(model: nn.Module, global_arrays: Arrays, keys: list[str] | None = None, *,
                state: Arrays | None = None) -> None:
    """Copy the global tensors (all, or only ``keys``) into ``model`` in place.

    ``state`` is ``model.state_dict()`` when the caller already has it (it shares storage
    with the model, so it stays valid while the model is trained in place).
    """
    state = model.state_dict() if state is None else state
    with torch.no_grad():
        for name in keys if keys is not None else global_arrays.keys():
            state[name].copy_(global_arrays[name])


class PlainSGD:
    """``torch.optim.SGD`` without momentum and weight decay, minus its per-call overhead.

    Each step does ``p.add_(p.grad, alpha=-lr)`` for every parameter with a gradient, which
    is exactly what ``torch.optim.SGD`` does then (its single-tensor path, the default on
    CPU), so results are bit-identical. It skips what costs as much as the update itself
    for a small model trained for one step: building the optimizer per client, its
    param-group bookkeeping, and the profiler/compile hooks around every ``step`` call.
    """

    def __init__(self, model: nn.Module, lr: float) -> None:
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.lr = lr

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        with_grad = [p for p in self.params if p.grad is not None]
        if with_grad:
            torch._foreach_add_(with_grad, [p.grad for p in with_grad], alpha=-self.lr)


def train_client(task: Task, model: nn.Module, global_arrays: Arrays, *, client_id: int,
                 server_round: int, seed: int, local_epochs: int, batch_size: int, lr: float,
                 momentum: float = 0.0, weight_decay: float = 0.0, proximal_mu: float = 0.0,
                 load_keys: list[str] | None = None, optimizer: str = "sgd",
                 device: torch.device | None = None, data_id: int | None = None) -> ClientUpdate:
    """Train ``model`` (resident, reused across clients) as client ``client_id``.

    Returns the client's weights (references into ``model``'s state: fold or serialise them
    before the next client trains), its number of examples and mean training loss.
    ``optimizer`` is ``"sgd"`` or ``"repopt-sgd"`` (gradient masks read from the model's
    scale buffers, which arrive with the global weights: :mod:`fedsim.optim.repopt`).
    ``device``: where ``model`` lives; each batch is moved there (the task builds batches on
    the CPU). ``data_id``: whose data to train on when it is not ``client_id``'s (a deployed
    node trains all of its own folder, the task's only client, under its own identity).
    """
    state = model.state_dict()  # once per client: the same tensors are loaded and returned
    load_global(model, global_arrays, load_keys, state=state)
    task.start_local_training(model)  # e.g. BYOL rebuilds its target network from these weights
    data = task.client_dataset(client_id if data_id is None else data_id)
    gen = torch_generator(seed, server_round, client_id)
    if optimizer == "sgd" and momentum == 0 and weight_decay == 0:
        opt: PlainSGD | torch.optim.Optimizer = PlainSGD(model, lr)
    else:
        opt = build_optimizer(optimizer, model, lr=lr, momentum=momentum, weight_decay=weight_decay)
    anchor = ([p.detach().clone() for p in model.parameters()] if proximal_mu > 0 else None)
    model.train()
    total, steps = 0.0, 0
    for _ in range(local_epochs):
        for batch in data.batches(gen, batch_size):
            if device is not None and device.type != "cpu":
                batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            loss = task.loss(model, batch, gen)
            total += float(loss.detach())
            if anchor is not None:  # FedProx (Li et al., arXiv 1812.06127): mu/2 ||w - w_g||^2
                loss = loss + proximal_mu / 2 * sum(
                    (p - a).pow(2).sum() for p, a in zip(model.parameters(), anchor))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
    mean_loss = total / steps if steps else math.nan
    return ClientUpdate(client_id=client_id, arrays=state, num_examples=len(data),
                        metrics={"loss": mean_loss})

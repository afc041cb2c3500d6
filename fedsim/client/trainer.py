"""Local training of one virtual client, shared by both engines and by deployment.

``train_client`` is a pure function of (global weights, client id, round context, the
strategy's client hooks): the data comes from the task (its client dataset batches itself),
the batch order and augmentations from a generator seeded by (seed, round, client id), so the
flower engine, the cohort engine, a deployed node and a resumed run train every client
identically. What a strategy changes on the client (FedProx's proximal term, FedVSSL's
partial load, a client optimiser) comes from its hooks, never from this module.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from fedsim.records import RoundContext
from fedsim.seeding import torch_generator
from fedsim.strategies.base import Arrays, ClientUpdate
from fedsim.strategies.hooks import ClientHooks
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


def train_client(task: Task, model: nn.Module, global_arrays: Arrays, ctx: RoundContext, hooks: ClientHooks, *,
                 client_id: int, device: torch.device | None = None, data_id: int | None = None) -> ClientUpdate:
    """Train ``model`` (resident, reused across clients) as client ``client_id`` of round ``ctx``.

    Returns the client's weights (references into ``model``'s state: fold or serialise them
    before the next client trains), its number of examples and mean training loss (of the
    task's loss alone). The strategy's ``hooks`` say which global tensors to load, which
    optimiser to build and what to add to the loss. ``device``: where ``model`` lives; each
    batch is moved there (the task builds batches on the CPU). ``data_id``: whose data to
    train on when it is not ``client_id``'s (a deployed node trains all of its own folder,
    the task's only client, under its own identity).
    """
    state = model.state_dict()  # once per client: the same tensors are loaded and returned
    load_global(model, global_arrays, hooks.load_keys(list(global_arrays)), state=state)
    task.start_local_training(model)  # e.g. BYOL rebuilds its target network from these weights
    data = task.client_dataset(client_id if data_id is None else data_id)
    gen = torch_generator(ctx.seed, ctx.server_round, client_id)
    _seed_global_rng(gen, device)
    opt = hooks.optimizer(model, ctx)
    term = hooks.loss_term(model, ctx)
    model.train()
    total, steps = 0.0, 0
    for _ in range(ctx.local_epochs):
        for batch in data.batches(gen, ctx.batch_size):
            if device is not None and device.type != "cpu":
                batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            loss = task.loss(model, batch, gen)
            total += float(loss.detach())
            if term is not None:
                loss = loss + term(model)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
    mean_loss = total / steps if steps else math.nan
    return ClientUpdate(client_id=client_id, arrays=state, num_examples=len(data),
                        metrics={"loss": mean_loss})


def _seed_global_rng(gen: torch.Generator, device: torch.device | None) -> None:
    """Seed torch's global generator from the client's own seed.

    Tasks draw views and crops from ``gen``, but modules such as ``nn.Dropout`` draw from the
    global generator, whose state in a worker depends on which clients it trained before:
    without this a model with dropout (the clip-order head) trained differently from run to
    run. Seeding costs about a microsecond; saving and restoring the state around training
    (``torch.random.fork_rng``) costs ~150 µs, a tenth of a small model's client update,
    and nothing in fedsim reads the global generator for its own choices.
    """
    seed = (gen.initial_seed() + 0x9E3779B9) % (1 << 63)
    if device is not None and device.type == "cuda":
        torch.manual_seed(seed)  # every device's generator
    else:
        torch.default_generator.manual_seed(seed)


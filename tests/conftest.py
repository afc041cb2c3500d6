"""Shared test helpers: one factory for client updates, tiny models as state dicts."""

from __future__ import annotations

import torch

from fedsim.strategies.base import ClientUpdate


def make_update(client_id: int, n: int = 10, loss: float = 1.0, **arrays: object) -> ClientUpdate:
    """A client update whose tensors are given as keyword lists, e.g. ``w=[1.0, 2.0]``."""
    tensors = {k.replace("__", "."): torch.as_tensor(v) for k, v in arrays.items()}
    return ClientUpdate(client_id=client_id, arrays=tensors, num_examples=n, metrics={"loss": loss})


def resident_of(exp):
    """The ClientApp's resident task/model/strategy for ``exp``, as a worker builds it from the
    run record (with the experiment's data folder as the node's own)."""
    from fedsim.client.app import Resident
    from fedsim.records import RunSpec

    return Resident(RunSpec.from_experiment(exp), data_dir=exp.task.data_dir)


def round_of(exp, server_round: int, client_ids=(), reply: str = "sums", aggregation: int | None = None):
    """The round record the server sends for ``exp``'s round ``server_round``."""
    from fedsim.factory import build_strategy
    from fedsim.records import RoundSpec

    fed = exp.federation
    mu = build_strategy(exp.strategy.name, exp.strategy.params, task=exp.task.name, seed=exp.seed).proximal_mu()
    return RoundSpec(server_round=server_round, aggregation=aggregation or server_round, client_ids=list(client_ids),
                     reply=reply, lr=fed.round_lr(server_round), local_epochs=fed.local_epochs,
                     batch_size=fed.batch_size, optimizer=fed.optimizer, momentum=fed.momentum,
                     weight_decay=fed.weight_decay, proximal_mu=mu, round_timeout=fed.round_timeout)


def train_message(exp, global_arrays, client_ids, reply: str, server_round: int = 1, *,
                  created_at: float | None = None, ttl: float = 600.0):
    """A train message as the round loop sends it (arrays, run and round records)."""
    import time

    from flwr.app import ArrayRecord, ConfigRecord, MessageType, Metadata, RecordDict
    from flwr.app.message import make_message

    from fedsim import records as R
    from fedsim.records import RunSpec

    metadata = Metadata(run_id=1, message_id="m", src_node_id=0, dst_node_id=1, reply_to_message_id="",
                        group_id=str(server_round), created_at=time.time() if created_at is None else created_at,
                        ttl=ttl, message_type=MessageType.TRAIN)
    content = RecordDict({
        R.ARRAYS: ArrayRecord(global_arrays), R.RUN: ConfigRecord(RunSpec.from_experiment(exp).to_record()),
        R.ROUND: ConfigRecord(round_of(exp, server_round, client_ids, reply).to_record())})
    return make_message(metadata=metadata, content=content)

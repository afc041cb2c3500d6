"""The Flower ClientApp: one handler for both engines and for real edge deployment.

A train message carries the global weights, the round, the resolved experiment (JSON) and
the ids of the virtual clients to train:

* ``reply = "weights"`` (engine ``flower``, deployment): exactly one client; the reply is
  its weights and ``num-examples``, the standard Flower shape.
* ``reply = "sums"`` (engine ``cohort``): a list of clients trained one after another on
  the resident model; each update is validated and folded into the strategy's accumulator
  and only the partial sums go back.

Model, task and strategy are built once per process and kept resident (``_resident``).
"""

from __future__ import annotations

import json
import time
import traceback
from collections import Counter
from collections.abc import Callable
from functools import lru_cache, wraps
from typing import Any

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Error, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.constant import ErrorCode

from fedsim import records as R
from fedsim.client.faults import apply_fault, fault_of
from fedsim.client.state import ClientStateStore
from fedsim.client.trainer import load_global, train_client
from fedsim.config import ExperimentConfig
from fedsim.strategies.base import Arrays, ClientUpdate
from fedsim.strategies.validation import check_update

REPLY_WEIGHTS = "weights"
REPLY_SUMS = "sums"
REPLY = "reply"
STATE_DIR = "state-dir"
PARTITION_ID = "partition-id"

app = ClientApp()


class Resident:
    """What a worker process keeps between messages: the experiment's task, model, strategy."""

    def __init__(self, exp: ExperimentConfig) -> None:
        torch.set_num_threads(1)
        self.exp = exp
        self.task = exp.build_task()
        self.model = self.task.build_model()
        self.strategy = exp.build_strategy()

    def train(self, global_arrays: Arrays, client_id: int, server_round: int,
              store: ClientStateStore | None) -> ClientUpdate:
        """Train one virtual client from ``global_arrays``.

        Tensors the strategy does not let clients load (e.g. FedVSSL's head) are the
        client's own: restored from ``store`` (the global's value on first participation)
        and saved back after training.
        """
        fed = self.exp.federation
        keys = list(global_arrays)
        load_keys = self.strategy.load_keys(keys)
        loaded = set(load_keys)
        own_keys = [k for k in keys if k not in loaded]
        if own_keys:
            if store is None:
                raise ValueError(f"strategy {self.exp.strategy.name!r} keeps per-client state "
                                 "but no client state directory was given")
            own = store.get(client_id, before_round=server_round) or {k: global_arrays[k] for k in own_keys}
            load_global(self.model, own)
        update = train_client(
            self.task, self.model, global_arrays, client_id=client_id, server_round=server_round,
            seed=self.exp.seed, local_epochs=fed.local_epochs, batch_size=fed.batch_size,
            lr=fed.lr, momentum=fed.momentum, weight_decay=fed.weight_decay,
            proximal_mu=self.strategy.proximal_mu(), load_keys=load_keys, optimizer=fed.optimizer)
        if own_keys:
            assert store is not None
            store.put(client_id, server_round, {k: update.arrays[k] for k in own_keys})
        sent = self.strategy.sent_keys(keys)
        if len(sent) != len(keys):
            update.arrays = {k: update.arrays[k] for k in sent}
        fault = fault_of(self.exp.faults, client_id) if self.exp.faults else None
        if fault is not None:
            update = apply_fault(fault, update, timeout=fed.round_timeout)
        return update


@lru_cache(maxsize=2)
def _resident(experiment_json: str) -> Resident:
    return Resident(ExperimentConfig(**json.loads(experiment_json)))


def _client_ids(config: Any, context: Context) -> list[int]:
    ids = config.get(R.CLIENT_IDS)
    if ids is not None:
        return [int(i) for i in ids]
    return [int(context.node_config[PARTITION_ID])]  # a deployed SuperNode trains its own data


def aggregation_index(config: Any) -> int:
    """The message's aggregation index (1 + aggregations the server completed before this
    round; strategies count warm-up and SWA by it); the server round for senders without it."""
    return int(config.get(R.AGGREGATION, config[R.SERVER_ROUND]))


def describe_exception(error: BaseException) -> str:
    """``"Type: message"``, then the traceback: the text a failed client sends back."""
    return f"{type(error).__name__}: {error}\n" + "".join(traceback.format_exception(error))


Handler = Callable[[Message, Context], Message]


def replying_errors(handler: Handler) -> Handler:
    """Turn an exception in ``handler`` into an error reply naming its type and message (with
    the traceback after the first line). Flower's own path logs ~40 lines per failing client
    and passes on only the message."""

    @wraps(handler)
    def wrapped(msg: Message, context: Context) -> Message:
        try:
            return handler(msg, context)
        except Exception as e:
            error = Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=describe_exception(e))
            return Message(error, reply_to=msg)

    return wrapped


def expires_at(msg: Message) -> float:
    """When the server stops waiting for ``msg``'s reply (``time.time()``): the server sets the
    message's TTL to the round's time budget."""
    return msg.metadata.created_at + msg.metadata.ttl


@app.query()
@replying_errors
def query(msg: Message, context: Context) -> Message:
    """Readiness: build the experiment's task, model and strategy (kept resident), then answer."""
    config = msg.content[R.CONFIG]
    if R.EXPERIMENT in config:
        _resident(str(config[R.EXPERIMENT]))
    return Message(RecordDict({R.METRICS: MetricRecord({"ready": 1})}), reply_to=msg)


@app.train()
@replying_errors
def train(msg: Message, context: Context) -> Message:
    """Train the requested virtual clients and reply with weights or partial sums."""
    deadline = expires_at(msg)
    if time.time() >= deadline:  # queued behind a round that ran out of time: skip, Flower drops it
        return Message(Error(code=ErrorCode.MESSAGE_UNAVAILABLE, reason="the round's time was up "
                             "before training started"), reply_to=msg)
    config = msg.content[R.CONFIG]
    resident = _resident(str(config[R.EXPERIMENT]))
    server_round = int(config[R.SERVER_ROUND])
    global_arrays = msg.content[R.ARRAYS].to_torch_state_dict()
    ids = _client_ids(config, context)
    state_dir = config.get(STATE_DIR)
    store = ClientStateStore(str(state_dir)) if state_dir else None
    if config.get(REPLY, REPLY_WEIGHTS) == REPLY_WEIGHTS:
        if len(ids) != 1:
            raise ValueError(f"a '{REPLY_WEIGHTS}' reply trains exactly one client, got {len(ids)}")
        content = train_one(resident, global_arrays, ids[0], server_round, store)
    else:
        content = train_cohort(resident, global_arrays, ids, server_round, store,
                               aggregation=aggregation_index(config), deadline=deadline)
    return Message(content=content, reply_to=msg)


def train_one(resident: Resident, global_arrays: Arrays, client_id: int, server_round: int,
              store: ClientStateStore | None) -> RecordDict:
    """Train one client; the reply is its weights and ``num-examples`` (Flower's shape)."""
    start = time.perf_counter()
    update = resident.train(global_arrays, client_id, server_round, store)
    metrics = {R.LOSS: float(update.metrics["loss"]), "train-seconds": time.perf_counter() - start}
    if update.num_examples is not None:
        metrics[R.NUM_EXAMPLES] = update.num_examples
    return RecordDict({R.ARRAYS: ArrayRecord(update.arrays), R.METRICS: MetricRecord(metrics)})


def train_cohort(resident: Resident, global_arrays: Arrays, ids: list[int], server_round: int,
                 store: ClientStateStore | None, *, aggregation: int | None = None,
                 deadline: float | None = None) -> RecordDict:
    """Train ``ids`` one after another, validating and folding each; reply with partial sums.

    ``aggregation`` is the server's aggregation index (default ``server_round``): the
    accumulator folds by it (L-DAWA folds differently during its warm-up). Past
    ``deadline`` (``time.time()``; the server no longer waits) the remaining clients are not
    trained and count as ``timeout``. Each failure reason's first message (``"Type:
    message"`` and traceback for exceptions) goes back in the ``errors`` record.
    """
    start = time.perf_counter()
    acc = resident.strategy.new_accumulator(global_arrays, server_round, aggregation=aggregation)
    rejected: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    errors: dict[str, str] = {}
    timeout = resident.exp.federation.round_timeout
    loss_sum = 0.0
    for n, cid in enumerate(ids):
        if deadline is not None and time.time() >= deadline:
            failed["timeout"] += len(ids) - n
            errors.setdefault("timeout", f"the round's time was up before client {cid} started "
                                         f"({len(ids) - n} of {len(ids)} clients not trained)")
            break
        # Virtual clients stand for devices training in parallel: each gets its own deadline.
        began = time.perf_counter()
        try:
            update = resident.train(global_arrays, cid, server_round, store)
        except Exception as e:  # counted like a Flower error reply from a client of its own
            failed["client-exception"] += 1
            errors.setdefault("client-exception", describe_exception(e))
            continue
        if timeout is not None and (took := time.perf_counter() - began) > timeout:
            failed["timeout"] += 1
            errors.setdefault("timeout", f"client {cid} trained for {took:.1f}s, over "
                                         f"federation.round_timeout={timeout:g}s")
            continue
        reason = check_update(update, acc.previous)
        if reason is not None:
            rejected[reason] += 1
            continue
        acc.accumulate(update)
        loss_sum += float(update.metrics["loss"])
    metrics: dict[str, float | int] = {
        R.NUM_CLIENTS_DONE: acc.num_clients, "loss-sum": loss_sum,
        "train-seconds": time.perf_counter() - start,
    }
    metrics.update({f"rejected:{k}": v for k, v in rejected.items()})
    metrics.update({f"failed:{k}": v for k, v in failed.items()})
    return RecordDict({R.ARRAYS: ArrayRecord(acc.sums), R.METRICS: MetricRecord(metrics),
                       R.ERRORS: ConfigRecord(errors)})

"""The Flower ClientApp: one handler for both engines and for real edge deployment.

A train message carries the global weights and two flat records (:mod:`fedsim.records`):
``run`` (task, model and strategy names and parameters) and ``round`` (the round context:
round, lr, local epochs, seed, client ids, reply shape, the strategy's client-side values),
decoded once into a :class:`~fedsim.records.RoundContext` and passed whole to the training.
The client's data folder, state directory and device are the node's own settings
(:func:`node_setting`), never paths from the server.

* ``reply = "weights"`` (engine ``flower``, deployment): exactly one client; the reply is
  its weights and ``num-examples``, the standard Flower shape.
* ``reply = "sums"`` (engine ``cohort``): a list of clients trained one after another on
  the resident model; each update is validated and folded into the strategy's accumulator
  and only the partial sums go back.

Model, task, strategy and the strategy's client hooks are built once per process and kept
resident (:class:`Resident`); every client path trains through the same
:meth:`Resident.train`, so a strategy's client-side behaviour is the same in both engines and
on a deployed node.
"""

from __future__ import annotations

import os
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from functools import wraps

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Error, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.constant import ErrorCode

from fedsim import records as R
from fedsim.client.faults import apply_fault, fault_of
from fedsim.client.state import ClientStateStore
from fedsim.client.trainer import load_global, train_client
from fedsim.engines.base import LOSS_SUM, TRAIN_SECONDS, count_metrics
from fedsim.factory import build_strategy, build_task
from fedsim.plugins import allowed_plugins, import_plugins
from fedsim.records import REPLY_WEIGHTS, RoundContext, RunSpec
from fedsim.strategies.base import Arrays, ClientUpdate
from fedsim.strategies.validation import check_update

app = ClientApp()


def node_setting(context: Context | None, key: str) -> str | None:
    """A node's own setting ``key`` (:data:`fedsim.records.NODE_DATA_DIR`, ...): the SuperNode's
    ``--node-config`` first, then the ``FEDSIM_<KEY>`` environment variable, which is how the
    launcher passes them to simulated nodes (Flower's simulation has no per-node config)."""
    value = context.node_config.get(key) if context is not None else None
    if value is None or value == "":
        value = os.environ.get(R.node_env_name(key))
    return str(value) if value not in (None, "") else None


def resolve_device(setting: str | None) -> torch.device:
    """``auto`` (or unset): CUDA when this process sees a GPU, else the CPU."""
    if setting in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if setting.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"node setting device={setting!r} but this node sees no CUDA device")
    return torch.device(setting)


def node_partition(context: Context | None) -> tuple[int, int] | None:
    """The node's Flower partition keys ``(partition-id, num-partitions)``, checked; ``None``
    when the node config has no ``partition-id``."""
    pid, count = node_setting(context, R.NODE_PARTITION_ID), node_setting(context, R.NODE_NUM_PARTITIONS)
    if pid is None and count is None:
        return None
    if pid is None or count is None:
        raise ValueError(f"node config: {R.NODE_PARTITION_ID} and {R.NODE_NUM_PARTITIONS} go together "
                         f"(got {R.NODE_PARTITION_ID}={pid}, {R.NODE_NUM_PARTITIONS}={count})")
    try:
        k, n = int(pid), int(count)
    except ValueError:
        raise ValueError(f"node config: {R.NODE_PARTITION_ID}={pid!r} and {R.NODE_NUM_PARTITIONS}={count!r} "
                         "must be integers") from None
    if not 0 <= k < n:
        raise ValueError(f"node config: {R.NODE_PARTITION_ID}={k} is not within 0..{n - 1} "
                         f"({R.NODE_NUM_PARTITIONS}={n})")
    return k, n


class Resident:
    """What a worker process keeps between messages: the run's task, model and strategy.

    Which data a client trains on: in simulation, client ``c``'s share of the task split
    among ``spec.num_clients``. On a deployed box (``spec.whole_node``) of a folder task,
    all of the box's own ``data_dir``. On a deployed box of a generated task, share
    ``partition[0]`` of the task split among ``partition[1]`` clients, trained as that
    client (its seeds too): box ``k`` trains exactly what simulated client ``k`` would.
    """

    def __init__(self, spec: RunSpec, *, data_dir: str | None = None, device: str | None = None,
                 partition: tuple[int, int] | None = None, plugins: str | None = None) -> None:
        torch.set_num_threads(1)
        from fedsim.config import PartitionConfig

        box_folder = spec.whole_node and spec.folder_data
        if (spec.folder_data or box_folder) and data_dir is None:
            raise ValueError(f"this run trains task {spec.task!r} on each node's own data folder; give this "
                             f"node one with --node-config {R.NODE_DATA_DIR}=PATH")
        self.partition = partition if spec.whole_node and not spec.folder_data else None
        if spec.whole_node and not spec.folder_data and partition is None:
            raise ValueError(f"this run's task {spec.task!r} is generated and split among the boxes; give this "
                             f"node its share with --node-config '{R.NODE_PARTITION_ID}=K "
                             f"{R.NODE_NUM_PARTITIONS}=N' (box K of N trains simulated client K's data)")
        import_plugins(allowed_plugins(spec.plugins, plugins))  # only what this node's config lists
        self.spec = spec
        self.device = resolve_device(device)
        partitioning = PartitionConfig(**spec.partitioning)
        num_clients = spec.num_clients
        self.data_id: int | None = None  # whose share a client trains on (None: its own id's)
        if box_folder:  # the node's folder is one client's data: all of it, no split
            partitioning, num_clients, self.data_id = PartitionConfig(kind="iid"), 1, 0
        elif self.partition is not None:
            num_clients = self.partition[1]
        self.task = build_task(spec.task, spec.task_params, num_clients=num_clients,
                               seed=spec.seed, partitioning=partitioning, backbone=spec.model,
                               backbone_options=spec.model_params, data_dir=data_dir if spec.folder_data else None)
        self.model = self.task.build_model().to(self.device)
        self.strategy = build_strategy(spec.strategy, spec.strategy_params, task=spec.task, seed=spec.seed,
                                       dp_clip=spec.dp_clip, dp_noise=spec.dp_noise)
        self.hooks = self.strategy.client_hooks()  # the strategy's client half

    def train(self, global_arrays: Arrays, client_id: int, ctx: RoundContext,
              store: ClientStateStore | None) -> ClientUpdate:
        """Train one virtual client from ``global_arrays`` (on this worker's device).

        Tensors the strategy's hooks keep local (e.g. FedVSSL's head) are the client's own:
        restored from ``store`` (the global's value on first participation) and saved back
        after training; only the tensors the hooks send are returned.
        """
        keys = list(global_arrays)
        own_keys = self.hooks.kept_keys(keys)
        if own_keys:
            if store is None:
                raise ValueError(f"strategy {self.spec.strategy!r} keeps per-client state "
                                 "but no client state directory was given")
            own = store.get(client_id, before_round=ctx.server_round) or {k: global_arrays[k] for k in own_keys}
            load_global(self.model, own)
        update = train_client(self.task, self.model, global_arrays, ctx, self.hooks, client_id=client_id,
                              device=self.device, data_id=self.data_id)
        if own_keys:
            assert store is not None
            store.put(client_id, ctx.server_round, {k: update.arrays[k] for k in own_keys})
        sent = self.hooks.sent_keys(keys)
        if len(sent) != len(keys):
            update.arrays = {k: update.arrays[k] for k in sent}
        fault = fault_of(self.spec.faults, client_id) if self.spec.faults else None
        if fault is not None:
            update = apply_fault(fault, update, timeout=ctx.round_timeout)
        return update


_RESIDENTS: dict[str, Resident] = {}  # run key -> resident; the latest two runs of this process


def resident_for(msg: Message, context: Context | None) -> Resident:
    """The resident task/model/strategy of the message's run (built on first use)."""
    spec = RunSpec.from_record(msg.content.config_records[R.RUN])
    data_dir, device = node_setting(context, R.NODE_DATA_DIR), node_setting(context, R.NODE_DEVICE)
    plugins = node_setting(context, R.NODE_PLUGINS)
    partition = node_partition(context) if spec.whole_node else None
    key = f"{spec.key()}|{data_dir}|{device}|{partition}|{plugins}"
    if key not in _RESIDENTS:
        while len(_RESIDENTS) >= 2:  # a run's model is rebuilt, never shared with another run
            _RESIDENTS.pop(next(iter(_RESIDENTS)))
        _RESIDENTS[key] = Resident(spec, data_dir=data_dir, device=device, partition=partition, plugins=plugins)
    return _RESIDENTS[key]


def state_store(context: Context | None) -> ClientStateStore:
    """Where this node keeps its clients' own tensors: the node's ``state-dir``, else a
    per-run folder under the system's temporary directory."""
    path = node_setting(context, R.NODE_STATE_DIR)
    if path is None:
        run_id = context.run_id if context is not None else 0
        path = os.path.join(tempfile.gettempdir(), "fedsim-client-state", str(run_id))
    return ClientStateStore(path)


def _client_ids(ctx: RoundContext, resident: Resident) -> list[int]:
    if resident.partition is not None:  # a deployed box of a generated task is simulated client K
        return [resident.partition[0]]
    if ctx.client_ids:
        return list(ctx.client_ids)
    raise ValueError("the round names no clients")


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
    """Readiness: build the run's task, model and strategy (kept resident), then answer."""
    content = RecordDict({R.METRICS: MetricRecord({"ready": 1})})
    if R.RUN in msg.content.config_records:
        content[NODE_INFO] = ConfigRecord(describe_node(resident_for(msg, context), context))
    return Message(content, reply_to=msg)


NODE_INFO = "node"  # ConfigRecord of a readiness answer: what the box trains on, where


def describe_node(resident: Resident, context: Context | None) -> dict[str, str]:
    """The box as ``fedsim deploy run`` lists it before round 1: host, data and device."""
    import socket

    if resident.partition is not None:
        data = f"partition {resident.partition[0]} of {resident.partition[1]}"
    elif resident.spec.folder_data:
        data = f"folder {node_setting(context, R.NODE_DATA_DIR)}"
    else:
        data = "the task's clients"
    return {"host": socket.gethostname(), "data": data, "device": str(resident.device)}


def _on(arrays: Arrays, device: torch.device) -> Arrays:
    return arrays if device.type == "cpu" else {k: v.to(device) for k, v in arrays.items()}


@app.train()
@replying_errors
def train(msg: Message, context: Context) -> Message:
    """Train the requested virtual clients and reply with weights or partial sums."""
    deadline = expires_at(msg)
    if time.time() >= deadline:  # queued behind a round that ran out of time: skip, Flower drops it
        return Message(Error(code=ErrorCode.MESSAGE_UNAVAILABLE, reason="the round's time was up "
                             "before training started"), reply_to=msg)
    ctx = RoundContext.from_record(msg.content.config_records[R.ROUND])  # decoded once, passed whole
    resident = resident_for(msg, context)
    if resident.spec.whole_node and (delay := node_setting(context, R.NODE_DELAY)):
        time.sleep(float(delay))  # a test bed's slow box (node config delay-seconds)
    global_arrays = _on(msg.content[R.ARRAYS].to_torch_state_dict(), resident.device)
    ids = _client_ids(ctx, resident)
    store = state_store(context)
    if ctx.reply == REPLY_WEIGHTS:
        if len(ids) != 1:
            raise ValueError(f"a '{REPLY_WEIGHTS}' reply trains exactly one client, got {len(ids)}")
        content = train_one(resident, global_arrays, ids[0], ctx, store)
    else:
        content = train_cohort(resident, global_arrays, ids, ctx, store, deadline=deadline)
    return Message(content=content, reply_to=msg)


def _cpu(arrays: Arrays) -> Arrays:
    return {k: v.cpu() if v.device.type != "cpu" else v for k, v in arrays.items()}


def train_one(resident: Resident, global_arrays: Arrays, client_id: int, ctx: RoundContext,
              store: ClientStateStore | None) -> RecordDict:
    """Train one client; the reply is its weights and ``num-examples`` (Flower's shape)."""
    start = time.perf_counter()
    update = resident.train(global_arrays, client_id, ctx, store)
    metrics = {R.LOSS: float(update.metrics["loss"]), TRAIN_SECONDS: time.perf_counter() - start}
    if update.num_examples is not None:
        metrics[R.NUM_EXAMPLES] = update.num_examples
    return RecordDict({R.ARRAYS: ArrayRecord(_cpu(update.arrays)), R.METRICS: MetricRecord(metrics)})


def train_cohort(resident: Resident, global_arrays: Arrays, ids: list[int], ctx: RoundContext,
                 store: ClientStateStore | None, *, deadline: float | None = None) -> RecordDict:
    """Train ``ids`` one after another, validating and folding each; reply with partial sums.

    The strategy's hooks give the accumulator; it folds by the round's aggregation index
    (L-DAWA folds differently during its warm-up). Past ``deadline`` (``time.time()``; the server no longer waits)
    the remaining clients are not trained and count as ``timeout``. Each failure reason's
    first message (``"Type: message"`` and traceback for exceptions) goes back in the
    ``errors`` record.
    """
    start = time.perf_counter()
    acc = resident.hooks.accumulator(global_arrays, ctx)
    rejected: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    errors: dict[str, str] = {}
    timeout = ctx.round_timeout
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
            update = resident.train(global_arrays, cid, ctx, store)
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
        R.NUM_CLIENTS_DONE: acc.num_clients, LOSS_SUM: loss_sum,
        TRAIN_SECONDS: time.perf_counter() - start, **count_metrics(rejected, failed),
    }
    return RecordDict({R.ARRAYS: ArrayRecord(_cpu(acc.sums)), R.METRICS: MetricRecord(metrics),
                       R.ERRORS: ConfigRecord(errors)})

"""The round wire: every record a server and its clients exchange, declared once.

A train message carries three records:

* ``arrays`` (``ArrayRecord``): the global weights;
* ``run`` (``ConfigRecord``, :class:`RunSpec`): what a client needs to build the run's task,
  model and strategy — their names and parameters as flat named keys
  (``task.params.temperature``), the seed, the population size, the partitioning; the same
  for every round of a run;
* ``round`` (``ConfigRecord``, :class:`RoundContext`): this round's values — round and
  aggregation index, learning rate (per round: ``federation.lr_schedule``), local epochs,
  batch size, optimiser, seed, the client ids to train, the reply shape and the strategy's
  client-side values (``params.<name>``, e.g. FedProx's ``params.proximal-mu``).

Nothing else is needed: a client's data folder, state directory and device come from its
own node config (``--node-config`` on a deployed SuperNode; the launcher in simulation), and
no client re-reads or re-validates the experiment file. Records carry the wire version
(``wire-version``): a client that does not know the version refuses with a message naming
both versions instead of training wrong.

Nested parameters are flattened with dots (``task.params.modality_mix.image = 0.4``); a
``None`` value travels as the key ``<key>:none`` (``ConfigRecord`` has no null). Parameter
names must not contain dots.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

WIRE_VERSION = 2  # 2: the round record carries the seed and the strategy's params.<name>, not proximal-mu
WIRE_VERSION_KEY = "wire-version"

# RecordDict keys of a message's content
ARRAYS = "arrays"  # ArrayRecord: global weights (server -> client) or client weights / partial sums
RUN = "run"  # ConfigRecord: RunSpec
ROUND = "round"  # ConfigRecord: RoundContext
METRICS = "metrics"  # MetricRecord: num-examples, loss, timings
ERRORS = "errors"  # ConfigRecord: failure reason -> "Type: message\n<traceback>" of its first client

# MetricRecord keys of replies
NUM_EXAMPLES = "num-examples"
LOSS = "loss"
NUM_CLIENTS_DONE = "num-clients"

# reply shapes (RoundContext.reply)
REPLY_WEIGHTS = "weights"  # one client's weights and num-examples (Flower's shape; engine flower, deployment)
REPLY_SUMS = "sums"  # a cohort's validated partial sums (engine cohort)

# a node's own settings (Flower node config; FEDSIM_<KEY> environment variables in simulation)
NODE_DATA_DIR = "data-dir"
NODE_STATE_DIR = "state-dir"
NODE_DEVICE = "device"
NODE_PARTITION_ID = "partition-id"  # Flower's own keys: a deployed box of a generated task trains
NODE_NUM_PARTITIONS = "num-partitions"  # share partition-id of the task split among num-partitions
NODE_DELAY = "delay-seconds"  # a deployed box waits this long before training each round (emulates a slow box)
NODE_PLUGINS = "plugins"  # comma-separated plugin modules this node may import (its owner's choice)
NODE_KEYS = (NODE_DATA_DIR, NODE_STATE_DIR, NODE_DEVICE, NODE_PARTITION_ID, NODE_NUM_PARTITIONS, NODE_DELAY,
             NODE_PLUGINS)


def node_env_name(key: str) -> str:
    """The environment variable standing for node setting ``key`` (``data-dir`` -> ``FEDSIM_DATA_DIR``)."""
    return "FEDSIM_" + key.upper().replace("-", "_")

_NONE = ":none"
PARAMS = "params"  # round-record prefix of the strategy's client-side values (RoundContext.params)
Scalar = int | float | str | bool


class WireError(ValueError):
    """A record a client cannot decode: unknown version, missing or mistyped key."""


def flatten(prefix: str, value: Mapping[str, Any]) -> dict[str, Any]:
    """``{"a": {"b": 1}, "c": None}`` under ``p`` -> ``{"p.a.b": 1, "p.c:none": True}``."""
    out: dict[str, Any] = {}
    for key, item in value.items():
        if not isinstance(key, str) or "." in key or key.endswith(_NONE):
            raise WireError(f"{prefix}: parameter name {key!r} cannot travel in a record "
                            "(names are strings without dots)")
        path = f"{prefix}.{key}"
        if isinstance(item, Mapping):
            if not item:
                raise WireError(f"{path}: an empty mapping cannot travel in a record")
            out.update(flatten(path, item))
        elif item is None:
            out[path + _NONE] = True
        elif isinstance(item, (list, tuple)):
            kinds = {type(v) for v in item}
            if len(kinds) > 1 or not kinds <= {int, float, str, bool}:
                raise WireError(f"{path}: only lists of one scalar type travel in a record (got {item!r})")
            out[path] = list(item)
        elif isinstance(item, (int, float, str, bool)):
            out[path] = item
        else:
            raise WireError(f"{path}: a {type(item).__name__} cannot travel in a record")
    return out


def unflatten(prefix: str, record: Mapping[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`flatten` for the keys of ``record`` under ``prefix``."""
    out: dict[str, Any] = {}
    start = prefix + "."
    for key, value in record.items():
        if not key.startswith(start):
            continue
        path = key[len(start):]
        if path.endswith(_NONE):
            path, value = path[: -len(_NONE)], None
        *parents, leaf = path.split(".")
        node = out
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = list(value) if isinstance(value, list) else value
    return out


def _get(record: Mapping[str, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    if key not in record:
        raise WireError(f"the {what} record has no {key!r}")
    value = record[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise WireError(f"the {what} record's {key!r} is {value!r}, not a {getattr(kind, '__name__', kind)}")
    return value


def _optional(record: Mapping[str, Any], key: str, kind: type, what: str) -> Any:
    return None if record.get(key + _NONE) or key not in record else _get(record, key, kind, what)


def check_version(record: Mapping[str, Any], what: str) -> None:
    """Refuse a record of another wire version (or none: a sender older than the versioning)."""
    version = record.get(WIRE_VERSION_KEY)
    if version != WIRE_VERSION:
        sent = "no version" if version is None else f"version {version!r}"
        raise WireError(f"the server sent a {what} record of {sent}; this client speaks fedsim wire "
                        f"version {WIRE_VERSION}: run the same fedsim release on server and clients")


@dataclass(frozen=True)
class RunSpec:
    """What a client needs to build a run's task, model and strategy (record ``run``).

    ``folder_data``: the server trains on a data folder, so a client must have its own
    (node setting ``data-dir``) rather than silently train on the bundled data.
    ``whole_node``: deployment — each node is one client that trains on all of its own data
    folder (the round's client id is then the node's identity, not a share of a dataset).
    ``faults`` is fault injection for robustness studies (simulation only).
    """

    seed: int
    num_clients: int
    task: str
    model: str
    strategy: str
    task_params: dict[str, Any] = field(default_factory=dict)
    model_params: dict[str, Any] = field(default_factory=dict)
    strategy_params: dict[str, Any] = field(default_factory=dict)
    partitioning: dict[str, Any] = field(default_factory=dict)
    dp_clip: float | None = None
    dp_noise: float = 0.0
    folder_data: bool = False
    whole_node: bool = False
    plugins: list[str] = field(default_factory=list)
    faults: dict[str, list[int]] = field(default_factory=dict)

    @classmethod
    def from_experiment(cls, exp: Any, *, whole_node: bool = False) -> "RunSpec":
        """The run record of an :class:`fedsim.config.ExperimentConfig`."""
        return cls(seed=exp.seed, num_clients=exp.federation.clients, task=exp.task.name,
                   model=exp.model.name, strategy=exp.strategy.name, task_params=dict(exp.task.params),
                   model_params=dict(exp.model.params), strategy_params=dict(exp.strategy.params),
                   partitioning=exp.partitioning.model_dump(mode="json"), dp_clip=exp.strategy.dp_clip,
                   dp_noise=exp.strategy.dp_noise, folder_data=exp.task.data_dir is not None,
                   whole_node=whole_node, plugins=list(exp.plugins), faults={k: list(v) for k, v in exp.faults.items()})

    def to_record(self) -> dict[str, Any]:
        """The ``ConfigRecord`` content (a plain dict of scalars and scalar lists)."""
        out: dict[str, Any] = {WIRE_VERSION_KEY: WIRE_VERSION, "seed": self.seed, "num-clients": self.num_clients,
                               "task": self.task, "model": self.model, "strategy": self.strategy,
                               "dp-noise": float(self.dp_noise), "folder-data": self.folder_data,
                               "whole-node": self.whole_node, "plugins": list(self.plugins)}
        if self.dp_clip is None:
            out["dp-clip" + _NONE] = True
        else:
            out["dp-clip"] = float(self.dp_clip)
        for prefix, value in (("task.params", self.task_params), ("model.params", self.model_params),
                              ("strategy.params", self.strategy_params), ("partitioning", self.partitioning),
                              ("faults", self.faults)):
            out.update(flatten(prefix, value))
        return out

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> "RunSpec":
        check_version(record, "run")
        what = "run"
        return cls(seed=_get(record, "seed", int, what), num_clients=_get(record, "num-clients", int, what),
                   task=_get(record, "task", str, what), model=_get(record, "model", str, what),
                   strategy=_get(record, "strategy", str, what),
                   task_params=unflatten("task.params", record), model_params=unflatten("model.params", record),
                   strategy_params=unflatten("strategy.params", record),
                   partitioning=unflatten("partitioning", record),
                   dp_clip=_optional(record, "dp-clip", float, what), dp_noise=_get(record, "dp-noise", float, what),
                   folder_data=_get(record, "folder-data", bool, what),
                   whole_node=_get(record, "whole-node", bool, what),
                   plugins=[str(p) for p in record.get("plugins", [])],
                   faults={k: [int(i) for i in v] for k, v in unflatten("faults", record).items()})

    def key(self) -> str:
        """A canonical text of the spec (a client's cache key for its resident model)."""
        return json.dumps(asdict(self), sort_keys=True)


@dataclass(frozen=True)
class RoundContext:
    """Everything a client needs to know about one round (record ``round``).

    Built once per round on the server (:meth:`for_round`), sent as flat keys, decoded once
    on the client and handed whole to the local training and to the strategy's client hooks
    (:class:`fedsim.strategies.hooks.ClientHooks`). Only ``client_ids`` differs between the
    messages of one round.

    ``aggregation`` is 1 + the aggregations the server completed before this round
    (strategies count warm-up and SWA by it; skipped rounds do not count). ``seed`` is the
    run's seed: a client's batch order and augmentations are drawn from (seed, round, client
    id). ``params`` are the values the strategy's client half needs this round, named by the
    strategy (FedProx: ``proximal-mu``); they travel as ``params.<name>``.
    """

    server_round: int
    aggregation: int
    client_ids: tuple[int, ...]
    reply: str
    lr: float
    local_epochs: int
    batch_size: int
    seed: int
    optimizer: str = "sgd"
    momentum: float = 0.0
    weight_decay: float = 0.0
    round_timeout: float | None = None
    params: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def for_round(cls, exp: Any, strategy: Any, server_round: int, *, aggregation: int, reply: str,
                  client_ids: tuple[int, ...] = ()) -> "RoundContext":
        """The context of round ``server_round`` of experiment ``exp`` (an
        :class:`fedsim.config.ExperimentConfig`) run with ``strategy``: the round's learning rate
        from the schedule, the federation's local-training settings and the strategy's
        client-side values (:meth:`~fedsim.strategies.hooks.ClientHooks.round_params`)."""
        fed = exp.federation
        return cls(server_round=server_round, aggregation=aggregation, client_ids=tuple(client_ids), reply=reply,
                   lr=fed.round_lr(server_round), local_epochs=fed.local_epochs, batch_size=fed.batch_size,
                   seed=exp.seed, optimizer=fed.optimizer, momentum=fed.momentum, weight_decay=fed.weight_decay,
                   round_timeout=fed.round_timeout,
                   params=dict(strategy.client_hooks().round_params(aggregation)))

    def to_record(self) -> dict[str, Any]:
        """The ``ConfigRecord`` content (a plain dict of scalars and scalar lists)."""
        out: dict[str, Any] = {
            WIRE_VERSION_KEY: WIRE_VERSION, "server-round": self.server_round, "aggregation": self.aggregation,
            "client-ids": [int(c) for c in self.client_ids], "reply": self.reply, "lr": float(self.lr),
            "local-epochs": self.local_epochs, "batch-size": self.batch_size, "seed": self.seed,
            "optimizer": self.optimizer, "momentum": float(self.momentum),
            "weight-decay": float(self.weight_decay)}
        if self.round_timeout is None:
            out["round-timeout" + _NONE] = True
        else:
            out["round-timeout"] = float(self.round_timeout)
        out.update(flatten(PARAMS, self.params))
        return out

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> "RoundContext":
        check_version(record, "round")
        what = "round"
        reply = _get(record, "reply", str, what)
        if reply not in (REPLY_WEIGHTS, REPLY_SUMS):
            raise WireError(f"the round record's 'reply' is {reply!r}; expected {REPLY_WEIGHTS!r} or {REPLY_SUMS!r}")
        ids = record.get("client-ids", [])
        if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise WireError(f"the round record's 'client-ids' is {ids!r}, not a list of ints")
        return cls(server_round=_get(record, "server-round", int, what),
                   aggregation=_get(record, "aggregation", int, what), client_ids=tuple(ids), reply=reply,
                   lr=_get(record, "lr", float, what), local_epochs=_get(record, "local-epochs", int, what),
                   batch_size=_get(record, "batch-size", int, what), seed=_get(record, "seed", int, what),
                   optimizer=_get(record, "optimizer", str, what), momentum=_get(record, "momentum", float, what),
                   weight_decay=_get(record, "weight-decay", float, what),
                   round_timeout=_optional(record, "round-timeout", float, what),
                   params=unflatten(PARAMS, record))

    def param(self, name: str) -> Any:
        """The strategy's client-side value ``name``; a :class:`WireError` naming it when the
        server did not send it."""
        if name not in self.params:
            raise WireError(f"the round record has no '{PARAMS}.{name}' (sent: {sorted(self.params) or 'none'})")
        return self.params[name]

"""Experiment configuration, a pure spec: pydantic models, YAML loading, CLI overrides,
one-line errors.

``load_config(path, overrides)`` is the only entry point: it reads the YAML file (or the
defaults), applies ``key.path=value`` overrides, validates everything — including the
registered names and the chosen strategy's and task's own parameters (read from the
registry: each plugin's ``Params`` model and class attributes, never a built task or
strategy), finite numbers everywhere, a bounded nesting depth, and what the config needs
from this machine (:func:`fedsim.machine.check_this_machine`) — and raises
:class:`ConfigError` with one line naming the field and the allowed values.

Building the run's task and strategy is :mod:`fedsim.factory`'s: this module imports no
task, strategy, engine or factory (``tests/test_architecture.py`` checks it).
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import (BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator,
                      model_validator)

from fedsim.machine import check_this_machine
from fedsim.registry import ENGINES, MODELS, STRATEGIES, TASKS, UnknownNameError, repopt_models


class ConfigError(ValueError):
    """A user-caused configuration error; its message is one line and says what to do."""


MAX_ERROR_CHARS = 300  # an error line longer than this is shortened in the middle


def one_line(message: str, limit: int = MAX_ERROR_CHARS) -> str:
    """``message`` as one printable line of at most ``limit`` characters: whitespace runs
    (newlines too) become one space, characters that are not valid UTF-8 (an undecodable
    file name's bytes) are shown as ``\\xNN`` escapes, and a long middle gives way
    to `` ... `` (the start names the field or file, the end says what to do)."""
    text = " ".join(str(message).split())
    try:  # an undecodable name's bytes come back as os.fsdecode escaped them
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "backslashreplace")
    text = raw.decode("utf-8", "backslashreplace")
    if len(text) <= limit:
        return text
    head = (limit - 5) * 2 // 3
    return f"{text[:head]} ... {text[-(limit - 5 - head):]}"


# Upper bounds of counts (each far beyond a simulation's needs; a typo such as 10**30 rounds
# is one line instead of an overflow deep in numpy or an endless run).
MAX_ROUNDS = 1_000_000
MAX_EPOCHS = 100_000
MAX_SEED = 2 ** 32 - 1  # numpy's and torch's seeds

# Bounds on a config's shape: YAML nested deeper than this, or expanding (through anchors)
# to more values than this, is refused before pydantic sees it.
MAX_DEPTH = 20
MAX_VALUES = 100_000


class _Strict(BaseModel):
    # allow_inf_nan=False: config.yaml, summaries and bench tables hold the values as JSON/YAML text.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_as_number(cls, v: Any, info: ValidationInfo) -> Any:
        # pydantic reads true as 1 for an int or float field; `--clients true` is a mistake
        if isinstance(v, bool) and info.field_name is not None:
            kinds = set(get_args(cls.model_fields[info.field_name].annotation)) or {
                cls.model_fields[info.field_name].annotation}
            if kinds & {int, float} and bool not in kinds:
                raise ValueError(f"expected a number, got {str(v).lower()}")
        return v


def _registered(registry: Any, name: str) -> str:
    if name not in registry.names():  # the built-ins are listed without importing them
        registry.get(name)  # raises UnknownNameError listing the allowed names
    return name


def check_tree(value: Any, path: str = "") -> None:
    """Refuse a non-finite float anywhere in ``value``, nesting deeper than ``MAX_DEPTH``
    and more than ``MAX_VALUES`` values (YAML anchors can expand exponentially).

    Raises :class:`ConfigError` naming the offending key path.
    """
    checked: dict[int, tuple[int, int]] = {}  # id -> (depth it was checked at, its size)

    def walk(node: Any, where: str, depth: int) -> int:
        if depth > MAX_DEPTH:
            raise ConfigError(f"{where or 'config'}: nested more than {MAX_DEPTH} levels deep; "
                              "an experiment needs only a few")
        if isinstance(node, float) and not math.isfinite(node):
            raise ConfigError(f"{where or 'value'}: must be a finite number (got {node})")
        if not isinstance(node, (dict, list)):
            return 1
        seen = checked.get(id(node))
        if seen is not None and depth <= seen[0]:  # a shared (anchored) node, checked as deep already
            return seen[1]
        size = 1
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, child in items:
            sub = f"{where}[{key}]" if isinstance(node, list) else (f"{where}.{key}" if where else str(key))
            size += walk(child, sub, depth + 1)
            if size > MAX_VALUES:
                raise ConfigError(f"{where or 'config'}: more than {MAX_VALUES} values "
                                  "(YAML anchors expanding?); an experiment needs only a few")
        checked[id(node)] = (depth, size)
        return size

    walk(value, path, 0)


def _finite_params(value: dict[str, Any], section: str) -> dict[str, Any]:
    try:
        check_tree(value, f"{section}.params")
    except ConfigError as err:
        raise ValueError(str(err)) from None
    return value


class TaskConfig(_Strict):
    """Which SSL task to train and its own parameters (validated by the task's ``Params``)."""

    name: str = Field("image", description="a registered task (fedsim list)")
    params: dict[str, Any] = Field(default_factory=dict, description="the task's own parameters (below)")
    data_dir: str | None = Field(None, description="a local folder to read instead of the generated data")

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        return _registered(TASKS, v)

    @field_validator("params")
    @classmethod
    def _finite(cls, v: dict[str, Any]) -> dict[str, Any]:
        return _finite_params(v, "task")


class ModelConfig(_Strict):
    """Which registered backbone the task wraps."""

    name: str = Field("resnet_small", description="a registered backbone (fedsim list)")
    params: dict[str, Any] = Field(
        default_factory=dict, description="options of the backbone's factory, e.g. widths, depths")

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        return _registered(MODELS, v)


class StrategyConfig(_Strict):
    """Server aggregation rule and its parameters (validated by the strategy's ``Params``)."""

    name: str = Field("fedavg", description="a registered strategy (fedsim list)")
    params: dict[str, Any] = Field(default_factory=dict, description="the strategy's own parameters (below)")
    dp_clip: float | None = Field(None, gt=0.0, description="clip each client update to this L2 norm")
    dp_noise: float = Field(0.0, ge=0.0, description="Gaussian noise multiplier z (std z * dp_clip)")

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        return _registered(STRATEGIES, v)

    @field_validator("params")
    @classmethod
    def _finite(cls, v: dict[str, Any]) -> dict[str, Any]:
        return _finite_params(v, "strategy")


class FederationConfig(_Strict):
    """Population, sampling and local training."""

    clients: int = Field(20, ge=1, le=10_000_000, description="registered clients (the population)")
    clients_per_round: int | None = Field(5, ge=1, le=10_000_000, description="clients sampled per round")
    fraction: float | None = Field(None, gt=0.0, le=1.0,
                                   description="clients sampled per round as a fraction (overrides clients_per_round)")
    rounds: int = Field(5, ge=1, le=MAX_ROUNDS)
    local_epochs: int = Field(1, ge=1, le=MAX_EPOCHS, description="passes over its data a client makes per round")
    batch_size: int = Field(32, ge=2, le=1_000_000)
    lr: float = Field(0.05, gt=0.0, description="the clients' learning rate (the first round's, with a schedule)")
    lr_schedule: Literal["constant", "cosine", "step"] = Field(
        "constant", description="the clients' lr per round: constant, cosine (from lr to lr_min over the "
                                "rounds) or step (times lr_gamma every lr_step_rounds rounds)")
    lr_min: float = Field(0.0, ge=0.0, description="cosine schedule: the lr it anneals towards")
    lr_step_rounds: int = Field(10, ge=1, le=MAX_ROUNDS, description="step schedule: rounds between lr drops")
    lr_gamma: float = Field(0.1, gt=0.0, le=1.0, description="step schedule: factor of each drop")
    optimizer: Literal["sgd", "repopt-sgd"] = Field(
        "sgd", description="client optimiser; repopt-sgd needs a RepOpt backbone (repopt_vgg, repghost)")
    momentum: float = Field(0.0, ge=0.0, lt=1.0)
    weight_decay: float = Field(0.0, ge=0.0)
    round_timeout: float | None = Field(None, gt=0.0, description="seconds per client a round may take")
    min_success_fraction: float = Field(0.5, gt=0.0, le=1.0,
                                        description="a round aggregates when at least this fraction succeeded")
    max_failed_rounds: int = Field(3, ge=1, le=MAX_ROUNDS,
                                   description="failed rounds in a row that stop the run (exit 3)")

    @model_validator(mode="after")
    def _schedule_fits(self) -> "FederationConfig":
        if self.lr_schedule == "cosine" and self.lr_min >= self.lr:
            raise ValueError(f"lr_min ({self.lr_min:g}) must be below lr ({self.lr:g}) for the cosine schedule")
        return self

    @model_validator(mode="after")
    def _cohort_fits(self) -> "FederationConfig":
        if self.fraction is not None:
            return self
        if self.clients_per_round is not None and self.clients_per_round > self.clients:
            raise ValueError(
                f"clients_per_round ({self.clients_per_round}) is more than clients "
                f"({self.clients}); choose 1..{self.clients}"
            )
        return self

    def round_lr(self, server_round: int) -> float:
        """The clients' learning rate in round ``server_round`` (1-based)."""
        from fedsim.optim.schedule import round_lr

        return round_lr(self.lr_schedule, self.lr, server_round, rounds=self.rounds, lr_min=self.lr_min,
                        step_rounds=self.lr_step_rounds, gamma=self.lr_gamma)

    def cohort_size(self) -> int:
        """Number of clients sampled each round."""
        if self.fraction is not None:
            return max(1, round(self.fraction * self.clients))
        return self.clients_per_round or self.clients


class PartitionConfig(_Strict):
    """Label skew across clients (flwr-datasets partitioners)."""

    kind: Literal["iid", "dirichlet", "pathological", "natural"] = Field(
        "dirichlet", description="label skew (iid, dirichlet, pathological) or natural ids (a --data-dir "
                                 "whose file names carry a writer/user id)")
    alpha: float = Field(0.5, gt=0.0, description="Dirichlet concentration (smaller: more skew)")
    classes_per_client: int = Field(2, ge=1, description="pathological: classes each client holds")


class HeterogeneityConfig(_Strict):
    """Simulated system heterogeneity: slow clients, dropouts and a round deadline.

    Client k's speed factor is drawn once from LogNormal(0, ``speed_sigma``) (seeded by
    (seed, k)); its simulated training time is ``local_epochs * epoch_seconds * factor``.
    A client whose simulated time exceeds ``deadline`` is a straggler; each round each
    sampled client drops out with probability ``dropout`` (seeded by (seed, round, k)).
    Both are decided before the round is sent, so they cost no training time.
    """

    speed_sigma: float = Field(0.0, ge=0.0, description="spread of the log-normal per-client slowness")
    epoch_seconds: float = Field(1.0, gt=0.0, description="simulated seconds of one local epoch at speed 1")
    deadline: float | None = Field(None, gt=0.0, description="simulated seconds after which a client straggles")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="probability a sampled client drops out of a round")


FAULT_KINDS = ("nan", "inf", "wrong-shape", "wrong-dtype", "missing-tensor", "no-num-examples",
               "negative-num-examples", "exception", "timeout")


class EvaluationConfig(_Strict):
    """Server-side evaluation of the global encoder."""

    every: int = Field(1, ge=1, le=MAX_ROUNDS,
                       description="evaluate the global encoder every this many rounds (and the last)")
    knn_k: int = Field(20, ge=1, le=100_000, description="neighbours of the kNN metric (classification-style tasks)")
    linear_probe: bool = Field(True, description="also report linear_top1 (classification-style tasks)")
    track: list[str] | None = Field(
        None, description="metrics whose best global model is kept as best_<metric>.pt (default: the primary)")


class EngineConfig(_Strict):
    """How a round's training is executed."""

    name: str = Field(
        "cohort", description="a registered engine: cohort (one worker per core trains many clients) or "
                              "flower (one node per client)")
    workers: int | None = Field(None, ge=1, le=4096, description="cohort workers (default: one per core, or "
                                                                 "workers_per_gpu per GPU when training on CUDA)")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="where clients train and the server evaluates: auto (CUDA when present) or cpu/cuda")
    workers_per_gpu: int = Field(1, ge=1, le=256, description="cohort workers sharing one GPU (device cuda)")
    num_cpus_per_client: float = Field(
        1.0, ge=0.5, description="Ray CPUs per worker (at least 0.5: Flower starts cores / this many actors, "
                                 "each a process of its own; fedsim also caps them at the planned workers)")
    ray_address: str | None = Field(
        None, description="existing Ray cluster: HOST:PORT, ray://HOST:PORT, auto or local (Ray's forms)")

    @field_validator("ray_address")
    @classmethod
    def _address_form(cls, v: str | None) -> str | None:
        if v is None or v in ("auto", "local"):
            return v
        if _RAY_ADDRESS.fullmatch(v) and 1 <= int(v.rsplit(":", 1)[1]) <= 65535:
            return v
        raise ValueError(f"expected HOST:PORT (port 1-65535), ray://HOST:PORT, auto or local (got {v!r})")

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        return _registered(ENGINES, v)


# What ``ray.init(address=...)`` accepts besides auto/local (ray 2.55: a HOST:PORT parsed by
# ``ray._common.network_utils.parse_address``, IPv6 in brackets; ``ray://`` for Ray Client).
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_HOST = rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9A-Fa-f:.]+\])"
_RAY_ADDRESS = re.compile(rf"(?:ray://)?{_HOST}:[0-9]{{1,5}}")


class ExperimentConfig(_Strict):
    """A whole experiment; ``fedsim run`` writes the resolved one to ``config.yaml``."""

    name: str = Field("quickstart", description="the experiment's name (run directory, reports)")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="seeds sampling, data and training (0 .. 2**32 - 1); "
                                                        "every random choice derives from (seed, round, client id)")
    out: str | None = Field(None, description="run directory (default runs/<time>-<strategy>)")
    plugins: list[str] = Field(
        default_factory=list,
        description="modules imported before anything else, so their @register_task/model/strategy "
                    "plugins can be named (importable on every worker, e.g. from the working directory)")
    task: TaskConfig = Field(default_factory=TaskConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    strategy: StrategyConfig = Field(default_factory=StrategyConfig)
    federation: FederationConfig = Field(default_factory=FederationConfig)
    partitioning: PartitionConfig = Field(default_factory=PartitionConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    engine: EngineConfig = Field(default_factory=EngineConfig)
    heterogeneity: HeterogeneityConfig = Field(default_factory=HeterogeneityConfig)
    faults: dict[str, list[int]] = Field(
        default_factory=dict,
        description="fault injection for robustness studies: kind -> client ids whose replies are corrupted")

    @field_validator("plugins")
    @classmethod
    def _import_plugins(cls, v: list[str], info: ValidationInfo) -> list[str]:
        # Fields validate in order: the plugins register before task/model/strategy are looked up.
        from fedsim.plugins import import_plugins

        if v and not (info.context or {}).get("trust_plugins", True):
            raise ValueError(f"names plugin modules {', '.join(v)}; plugins are code and are imported only "
                             "from your own config: pass --trust-plugins to import them")
        import_plugins(v)
        return v

    @field_validator("faults")
    @classmethod
    def _fault_kinds(cls, v: dict[str, list[int]]) -> dict[str, list[int]]:
        for kind in v:
            if kind not in FAULT_KINDS:
                raise ValueError(f"unknown fault {kind!r}; choose one of: {', '.join(FAULT_KINDS)}")
        return v

    @model_validator(mode="after")
    def _data_dir_needs_a_folder_task(self) -> "ExperimentConfig":
        if self.task.data_dir is None:
            return self
        if not TASKS.get(self.task.name).reads_data_dir:
            readers = [n for n in TASKS.names() if TASKS.get(n).reads_data_dir]  # imports every task
            raise ValueError(f"task.data_dir: task {self.task.name!r} does not read data folders; leave "
                             f"--data-dir unset (tasks that do: {', '.join(readers) or 'none yet'})")
        return self

    @model_validator(mode="after")
    def _fault_ids_are_clients(self) -> "ExperimentConfig":
        for kind, ids in self.faults.items():
            outside = [i for i in ids if not 0 <= i < self.federation.clients]
            if outside:
                raise ValueError(f"faults.{kind}: client id(s) {', '.join(map(str, outside[:5]))} are not among the "
                                 f"{self.federation.clients} clients; ids run 0..{self.federation.clients - 1}")
        return self

    @model_validator(mode="after")
    def _timeout_fault_needs_timeout(self) -> "ExperimentConfig":
        if "timeout" in self.faults and self.federation.round_timeout is None:
            raise ValueError("faults.timeout needs federation.round_timeout (seconds)")
        return self

    @model_validator(mode="after")
    def _dp_needs_decomposable(self) -> "ExperimentConfig":
        if self.strategy.dp_clip is None:
            if self.strategy.dp_noise > 0:
                raise ValueError("strategy.dp_noise needs strategy.dp_clip (the clipping norm C)")
            return self
        if not STRATEGIES.get(self.strategy.name).decomposable:
            raise ValueError(f"strategy.dp_clip: differential privacy wraps decomposable strategies; "
                             f"{self.strategy.name!r} keeps individual updates")
        return self

    @model_validator(mode="after")
    def _client_side_defaults(self) -> "ExperimentConfig":
        # FedRepOpt-style strategies bring their client optimiser and backbone, and a task
        # its backbone, unless the user chose them explicitly (the strategy's comes first).
        cls = STRATEGIES.get(self.strategy.name)
        if cls.client_optimizer is not None and "optimizer" not in self.federation.model_fields_set:
            self.federation.optimizer = cls.client_optimizer
        if cls.default_model is not None and "name" not in self.model.model_fields_set:
            self.model.name = cls.default_model
        task_model = TASKS.get(self.task.name).default_model  # e.g. the audio task's backbone
        if task_model is not None and "name" not in self.model.model_fields_set:
            self.model.name = task_model
        if self.federation.optimizer == "repopt-sgd" and not MODELS.info(self.model.name).repopt:
            raise ValueError(f"federation.optimizer 'repopt-sgd' needs a RepOpt backbone; "
                             f"model.name is {self.model.name!r}, choose one of: {', '.join(repopt_models())}")
        return self

    @model_validator(mode="after")
    def _plugin_params(self) -> "ExperimentConfig":
        # Each plugin validates its own parameters so errors name e.g. task.params.temperature.
        for section, registry in (("task", TASKS), ("strategy", STRATEGIES)):
            sub = getattr(self, section)
            params_model = registry.get(sub.name).Params
            try:
                params_model(**sub.params)
            except ValidationError as err:
                raise ValueError(_one_line(err, prefix=f"{section}.params")) from None
        return self

    @model_validator(mode="after")
    def _natural_needs_folder(self) -> "ExperimentConfig":
        if self.partitioning.kind == "natural" and self.task.data_dir is None:
            raise ValueError("partitioning.kind 'natural' partitions a --data-dir folder by the writer/user id "
                             "in its file names; the bundled data has none, choose iid, dirichlet or pathological")
        return self

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def _one_line(err: ValidationError, prefix: str = "") -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"] if p not in ("__root__",))
    if prefix:
        loc = f"{prefix}.{loc}" if loc else prefix
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown field"
        parent = _parent_model(err.title, first["loc"])
        if parent is not None:
            msg += f"; allowed: {', '.join(parent.model_fields)}"
    elif "input" in first and first["type"] not in ("value_error", "assertion_error") and not isinstance(first["input"], dict):
        msg += f" (got {first['input']!r})"
    return f"{loc}: {msg}" if loc else msg


def _parent_model(title: str, loc: tuple[Any, ...]) -> type[BaseModel] | None:
    model: Any = ExperimentConfig if title == "ExperimentConfig" else None
    for part in loc[:-1]:
        if model is None:
            return None
        field = model.model_fields.get(part)
        model = field.annotation if field is not None else None
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
    return model


def parse_override(text: str) -> tuple[str, Any]:
    """Parse ``key.path=value``; the value is read as YAML (so 3, 0.1, true, [1,2] work)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {text!r}: expected key.path=value, e.g. federation.lr=0.01")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    except RecursionError:
        raise ConfigError(f"--set {key.strip()}: value nested more than {MAX_DEPTH} levels deep") from None
    return key.strip(), value


def _apply(raw: dict[str, Any], key: str, value: Any) -> None:
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{key}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def forget_other_backbone_options(earlier: dict[str, Any], name: Any) -> None:
    """``model.params`` are the options of one backbone: when a later layer (an override, a
    bench YAML over the file it extends, a grid cell) names another backbone, the options an
    earlier layer gave its own backbone are dropped from ``earlier`` instead of reaching a
    factory that does not take them."""
    model = earlier.get("model")
    if isinstance(model, dict) and "name" in model and model["name"] != name:
        model.pop("params", None)


def read_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read an experiment YAML file into a dict, with one-line errors."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"config file {str(p)!r} does not exist")
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} is not a file")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or "invalid YAML"
        raise ConfigError(f"{p}: bad YAML{where}: {problem}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not a UTF-8 text file; an experiment is a YAML text file") from None
    except RecursionError:
        raise ConfigError(f"{p}: nested more than {MAX_DEPTH} levels deep; an experiment needs only a few") from None
    except OSError as err:
        raise ConfigError(f"{p}: cannot read it ({err.strerror or err})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a mapping of sections (task, strategy, federation, ...)")
    return data


def read_experiment_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """An experiment YAML as a dict, with ``extends: FILE`` resolved.

    ``extends`` (relative to the file) starts from another, plain experiment file; this
    file's own keys are merged over it, section by section (a ``model.name`` of its own drops
    the other file's ``model.params``: they were that file's backbone's options). A bench
    spec's ``grid:`` is left in the dict for :func:`fedsim.bench.plan.read_bench_yaml`.
    """
    raw = read_yaml(path)
    parent = raw.pop("extends", None)
    if parent is None:
        return raw
    if not isinstance(parent, str):
        raise ConfigError(f"{path}: extends: expected the path of an experiment YAML, got {parent!r}")
    base = read_yaml(Path(path).parent / parent)
    if "grid" in base or "extends" in base:
        raise ConfigError(f"{path}: extends: {parent} must be a plain experiment (no grid:, no extends:)")
    if isinstance(raw.get("model"), dict) and "name" in raw["model"]:
        forget_other_backbone_options(base, raw["model"]["name"])
    return _merged(base, raw)


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def load_config(path: str | os.PathLike[str] | None = None,
                overrides: dict[str, Any] | None = None, *, trust_plugins: bool = True) -> ExperimentConfig:
    """Build a validated :class:`ExperimentConfig` from a YAML file and ``key.path`` overrides.

    ``trust_plugins=False`` (a config someone else may have written: a run directory's) refuses
    a ``plugins:`` list instead of importing it."""
    raw = read_experiment_yaml(path) if path is not None else {}
    if "grid" in raw:
        raise ConfigError(f"{path} is a bench spec (it has grid:): run its cells with `fedsim bench --config "
                          f"{path}`; `fedsim run` runs one experiment")
    if overrides and "model.name" in overrides:
        forget_other_backbone_options(raw, overrides["model.name"])
    for key, value in (overrides or {}).items():
        _apply(raw, key, value)
    check_tree(raw)
    try:
        exp = ExperimentConfig.model_validate(raw, context={"trust_plugins": trust_plugins})
    except UnknownNameError as err:
        raise ConfigError(str(err)) from None
    except ValidationError as err:
        raise ConfigError(_one_line(err)) from None
    except TypeError as err:
        raise ConfigError(f"bad configuration: {err}") from None
    try:
        check_this_machine(exp)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    return exp

"""Tracking sinks beside ``rounds.jsonl``: TensorBoard and MLflow, off by default.

A tracker is a round-loop callback (:class:`fedsim.server.callbacks.RoundCallback`): it
opens when the run begins, gets every round line (:meth:`~RoundCallback.after_round`), the
summary (:meth:`~RoundCallback.on_end`) and closes at the end. A sink gets every numeric
entry of the line, nested counts as ``failed/timeout``; nothing names a metric. Which sinks
run is a choice of outputs, not of the experiment (like ``--quiet``): ``fedsim run --tracker
NAME`` builds them with :func:`make_trackers` and hands them to the round loop; ``flwr run .``
reads the names from its run config (``trackers``).

* ``tensorboard``: ``torch.utils.tensorboard.SummaryWriter`` writing to ``<run>/tensorboard``
  (``pip install 'fedsim-ssl[tensorboard]'``; view with ``tensorboard --logdir runs``).
* ``mlflow``: an ``MlflowClient`` on a local store in the run directory (SQLite,
  ``<run>/mlflow.db``; MLflow 3 refuses its legacy ``mlruns/`` file store unless
  ``MLFLOW_ALLOW_FILE_STORE=true``) unless ``MLFLOW_TRACKING_URI`` names another; one MLflow
  run per fedsim run (its id is kept in ``<run>/mlflow_run_id``, so a resumed run logs into
  the same one); the resolved config as parameters (``pip install 'fedsim-ssl[mlflow]'``).

A sink that fails while logging prints one line and is dropped; the run goes on
(:class:`fedsim.server.callbacks.Guarded`).
"""

from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fedsim.config import ConfigError
from fedsim.server.callbacks import Guarded, RoundCallback

if TYPE_CHECKING:
    from fedsim.server.loop import RoundLoop

# tracker name -> (module that must import, the pip extra that installs it)
EXTRAS = {"tensorboard": ("tensorboard", "tensorboard"), "mlflow": ("mlflow", "mlflow")}
MLFLOW_RUN_ID_FILE = "mlflow_run_id"
MLFLOW_DB_FILE = "mlflow.db"
MAX_PARAM_CHARS = 500  # MLflow's limit on a parameter value


def parse_trackers(values: Iterable[str]) -> list[str]:
    """Tracker names from ``--tracker`` values (each may be a comma list), checked to be known
    and installed; :class:`ConfigError` (one line, naming the extra to install) if not."""
    names: list[str] = []
    for name in (n.strip() for value in values for n in value.split(",")):
        if not name:
            continue
        if name not in EXTRAS:  # every name is checked before any package
            raise ConfigError(f"--tracker: unknown tracker {name!r}; choose one of: {', '.join(EXTRAS)}")
        if name not in names:
            names.append(name)
    for name in names:
        module, extra = EXTRAS[name]
        if importlib.util.find_spec(module) is None:
            raise ConfigError(f"--tracker {name}: the {module} package is not installed; "
                              f"install the extra: pip install 'fedsim-ssl[{extra}]'")
    return names


def scalars(row: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The numeric entries of ``row`` (booleans as 0/1), nested mappings as ``key/sub``."""
    out: dict[str, float] = {}
    for key, value in row.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(scalars(value, prefix=f"{name}/"))
        elif isinstance(value, (bool, int, float)) and key != "round":
            out[name] = float(value)
    return out


class Tracker(RoundCallback):
    """A sink opened on the run's directory when the run begins (:meth:`open`)."""

    def on_begin(self, loop: RoundLoop) -> None:
        self.open(loop.writer.dir, loop.exp, resume=loop.resumed)

    def open(self, run_dir: Path, exp: Any, *, resume: bool) -> None:
        """Start logging the run ``exp`` (an ExperimentConfig) in ``run_dir``."""
        raise NotImplementedError


class TensorBoardTracker(Tracker):
    """Scalars per round into ``<run>/tensorboard`` with ``torch.utils.tensorboard``."""

    def open(self, run_dir: Path, exp: Any, *, resume: bool) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
        self.writer.add_text("config", "```\n" + exp.to_yaml() + "\n```")

    def after_round(self, loop: RoundLoop | None, row: Mapping[str, Any]) -> None:
        for key, value in scalars(row).items():
            self.writer.add_scalar(key, value, global_step=int(row["round"]))
        self.writer.flush()

    def on_end(self, loop: RoundLoop | None, summary: Mapping[str, Any]) -> None:
        step = int(summary.get("rounds", 0))
        for key, value in scalars(summary).items():
            self.writer.add_scalar(f"summary/{key}", value, global_step=step)

    def on_close(self, loop: RoundLoop | None, *, completed: bool) -> None:
        self.writer.close()


def default_mlflow_uri(run_dir: Path) -> str:
    """A local SQLite store in the run directory. (MLflow 3 refuses its legacy file store
    unless ``MLFLOW_ALLOW_FILE_STORE=true``; set ``MLFLOW_TRACKING_URI`` for any other store.)"""
    return f"sqlite:///{(run_dir / MLFLOW_DB_FILE).resolve()}"


class MlflowTracker(Tracker):
    """Metrics per round into an MLflow run (a local store in the run directory by default)."""

    def open(self, run_dir: Path, exp: Any, *, resume: bool) -> None:
        from mlflow.tracking import MlflowClient

        uri = os.environ.get("MLFLOW_TRACKING_URI") or default_mlflow_uri(run_dir)
        self.client = MlflowClient(tracking_uri=uri)
        id_file = run_dir / MLFLOW_RUN_ID_FILE
        if resume and id_file.is_file():
            self.run_id = id_file.read_text().strip()
            return
        found = self.client.get_experiment_by_name(exp.name)
        experiment_id = found.experiment_id if found else self.client.create_experiment(exp.name)
        self.run_id = self.client.create_run(experiment_id, run_name=run_dir.name).info.run_id
        id_file.write_text(self.run_id + "\n")
        for key, value in _flat(exp.model_dump(mode="json")).items():
            self.client.log_param(self.run_id, key, str(value)[:MAX_PARAM_CHARS])

    def _log(self, values: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step) for k, v in values.items()])

    def after_round(self, loop: RoundLoop | None, row: Mapping[str, Any]) -> None:
        self._log(scalars(row), int(row["round"]))

    def on_end(self, loop: RoundLoop | None, summary: Mapping[str, Any]) -> None:
        self._log(scalars(summary, prefix="summary/"), int(summary.get("rounds", 0)))

    def on_close(self, loop: RoundLoop | None, *, completed: bool) -> None:
        self.client.set_terminated(self.run_id, status="FINISHED" if completed else "KILLED")


def _flat(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping) and value:
            out.update(_flat(value, prefix=f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


TRACKERS: dict[str, type[Tracker]] = {"tensorboard": TensorBoardTracker, "mlflow": MlflowTracker}


def make_trackers(names: Iterable[str]) -> list[RoundCallback]:
    """The round-loop callbacks of the trackers ``names`` (checked by :func:`parse_trackers`),
    each :class:`~fedsim.server.callbacks.Guarded`: one that fails is dropped, the run goes on."""
    return [Guarded(name, TRACKERS[name]()) for name in names]

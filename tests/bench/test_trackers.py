"""Tracking sinks: unknown or missing ones are one line naming the extra; installed ones get
every round's scalars (each test skips when its package is absent)."""

from __future__ import annotations

import importlib.util

import pytest

from fedsim.config import ConfigError, load_config
from fedsim.server import trackers as trackers_module
from fedsim.server.callbacks import Guarded
from fedsim.server.trackers import (MlflowTracker, TensorBoardTracker, default_mlflow_uri, make_trackers,
                                    parse_trackers, scalars)

ROWS = [{"round": 0, "knn_top1": 0.2, "knn_top1_raw_input": 0.5},
        {"round": 1, "clients_ok": 2, "skipped": False, "failed": {"timeout": 1}, "errors": {}, "knn_top1": 0.3,
         "bytes_up": 100}]


def test_scalars_flatten_counts_and_skip_text():
    assert scalars({"round": 3, "a": 1, "b": True, "c": "x", "d": None, "f": {"timeout": 2}}) == \
        {"a": 1.0, "b": 1.0, "f/timeout": 2.0}


def test_a_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setattr(trackers_module.importlib.util, "find_spec", lambda name: None)

    with pytest.raises(ConfigError, match=r"pip install 'fedsim-ssl\[mlflow\]'"):
        parse_trackers(["mlflow"])


def test_trackers_are_guarded_callbacks_built_unopened():
    sinks = make_trackers(["tensorboard", "mlflow"])  # opened by the loop, in the run directory

    assert [(type(s), s.name, type(s.inner)) for s in sinks] == [
        (Guarded, "tensorboard", TensorBoardTracker), (Guarded, "mlflow", MlflowTracker)]


def test_unknown_tracker_lists_the_known_ones():
    with pytest.raises(ConfigError, match="choose one of: tensorboard, mlflow"):
        parse_trackers(["tensorboard,wandb"])


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None,
                    reason="tensorboard is not installed (pip install 'fedsim-ssl[tensorboard]')")
def test_tensorboard_gets_every_round(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    sink = TensorBoardTracker()
    sink.open(tmp_path, load_config(None), resume=False)
    for row in ROWS:
        sink.after_round(None, row)
    sink.on_end(None, {"rounds": 1, "knn_top1": 0.3})
    sink.on_close(None, completed=True)

    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [(e.step, round(e.value, 4)) for e in events.Scalars("knn_top1")] == [(0, 0.2), (1, 0.3)]
    assert [e.value for e in events.Scalars("failed/timeout")] == [1.0]
    assert [e.value for e in events.Scalars("summary/knn_top1")] == [pytest.approx(0.3)]


@pytest.mark.skipif(importlib.util.find_spec("mlflow") is None,
                    reason="mlflow is not installed (pip install 'fedsim-ssl[mlflow]')")
def test_mlflow_gets_every_round_in_a_local_store_and_a_resume_continues_the_run(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    exp = load_config(None)
    first = MlflowTracker()
    first.open(tmp_path, exp, resume=False)
    first.after_round(None, ROWS[0])
    first.on_close(None, completed=False)
    resumed = MlflowTracker()
    resumed.open(tmp_path, exp, resume=True)
    resumed.after_round(None, ROWS[1])
    resumed.on_close(None, completed=True)

    client = MlflowClient(tracking_uri=default_mlflow_uri(tmp_path))
    run_id = (tmp_path / "mlflow_run_id").read_text().strip()
    history = client.get_metric_history(run_id, "knn_top1")
    assert [(m.step, m.value) for m in history] == [(0, 0.2), (1, 0.3)]
    assert client.get_run(run_id).data.params["strategy.name"] == "fedavg"


def test_run_refuses_a_missing_tracker_with_one_line_naming_the_extra(monkeypatch):
    from typer.testing import CliRunner

    from fedsim.cli import app

    monkeypatch.setattr(trackers_module.importlib.util, "find_spec", lambda name: None)

    result = CliRunner().invoke(app, ["run", "--tracker", "tensorboard", "--check"])

    assert result.exit_code == 2
    assert result.output.strip() == ("error: --tracker tensorboard: the tensorboard package is not installed; "
                                     "install the extra: pip install 'fedsim-ssl[tensorboard]'")

"""One ServerApp factory: it builds the round loop a setup describes, runs it, keeps its
summary and always closes; ``flwr run .``'s setup reads the experiment and trackers from the
run config."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from fedsim.server import app as app_module
from fedsim.server.app import LoopRun, from_run_config, server_app
from fedsim.server.callbacks import Guarded, PrintSummary
from fedsim.server.trackers import TensorBoardTracker

ROOT = Path(__file__).resolve().parents[2]


class FakeLoop:
    """Records how the factory built it; ``run`` returns a summary or raises."""

    def __init__(self, grid, exp, run_dir, *, callbacks, **options) -> None:
        self.args = (grid, exp, run_dir, list(callbacks), options)

    def run(self) -> dict:
        if self.args[4].get("fail"):
            raise RuntimeError("the loop failed")
        return {"rounds": 1}


def _context(**run_config) -> SimpleNamespace:
    return SimpleNamespace(run_config=run_config)


@pytest.mark.parametrize("fail", [False, True])
def test_the_app_runs_the_loop_its_setup_describes_and_always_closes(monkeypatch, fail):
    monkeypatch.setattr(app_module, "RoundLoop", FakeLoop)
    closed: list[bool] = []
    runs: list[LoopRun] = []

    def setup(grid, context) -> LoopRun:
        runs.append(LoopRun(grid, "exp", "out", callbacks=[PrintSummary()], options={"fail": fail},
                            close=lambda: closed.append(True)))
        return runs[0]

    app = server_app(setup)
    if fail:
        with pytest.raises(RuntimeError, match="the loop failed"):
            app("grid", _context())
    else:
        app("grid", _context())

    (run,) = runs
    assert run.loop.args[:3] == ("grid", "exp", "out") and run.loop.args[4] == {"fail": fail}
    assert run.summary == ({} if fail else {"rounds": 1}) and closed == [True]


def test_flwr_run_reads_the_experiment_and_trackers_from_the_run_config(monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)  # as flwr run . does: the app's paths are relative to it
    monkeypatch.setattr(app_module, "parse_trackers", lambda values: [n for v in values for n in v.split(",") if n])

    run = from_run_config("grid", _context(**{"config-path": "simulations/quickstart.yaml",
                                              "trackers": "tensorboard"}))

    assert run.exp.name == "quickstart" and run.grid == "grid"
    assert run.exp.out is None and run.run_dir.startswith("runs/")  # runs/<time>-<strategy>
    (tracker, printer) = run.callbacks
    assert isinstance(tracker, Guarded) and isinstance(tracker.inner, TensorBoardTracker)
    assert isinstance(printer, PrintSummary)


def test_flwr_run_without_trackers_runs_none(monkeypatch):
    monkeypatch.chdir(ROOT)

    run = from_run_config("grid", _context())  # the default config path; no trackers key

    assert [type(c) for c in run.callbacks] == [PrintSummary]

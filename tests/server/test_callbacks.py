"""Round-loop callbacks: the loop's own outputs in their order (best model, line, checkpoint),
a failing tracker dropped with one line, and every begun callback closed."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from fedsim.config import load_config
from fedsim.factory import task_for
from fedsim.server.callbacks import CallbackList, Guarded, PrintSummary, RoundCallback, run_outputs
from fedsim.server.waits import RunAborted
from fedsim.server.outputs import RunWriter
from fedsim.strategies.fedavg import FedAvg


class Recorder(RoundCallback):
    def __init__(self, calls: list, name: str = "r", fail: str = "") -> None:
        self.calls, self.name, self.fail = calls, name, fail

    def _note(self, hook: str, *args) -> None:
        self.calls.append((self.name, hook, *args))
        if hook == self.fail:
            raise ValueError(f"{self.name} broke in {hook}")

    def on_begin(self, loop) -> None:
        self._note("on_begin")

    def after_round(self, loop, row) -> None:
        self._note("after_round", row["round"])

    def on_end(self, loop, summary) -> None:
        self._note("on_end")

    def on_close(self, loop, *, completed) -> None:
        self._note("on_close", completed)


def _loop(tmp_path) -> SimpleNamespace:
    """What the output callbacks read of a RoundLoop: the run's writer, task, model and state."""
    exp = load_config(None)
    return SimpleNamespace(exp=exp, task=task_for(exp), writer=RunWriter(tmp_path, exp.to_yaml()),
                           global_arrays={"w": torch.tensor([1.0, 2.0])}, strategy=FedAvg(),
                           failed_streak=0, aggregations=0, quiet=False)


def test_outputs_write_the_best_model_before_the_line_and_the_checkpoint_after(tmp_path):
    # Prepare
    loop = _loop(tmp_path)
    outputs = CallbackList(run_outputs())
    metric = loop.task.primary_metric.name
    # Execute: round 0 (no checkpoint), round 1 (better), round 2 (not evaluated)
    outputs.after_round(loop, {"round": 0, metric: 0.2})
    assert not (tmp_path / "checkpoint.pt").exists()  # a resume without one starts from round 0
    loop.global_arrays = {"w": torch.tensor([3.0, 4.0])}
    loop.aggregations = 1
    outputs.after_round(loop, {"round": 1, metric: 0.5})
    loop.global_arrays = {"w": torch.tensor([5.0, 6.0])}
    outputs.after_round(loop, {"round": 2})
    # Assert
    lines = [json.loads(line) for line in (tmp_path / "rounds.jsonl").read_text().splitlines()]
    assert [r["round"] for r in lines] == [0, 1, 2]
    best = torch.load(tmp_path / f"best_{metric}.pt", weights_only=True)
    assert torch.equal(best["w"], torch.tensor([3.0, 4.0]))  # round 1's model, not round 2's
    checkpoint = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert checkpoint["round"] == 2 and checkpoint["aggregations"] == 1
    assert torch.equal(checkpoint["global"]["w"], torch.tensor([5.0, 6.0]))


def test_a_non_finite_checkpoint_aborts_the_run_and_keeps_the_previous_one(tmp_path):
    loop = _loop(tmp_path)
    outputs = CallbackList(run_outputs())
    outputs.after_round(loop, {"round": 1})
    loop.global_arrays = {"w": torch.tensor([float("nan"), 0.0])}

    with pytest.raises(RunAborted, match="not finite"):
        outputs.after_round(loop, {"round": 2})

    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["round"] == 1


def test_the_end_writes_the_summary_and_model(tmp_path):
    loop = _loop(tmp_path)
    outputs = CallbackList(run_outputs())
    outputs.after_round(loop, {"round": 0})

    outputs.on_end(loop, {"rounds": 0, "name": "x"})

    assert json.loads((tmp_path / "summary.json").read_text())["name"] == "x"
    assert torch.equal(torch.load(tmp_path / "model.pt", weights_only=True)["w"], torch.tensor([1.0, 2.0]))


def test_a_failing_tracker_prints_one_line_and_is_off_for_the_rest_of_the_run(capsys):
    calls: list = []
    callbacks = CallbackList([Guarded("flaky", Recorder(calls, "flaky", fail="after_round")),
                              Recorder(calls, "next")])

    callbacks.on_begin(None)
    callbacks.after_round(None, {"round": 1})
    callbacks.after_round(None, {"round": 2})
    callbacks.on_close(None, completed=True)

    assert calls == [("flaky", "on_begin"), ("next", "on_begin"), ("flaky", "after_round", 1),
                     ("next", "after_round", 1), ("next", "after_round", 2), ("next", "on_close", True)]
    assert capsys.readouterr().err == ("warning: tracker flaky failed (ValueError: flaky broke in after_round); "
                                       "it is off for the rest of the run\n")


def test_close_reaches_every_begun_callback_and_raises_the_first_error():
    calls: list = []
    callbacks = CallbackList([Recorder(calls, "a", fail="on_close"), Recorder(calls, "b"),
                              Recorder(calls, "c", fail="on_begin"), Recorder(calls, "d")])
    with pytest.raises(ValueError, match="c broke in on_begin"):
        callbacks.on_begin(None)

    with pytest.raises(ValueError, match="a broke in on_close"):
        callbacks.on_close(None, completed=False)

    assert [c for c in calls if c[1] == "on_close"] == [("a", "on_close", False), ("b", "on_close", False)]


def test_print_summary_prints_unless_quiet(capsys):
    PrintSummary().on_end(SimpleNamespace(quiet=True), {"rounds": 1})
    assert capsys.readouterr().out == ""

    PrintSummary().on_end(SimpleNamespace(quiet=False), {"rounds": 1, "wall_seconds": 2.0})
    assert capsys.readouterr().out

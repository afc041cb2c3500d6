"""Each exit code of docs/reference/exit-codes.md, triggered for real (no Ray start: a run
that fails or is signalled while Ray starts), and the table lists exactly those codes."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fedsim.cli import app
from fedsim.engines import ray_cluster

TABLE = Path(__file__).resolve().parents[1] / "docs" / "reference" / "exit-codes.md"
TINY = ["--task", "synthetic", "--model", "mlp", "--clients", "2", "--clients-per-round", "2", "--rounds", "1",
        "--set", "task.params={samples: 4, image_size: 8, eval_samples: 4}"]
runner = CliRunner()


def documented_codes() -> set[int]:
    """The codes in the first column of the Markdown table."""
    rows = [line for line in TABLE.read_text().splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in rows[0].strip("|").split("|")]
    assert header[0] == "code" and set(rows[1].replace("|", "").strip()) <= {"-", " "}
    return {int(line.strip("|").split("|")[0]) for line in rows[2:]}


def _run(tmp_path: Path, *extra: str):
    return runner.invoke(app, ["run", *TINY, "--quiet", "--out", str(tmp_path / "run"), *extra])


def _ray_start_does(monkeypatch, action) -> None:
    monkeypatch.setattr(ray_cluster, "start", lambda *a, **k: action())
    monkeypatch.setattr(ray_cluster, "stop", lambda: None)


def _signal(signum: int):
    def send() -> None:
        os.kill(os.getpid(), signum)
    return send


def test_code_0_done(tmp_path):
    assert runner.invoke(app, ["run", "--check", *TINY]).exit_code == 0


def test_code_1_an_unexpected_error(tmp_path, monkeypatch):
    def broken(*args, **kwargs) -> None:  # a bug under the run
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr("fedsim.launcher.simulate", broken)
    result = _run(tmp_path)
    assert result.exit_code == 1 and "run failed: ZeroDivisionError: a bug" in result.stderr, result.output


def test_code_2_bad_settings(tmp_path):
    result = runner.invoke(app, ["run", "--check", "--rounds", "0"])
    assert result.exit_code == 2 and result.stderr.startswith("error: federation.rounds")


def test_code_3_ray_failing_to_start_and_handlers_come_back(tmp_path, monkeypatch):
    # Prepare: ray.init installs a SIGTERM handler of its own, then times out
    def timing_out() -> None:
        signal.signal(signal.SIGTERM, lambda *a: None)
        raise TimeoutError("timed out waiting for the raylet")

    _ray_start_does(monkeypatch, timing_out)
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    # Execute
    result = _run(tmp_path)
    # Assert: exit 3 in one line naming the cause; this process's handlers are its own again
    assert result.exit_code == 3, result.output
    assert "Ray did not start (TimeoutError: timed out waiting for the raylet)" in result.stderr
    assert {s: signal.getsignal(s) for s in before} == before


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_codes_130_and_143_signals(tmp_path, monkeypatch, signum, code):
    _ray_start_does(monkeypatch, _signal(signum))
    before = signal.getsignal(signal.SIGTERM)
    result = _run(tmp_path)
    assert result.exit_code == code, result.output
    assert f"interrupted by {signal.Signals(signum).name} before the run started" in result.stderr
    assert signal.getsignal(signal.SIGTERM) == before


def test_the_table_lists_exactly_the_codes_triggered_here():
    triggered = {int(m) for m in re.findall(r"def test_codes?_(\d+)(?:_and_(\d+))?", Path(__file__).read_text())
                 for m in m if m}
    assert documented_codes() == triggered == {0, 1, 2, 3, 130, 143}

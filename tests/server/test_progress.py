"""What a run prints: whole round lines on stderr, the summary on stdout (plain, table or
JSON), and ``fedsim run > out.txt 2> err.txt`` in a narrow terminal setting; the curves
figure's axes."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys

import pytest
from rich.console import Console

from fedsim.server.outputs import curves_figure
from fedsim.server.progress import RoundProgress, print_summary, round_line

ROW = {"round": 3, "clients_ok": 9, "clients_rejected": 1, "clients_failed": 0, "train_loss": 1.23456,
       "knn_top1": 0.5, "updates_per_s": 12.345, "round_seconds": 7.61}
SUMMARY = {"strategy": "fedavg", "task": "synthetic", "knn_top1": 0.512345, "rounds": 2, "skipped": None,
           "provenance": {"flwr_version": "1.41.0", "command": "fedsim run --out " + "x" * 60}}
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # any control character but tab and newline


def narrow(stream: io.StringIO) -> Console:
    """A console as a pipe gets it, 40 columns wide."""
    return Console(file=stream, width=40, force_terminal=False, soft_wrap=True)


def test_a_round_line_has_every_field():
    assert round_line(ROW, 10, "knn_top1") == ("round 3/10: 9 ok, 1 rejected, 0 failed, loss 1.235, knn_top1 0.500, "
                                              "12.3 upd/s, 7.6s")


def test_round_lines_are_not_wrapped_on_a_narrow_pipe():
    err = io.StringIO()
    with RoundProgress(10, 10, metric="knn_top1", console=narrow(err)) as bar:
        bar.round_start(3)
        bar.round_end(ROW)

    assert err.getvalue() == round_line(ROW, 10, "knn_top1") + "\n"


def test_the_plain_summary_is_one_whole_line_per_key_with_the_provenance():
    out = io.StringIO()
    print_summary(SUMMARY, console=narrow(out))

    lines = out.getvalue().splitlines()
    assert [line.split()[0] for line in lines] == ["strategy", "task", "knn_top1", "rounds", "flwr_version", "command"]
    assert lines[2].split() == ["knn_top1", "0.5123"] and lines[-1].endswith("x" * 60)
    assert not CONTROL.search(out.getvalue()) and "─" not in out.getvalue()


def test_the_json_summary_parses_and_keeps_nested_values():
    out = io.StringIO()
    print_summary({**SUMMARY, "nan": float("nan")}, as_json=True, console=narrow(out))

    assert json.loads(out.getvalue()) == {**SUMMARY, "nan": None}


def test_curves_share_one_integer_round_axis_from_round_zero_with_directions():
    rows = [{"round": 0, "knn_top1": 0.1, "knn_top1_raw_input": 0.05, "mae": 9.0},
            *({"round": r, "train_loss": 2.0 / r, "knn_top1": 0.1 * r, "mae": 9.0 - r} for r in (1, 2, 3))]

    fig = curves_figure(rows, {"knn_top1": True, "mae": False}, title="quickstart (run): fedavg on synthetic")

    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["training loss ↓", "knn_top1 ↑ (held-out)", "mae ↓ (held-out)"]
    assert fig._suptitle.get_text() == "quickstart (run): fedavg on synthetic"
    assert {ax.get_xlim() for ax in axes} == {axes[0].get_xlim()} and axes[0].get_xlim()[0] < 0 < axes[0].get_xlim()[1]
    ticks = [t for t in axes[1].get_xticks() if axes[1].get_xlim()[0] <= t <= axes[1].get_xlim()[1]]
    assert ticks == [0, 1, 2, 3]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_piped_run_prints_whole_round_lines_on_stderr_and_json_on_stdout(tmp_path):
    run_dir = tmp_path / "run"
    env = {**os.environ, "COLUMNS": "40", "LINES": "10"}
    env.pop("FORCE_COLOR", None)
    with open(tmp_path / "out.txt", "w") as out, open(tmp_path / "err.txt", "w") as err:
        proc = subprocess.run([sys.executable, "-m", "fedsim", "run", "--task", "synthetic", "--model", "mlp",
                               "--rounds", "2", "--clients", "4", "--clients-per-round", "2", "--json",
                               "--set", "engine.workers=1", "--set", "task.params.eval_samples=20",
                               "--set", "task.params.image_size=8", "--out", str(run_dir)],
                              stdout=out, stderr=err, env=env, timeout=540)
    stdout, stderr = (tmp_path / "out.txt").read_text(), (tmp_path / "err.txt").read_text()

    assert proc.returncode == 0, stderr
    lines = stderr.splitlines()
    assert lines[0].startswith("fedsim ") and lines[0].endswith(f"-> {run_dir}")  # the first line, whole
    assert re.fullmatch(r"starting Ray with 1 worker on (cpu|cuda) \.\.\.", lines[1])
    rounds = [line for line in lines if line.startswith("round ")]
    assert len(rounds) == 2 and all(re.fullmatch(r"round \d/2: 2 ok, 0 rejected, 0 failed, loss \d+\.\d{3}, "
                                                 r"knn_top1 \d\.\d{3}, \d+\.\d upd/s, \d+\.\ds", r) for r in rounds)
    assert not CONTROL.search(stdout + stderr)
    summary = json.loads(stdout)
    assert summary == json.loads((run_dir / "summary.json").read_text())
    assert {"fedsim_version", "flwr_version", "torch_version", "ray_version", "command", "started_at", "host",
            "device"} <= summary["provenance"].keys()
    assert (run_dir / "curves.pdf").read_bytes()[:5] == b"%PDF-"


def test_on_a_terminal_each_finished_round_stays_above_the_bar():
    screen = io.StringIO()
    with RoundProgress(10, 10, metric="knn_top1", console=Console(file=screen, width=200, force_terminal=True)) as bar:
        for rnd in (1, 2):
            bar.round_start(rnd)
            bar.round_end({**ROW, "round": rnd})

    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue())  # the terminal's cursor and colour codes
    assert round_line({**ROW, "round": 1}, 10, "knn_top1") in text
    assert round_line({**ROW, "round": 2}, 10, "knn_top1") in text

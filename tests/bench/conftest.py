"""One tiny bench shared by the bench tests: FedAvg and FedVSSL × seeds 0, 1 on the synthetic
task with the MLP (8×8 inputs), 2 rounds of 2 clients, as real ``fedsim run`` subprocesses;
and, started beside it, a 1-round run of one of its cells (the interrupted-cell test makes it
look like a 2-round run stopped after round 1's checkpoint)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fedsim.cli import app

TINY = ["--strategies", "fedavg,fedvssl", "--tasks", "synthetic", "--seeds", "0,1", "--model", "mlp",
        "--rounds", "2", "--clients", "4", "--clients-per-round", "2", "--set", "engine.workers=1",
        "--set", "task.params.eval_samples=20", "--set", "task.params.image_size=8", "--target", "knn_top1=0.1"]
# the fedvssl seed-1 cell of TINY, 1 round only (later flags win)
ONE_ROUND = [*TINY, "--strategies", "fedvssl", "--seeds", "1", "--rounds", "1"]
HAS_TENSORBOARD = importlib.util.find_spec("tensorboard") is not None
# what a cell's MLP sends: backbone Linear(64, 100) and head Linear(100, 10), float32
BACKBONE_BYTES = (64 * 100 + 100) * 4
MODEL_BYTES = BACKBONE_BYTES + (100 * 10 + 10) * 4


def bench(*args: str):
    """``fedsim bench ARGS`` in this process (its cells are subprocesses)."""
    return CliRunner().invoke(app, ["bench", *args], catch_exceptions=False)


@dataclass(frozen=True)
class TinyBench:
    dir: Path  # the finished 2 × 2 bench
    one_round: Path  # a bench holding the fedvssl seed-1 cell after 1 round


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> TinyBench:
    """The tiny grid, finished, and the 1-round cell (about 40-80 s on 2 cores)."""
    root = tmp_path_factory.mktemp("bench")
    one_round = subprocess.Popen([sys.executable, "-m", "fedsim", "bench", *ONE_ROUND, "--out",
                                  str(root / "one-round"), "--quiet"], stderr=subprocess.PIPE, text=True)
    parallel = "2" if len(os.sched_getaffinity(0)) >= 2 else "1"
    trackers = ["--tracker", "tensorboard"] if HAS_TENSORBOARD else []
    result = bench(*TINY, *trackers, "--parallel", parallel, "--out", str(root / "tiny"), "--quiet")
    _, errors = one_round.communicate(timeout=600)
    assert result.exit_code == 0, result.output
    assert one_round.returncode == 0, errors
    return TinyBench(dir=root / "tiny", one_round=root / "one-round")


@pytest.fixture(scope="session")
def tiny_bench(tiny) -> Path:
    return tiny.dir

"""One tiny bench shared by the bench tests: FedAvg and FedVSSL × seeds 0, 1 on the synthetic
task with the MLP (8×8 inputs), 2 rounds of 2 clients, as real ``fedsim run`` subprocesses."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fedsim.cli import app

TINY = ["--strategies", "fedavg,fedvssl", "--tasks", "synthetic", "--seeds", "0,1", "--model", "mlp",
        "--rounds", "2", "--clients", "4", "--clients-per-round", "2", "--set", "engine.workers=1",
        "--set", "task.params.eval_samples=20", "--set", "task.params.image_size=8", "--target", "knn_top1=0.1"]
HAS_TENSORBOARD = importlib.util.find_spec("tensorboard") is not None
# what a cell's MLP sends: backbone Linear(64, 100) and head Linear(100, 10), float32
BACKBONE_BYTES = (64 * 100 + 100) * 4
MODEL_BYTES = BACKBONE_BYTES + (100 * 10 + 10) * 4


def bench(*args: str):
    """``fedsim bench ARGS`` in this process (its cells are subprocesses)."""
    return CliRunner().invoke(app, ["bench", *args], catch_exceptions=False)


@pytest.fixture(scope="session")
def tiny_bench(tmp_path_factory) -> Path:
    """The bench directory of the tiny grid, finished (about 40-80 s on 2 cores)."""
    out = tmp_path_factory.mktemp("bench") / "tiny"
    parallel = "2" if len(os.sched_getaffinity(0)) >= 2 else "1"
    trackers = ["--tracker", "tensorboard"] if HAS_TENSORBOARD else []
    result = bench(*TINY, *trackers, "--parallel", parallel, "--out", str(out), "--quiet")
    assert result.exit_code == 0, result.output
    return out

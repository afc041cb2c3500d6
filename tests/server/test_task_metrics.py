"""A task that is not classification runs end to end: its metrics, not kNN, everywhere.

The toy regression task (tests/plugins/toy_regression.py) is registered only through
``plugins:``, so the run also shows that Flower/Ray workers import a user's plugin module.
"""

import csv
import json
import os
import sys
from pathlib import Path

import pytest
import torch

from tests.server.conftest import read_rows
from tests.conftest import run_fedsim

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # a learning run of several rounds
@pytest.mark.timeout(300)
def test_a_regression_task_runs_through_fedsim_run_with_its_own_metrics(tmp_path):
    # Prepare
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "fedsim", "run", "--task", "toy_regression", "--model", "mlp",
           "--clients", "6", "--clients-per-round", "3", "--rounds", "3", "--out", str(run_dir),
           "--set", "plugins=[tests.plugins.toy_regression]", "--set", "federation.lr=0.02",
           "--set", "evaluation.track=[mae,rmse]"]
    # Execute
    proc = run_fedsim(cmd, cwd=ROOT, capture_output=True, text=True, timeout=280,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    # Assert
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = read_rows(run_dir)
    assert set(rows[0]) == {"round", "mae", "rmse", "mae_constant_mean"}
    assert all("mae" in r and "rmse" in r for r in rows)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["primary_metric"] == "mae"
    best = min(r["mae"] for r in rows)
    assert summary["mae_best"] == best and summary["mae"] == rows[-1]["mae"]
    assert summary["mae_best_round"] == next(r["round"] for r in rows if r["mae"] == best)
    assert summary["mae_constant_mean"] == rows[0]["mae_constant_mean"]
    assert summary["mae_best"] < summary["mae_init"]  # lower is better, and training lowered it
    with open(run_dir / "metrics.csv") as fh:
        header = next(csv.reader(fh))
    assert "mae" in header and "rmse" in header
    text = proc.stderr + (run_dir / "summary.json").read_text() + (run_dir / "metrics.csv").read_text()
    assert "knn" not in text.lower() and "linear_top1" not in text
    assert "round 3/3:" in proc.stderr and " mae " in proc.stderr  # the progress line names the metric
    assert (run_dir / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name in ("mae", "rmse"):
        saved = torch.load(run_dir / f"best_{name}.pt", weights_only=True)
        assert set(saved) == set(torch.load(run_dir / "model.pt", weights_only=True))

"""``fedsim run --task audio_image`` end to end: 50 clients of mixed modalities, 3 rounds through Flower."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from tests.server.conftest import read_rows
from tests.conftest import run_fedsim

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # a learning run of several rounds
@pytest.mark.timeout(420)
def test_fifty_clients_of_mixed_modalities_run_three_rounds_and_record_every_declared_metric(tmp_path):
    # Prepare / Execute: seed 0, the default modality mix (40 % image, 40 % audio, 20 % both)
    run_dir = tmp_path / "run"
    proc = run_fedsim(
        [sys.executable, "-m", "fedsim", "run", "--task", "audio_image", "--model", "resnet_small",
         "--clients", "50", "--clients-per-round", "4", "--rounds", "3", "--local-epochs", "1",
         "--out", str(run_dir), "--set", "federation.lr=0.05", "--set", "federation.momentum=0.9",
         "--set", "evaluation.every=3", "--set", "task.params.eval_per_class=10",
         "--set", "task.params.min_samples=16", "--set", "task.params.max_samples=24"],
        cwd=ROOT, capture_output=True, text=True, timeout=400, env={**os.environ, "PYTHONPATH": str(ROOT)})
    # Assert
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = read_rows(run_dir)
    first, last = rows[0], rows[-1]
    assert {"knn_top1_mean", "i2a_recall_at_1", "a2i_recall_at_5", "knn_top1_audio_raw_input"} <= set(first)
    assert last["round"] == 3 and [r["round"] for r in rows] == [0, 1, 2, 3]
    declared = ["knn_top1_mean", "knn_top1_image", "knn_top1_audio", "i2a_recall_at_1", "i2a_recall_at_5",
                "a2i_recall_at_1", "a2i_recall_at_5"]
    assert all(0.0 <= last[m] <= 1.0 for m in declared), last
    assert sum(r["clients_ok"] for r in rows[1:]) == 12, rows
    data = json.loads((run_dir / "data.json").read_text())
    assert data["source"] == "generated" and data["sounds"]["0"] == "chirp_up"


@pytest.mark.parametrize("args, words", [
    (["--set", 'task.params.modality_mix={"video": 1}'], "unknown holding"),  # case: not a holding
    (["--set", "task.params.encoders=three"], "'single' or 'separate'"),  # case: unknown mode
    (["--model", "mlp"], "convolutional backbone"),  # case: a fixed-size model cannot take spectrograms
])
def test_bad_audio_image_settings_exit_2_with_one_line(args, words):
    from typer.testing import CliRunner

    from fedsim.cli import app

    result = CliRunner().invoke(app, ["run", "--task", "audio_image", *args, "--check"])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and words in lines[0], result.output

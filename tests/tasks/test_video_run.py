"""``fedsim run --task video`` end to end on Flower/Ray: FedVSSL on a folder of tiny videos."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from fedsim.cli import app

from tests.data.test_video_folders import write_video
from tests.server.conftest import read_rows
from tests.conftest import run_fedsim

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_fedvssl_trains_the_video_task_on_a_folder_of_videos(tmp_path):
    # Prepare: 2 classes x 6 UCF-101-named videos of 10 frames (a square moving right or down)
    folder = tmp_path / "ucf"
    for c, name in enumerate(("Right", "Down")):
        (folder / name).mkdir(parents=True)
        for g in (1, 2, 3, 4, 8, 9):
            frames = np.zeros((10, 32, 32, 3), dtype=np.uint8)
            for t in range(10):
                x = 4 + 2 * t
                if c == 0:
                    frames[t, 12:20, x:x + 8] = (220, 60 * g % 255, 40)
                else:
                    frames[t, x:x + 8, 12:20] = (40, 60 * g % 255, 220)
            write_video(folder / name / f"v_{name}_g{g:02d}_c01.avi", frames)
    run_dir = tmp_path / "run"
    # Execute
    proc = run_fedsim(
        [sys.executable, "-m", "fedsim", "run", "--task", "video", "--strategy", "fedvssl", "--data-dir",
         str(folder), "--clients", "4", "--clients-per-round", "2", "--rounds", "1", "--out", str(run_dir),
         "--set", "evaluation.knn_k=3", "--set", "partitioning.kind=natural",  # UCF-101 groups
         "--set", "task.params.pretext=[order,speed,colorize]",
         "--set", "task.params.frames=8", "--set", "task.params.frame_size=16",
         "--set", "task.params.order_frames=2", "--set", "task.params.order_gap=1",
         "--set", "task.params.speed_frames=3", "--set", "task.params.colorize_frames=4",
         "--set", "task.params.eval_frames=4", "--set", "task.params.min_clips=4",
         "--set", "task.params.max_clips=4"],
        cwd=ROOT, capture_output=True, text=True, timeout=280, env={**os.environ, "PYTHONPATH": str(ROOT)})
    # Assert: UCF-101 split 1 holds out groups 1-4; the declared metrics and baselines every round
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads((run_dir / "data.json").read_text())
    assert data["source"] == "folder" and data["held_out"] == "ucf101-split1" and data["num_eval"] == 8
    assert data["partitioning"] == "natural" and data["natural_ids"] == 2
    rows = read_rows(run_dir)
    assert [r["round"] for r in rows] == [0, 1] and rows[1]["clients_ok"] == 2
    assert {"knn_top1", "linear_top1", "psnr", "knn_top1_raw_input", "psnr_grey_input"} <= set(rows[0])


@pytest.mark.parametrize("args, words", [
    (["--data-dir", "MISSING"], "does not exist"),  # case: no such folder
    (["--set", "task.params.pretext=[order,jump]"], "task.params.pretext"),  # case: unknown pretext
    (["--set", "task.params.pretext=order", "--set", "task.params.frames=8"], "needs 11 frames"),  # case: clips too short for clip order (3·3 + 2·1)
    (["--set", "task.params.weights={colorize: 2}"], "colorize"),  # case: weight of an untrained pretext
    (["--model", "resnet_small"], "video backbone"),  # case: an image backbone
])
def test_bad_video_settings_exit_2_with_one_line(tmp_path, args, words):
    args = [str(tmp_path / "missing") if a == "MISSING" else a for a in args]
    result = CliRunner().invoke(app, ["run", "--task", "video", *args, "--check"])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and words in lines[0], result.output

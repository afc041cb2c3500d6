"""``fedsim run --task audio`` end to end: the generated population learns; a folder runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from fedsim.cli import app

from tests.server.conftest import read_rows
from tests.conftest import run_fedsim

ROOT = Path(__file__).resolve().parents[2]


def fedsim(*args: str, timeout: float = 400) -> subprocess.CompletedProcess:
    return run_fedsim([sys.executable, "-m", "fedsim", "run", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.mark.slow  # a learning run of several rounds
@pytest.mark.timeout(420)
def test_the_audio_encoder_beats_its_random_initialisation(tmp_path):
    # Prepare / Execute: 2 rounds of federated SimCLR on the generated sounds, seed 0, 4 clients
    # a round (measured: kNN 0.267 at init, 0.333 after round 2; 6 clients a round for 3 rounds
    # reach 0.396 in twice the time; the objectives' learning is tested in test_audio_learning.py)
    run_dir = tmp_path / "run"
    proc = fedsim("--task", "audio", "--model", "resnet_small", "--strategy", "ldawa", "--clients", "50",
                  "--clients-per-round", "4", "--rounds", "2", "--local-epochs", "3", "--out", str(run_dir),
                  "--set", "federation.lr=0.05", "--set", "federation.momentum=0.9",
                  "--set", "evaluation.every=2", "--set", "task.params.eval_per_class=20")
    # Assert
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = read_rows(run_dir)
    assert set(rows[0]) >= {"knn_top1", "linear_top1", "retrieval_map", "knn_top1_pooled_logmel"}
    assert rows[-1]["round"] == 2 and rows[-1]["knn_top1"] > rows[0]["knn_top1"] + 0.05, rows
    assert json.loads((run_dir / "data.json").read_text())["source"] == "generated"


@pytest.mark.slow  # a learning run of several rounds
@pytest.mark.timeout(300)
def test_a_speech_commands_folder_trains_and_records_its_held_out_clips(tmp_path):
    # Prepare: 3 words x 4 speakers x 3 takes of 0.5 s at 22.05 kHz (resampled to 16 kHz);
    # testing_list.txt holds out speaker d's takes
    rate = 22_050
    gen = np.random.default_rng(0)
    folder = tmp_path / "speech"
    for w, word in enumerate(("yes", "no", "up")):
        (folder / word).mkdir(parents=True)
        for speaker in "abcd":
            for take in range(3):
                t = np.arange(rate // 2) / rate
                wave = 0.3 * np.sin(2 * np.pi * (300 + 200 * w) * t) + 0.01 * gen.standard_normal(len(t))
                sf.write(folder / word / f"{speaker}_nohash_{take}.wav", wave.astype(np.float32), rate)
    (folder / "testing_list.txt").write_text(
        "".join(f"{word}/d_nohash_{k}.wav\n" for word in ("yes", "no", "up") for k in range(3)))
    run_dir = tmp_path / "run"
    # Execute
    proc = fedsim("--task", "audio", "--model", "resnet_small", "--data-dir", str(folder), "--clients", "4",
                  "--clients-per-round", "2", "--rounds", "1", "--out", str(run_dir),
                  "--set", "partitioning.kind=natural", "--set", "evaluation.knn_k=3",
                  "--set", "task.params.clip_seconds=0.5", "--set", "task.params.min_clips=4",
                  "--set", "task.params.max_clips=6")
    # Assert
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads((run_dir / "data.json").read_text())
    assert data["source"] == "folder" and data["num_eval"] == 9 and data["partitioning"] == "natural"
    assert [r["round"] for r in read_rows(run_dir)] == [0, 1]


@pytest.mark.parametrize("make, words", [
    (lambda p: p / "missing", "does not exist"),  # case: no such folder
    (lambda p: _made(p / "empty", Path.mkdir), "no "),  # case: no audio at all
])
def test_malformed_audio_folders_exit_2_with_one_line(tmp_path, make, words):
    path = make(tmp_path)
    result = CliRunner().invoke(app, ["run", "--task", "audio", "--data-dir", str(path), "--check"])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and words in lines[0], result.output
    assert str(path) in " ".join(result.output.split()), result.output


def _made(path: Path, make) -> Path:
    make(path)
    return path

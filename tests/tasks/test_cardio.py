"""The cardio task: FPS change and desync run, ablation models, metrics, and real folders."""

from __future__ import annotations

import math
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from fedsim.cli import app
from fedsim.config import load_config
from fedsim.data.cardio_timeline import RATE, spectral_bpm
from fedsim.data.image_readers import DataFolderError
from fedsim.tasks.cardio import CardioTask, standardise
from fedsim.factory import task_for

SMALL = {"record_s": 8.0, "window_s": 8.0, "eval_subjects": 2, "min_subjects": 2, "max_subjects": 2, "width": 4}


def _task(params: dict, **config) -> CardioTask:
    clients = config.pop("clients", 4)
    exp = load_config(None, {"task.name": "cardio", "task.params": {**SMALL, **params},
                             "federation.clients": clients, "federation.clients_per_round": 1, **config})
    return task_for(exp)


@pytest.mark.parametrize("fps, offset", [
    (15.0, 0.0), (30.0, 0.0), (60.0, 0.0),  # case: changed frame rate
    (30.0, 0.5), (30.0, -0.5),  # case: audio 0.5 s late / early, unrecorded
])
def test_inputs_at_any_frame_rate_and_with_desync_are_evaluated(fps, offset):
    # Prepare
    task = _task({"eval_fps": fps, "eval_offset_s": offset})
    # Execute
    metrics = task.evaluate(task.build_model())
    data = task.eval_samples()
    # Assert: one timeline whatever the device: 8 s at 25 Hz
    assert data["video"].shape == (2, 3, 8 * RATE) and data["audio"].shape == (2, 16, 8 * RATE)
    assert set(metrics) == {"mae", "rmse"} and all(math.isfinite(v) for v in metrics.values())


@pytest.mark.parametrize("modalities, branches", [("av", {"video", "audio"}), ("video", {"video"}),
                                                  ("audio", {"audio"})])
def test_the_ablations_build_only_their_branches(modalities, branches):
    # Prepare
    task = _task({"modalities": modalities})
    model = task.build_model()
    batch = next(iter(task.client_dataset(0).batches(torch.Generator().manual_seed(0), 8)))
    present = {k.split(".")[0] for k in model.state_dict()}
    # Execute: a batch holding only the branches' streams is enough
    logits = model({s: batch[s] for s in branches})
    # Assert
    assert present == branches | {"fusion"}
    assert logits.shape == (len(batch["bpm"]), len(task.bpm_grid))
    assert set(task.encoder_state(model.state_dict())) == {k for k in model.state_dict() if k != "fusion"}


def test_the_estimate_is_the_soft_argmax_over_the_bpm_grid():
    # Prepare: all mass on 70 and 71 BPM equally, or on 150 alone
    task = _task({})
    model = task.build_model()
    logits = torch.full((2, len(task.bpm_grid)), -1e4)
    logits[0, task.bpm_grid == 70] = logits[0, task.bpm_grid == 71] = 0.0
    logits[1, task.bpm_grid == 150] = 0.0
    # Execute / Assert
    torch.testing.assert_close(model.estimate(logits), torch.tensor([70.5, 150.0]))


def test_standardise_gives_relative_colour_change_and_centred_bands():
    # Prepare: colour 0.5 ± 0.05 in green, constant red/blue; audio band offsets
    t = np.arange(4)
    video = np.stack([np.full(4, 0.4), 0.5 + 0.05 * np.array([1, -1, 1, -1]), np.full(4, 0.3)])[None]
    audio = np.stack([t + 10.0, -t + 3.0])[None]
    # Execute
    out = standardise(video, audio)
    # Assert: green's relative change ±0.1 over a std (across the 3x4 values) of 0.1/sqrt(3)
    np.testing.assert_allclose(out["video"][0, 1].numpy(), np.sqrt(3) * np.array([1, -1, 1, -1]), rtol=1e-5)
    np.testing.assert_allclose(out["video"][0, [0, 2]].numpy(), 0.0, atol=1e-6)
    np.testing.assert_allclose(out["audio"][0].numpy(), np.stack([t - 1.5, -(t - 1.5)]) / np.sqrt(1.25), rtol=1e-5)


def test_the_round_0_baselines_are_the_constant_mean_and_the_green_reference():
    # Prepare
    task = _task({"eval_subjects": 3})
    bpm = task.eval_samples()["bpm"]
    # Execute
    base = task.baselines()
    # Assert
    assert base["mae_constant_mean"] == pytest.approx(float((bpm - bpm.mean()).abs().mean()))
    assert base["rmse_constant_mean"] == pytest.approx(float((bpm - bpm.mean()).pow(2).mean().sqrt()))
    assert set(base) == {"mae_constant_mean", "rmse_constant_mean", "mae_green_spectral"}


# ---- real folders ------------------------------------------------------------------------


def _subject(folder: Path, bpm: float, *, fps: int = 20, seconds: float = 10.0) -> None:
    """A subject folder: an H.264 face video whose green pulses at ``bpm`` (5 %), a 8 kHz WAV
    of knocks at the same rate and a two-row reference CSV."""
    folder.mkdir(parents=True)
    with av.open(str(folder / "face.mp4"), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"crf": "10"})
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        for i in range(int(seconds * fps)):
            img = np.zeros((32, 32, 3), np.uint8)
            img[:] = (40, 60, 160)
            pulse = 1 + 0.05 * math.sin(2 * math.pi * bpm / 60 * i / fps)
            img[6:26, 8:24] = np.array([200, 120, 100]) * np.array([1, pulse, 1])
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    t = np.arange(int(seconds * 8000)) / 8000
    beats = np.sin(2 * np.pi * 50 * t) * (np.sin(np.pi * bpm / 60 * t) ** 40)
    sf.write(folder / "audio.wav", beats.astype(np.float32), 8000)
    (folder / "ref.csv").write_text(f"time,bpm\n0,{bpm}\n{seconds},{bpm}\n")


@pytest.mark.timeout(120)
def test_a_subject_folder_is_read_onto_the_timeline_and_evaluated(tmp_path):
    # Prepare: 3 subjects; with 2 clients one is held out (eval_fraction 0.2, at least one)
    for name, bpm in (("s1", 66.0), ("s2", 90.0), ("s3", 120.0)):
        _subject(tmp_path / name, bpm)
    task = _task({"window_s": 8.0, "stride_s": 1.0}, clients=2, **{"task.data_dir": str(tmp_path)})
    # Execute
    described = task.describe_data()
    data = task.client_dataset(0)
    metrics = task.evaluate(task.build_model())
    # Assert: a client holds one subject: its 9.95 s video (frames 0 .. 9.95 s) gives windows of
    # 8 s (200 steps) starting at 0 and 1 s; its colour pulse is the reference BPM
    assert described["num_subjects"] == 3 and described["num_eval_subjects"] == 1
    assert data["video"].shape == (2, 3, 200) and data["audio"].shape == (2, 16, 200)
    assert float(data["bpm"][0]) in (66.0, 90.0, 120.0)
    assert abs(spectral_bpm(data["video"][0, 1].numpy()) - float(data["bpm"][0])) <= 1.0
    assert math.isfinite(metrics["mae"])


@pytest.mark.parametrize("make, words", [
    (lambda p: p / "missing", "does not exist"),  # case: no such folder
    (lambda p: (_subject(p / "a", 70.0, seconds=1.0), _subject(p / "b", 70.0, seconds=1.0),
                (p / "b" / "ref.csv").unlink(), p)[-1], "exactly one .csv"),  # case: a subject without its CSV
])
def test_malformed_cardio_folders_exit_2_with_one_line(tmp_path, make, words):
    path = make(tmp_path)
    result = CliRunner().invoke(app, ["run", "--task", "cardio", "--data-dir", str(path), "--check"])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and words in lines[0], result.output


def test_more_clients_than_subjects_is_a_folder_error(tmp_path):
    for name in ("a", "b", "c"):
        _subject(tmp_path / name, 70.0, seconds=1.0)
    with pytest.raises(DataFolderError, match="2 training subjects, fewer than the 4 clients"):
        _task({}, clients=4, **{"task.data_dir": str(tmp_path)}).describe_data()


def test_a_client_s_windows_are_built_once_and_equal_to_a_fresh_build():
    # Prepare
    task = _task({})
    # Execute
    first, again = task.client_dataset(1), task.client_dataset(1)
    fresh = _task({}).client_dataset(1)
    # Assert: the cached windows are the pure function of (seed, client id)
    assert first is again
    assert all(torch.equal(first[k], fresh[k]) for k in ("video", "audio", "bpm"))

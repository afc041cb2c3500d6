"""The image task on your own data: ``fedsim run --task image --data-dir DIR``.

Folders are written by the tests: an ImageFolder tree of PNG digits (rendered from the
bundled digits in random writer styles, so SSL has something to learn) with a held-out
``test/`` split, a CIFAR-10-style batch folder, and malformed folders.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.io import write_png

from typer.testing import CliRunner

from fedsim.cli import app
from fedsim.config import load_config
from fedsim.data import digits
from fedsim.factory import task_for
from tests.server.conftest import read_rows
from tests.conftest import run_fedsim

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "simulations" / "quickstart.yaml"


def write_digit_folder(root: Path, n_train: int, n_test: int, size: int = 20) -> Path:
    """``root/train/<digit>/w<k>_<i>.png`` and ``root/test/<digit>/...``, grey, styled."""
    images, labels = digits.load_base()
    rng = np.random.default_rng(0)
    scale = digits.StyleScale()
    for split, n in (("train", n_train), ("test", n_test)):
        for c in range(10 if n else 0):
            idx = rng.choice(np.flatnonzero(labels == c), size=n)
            x = digits.render(images[idx], digits.draw_styles(rng, n, scale), size, scale.box)
            (root / split / str(c)).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                write_png((x[i] * 255).round().to(torch.uint8), str(root / split / str(c) / f"w{i % 7}_{i}.png"))
    return root


def fedsim(*args: str, timeout: float = 280) -> subprocess.CompletedProcess:
    return run_fedsim([sys.executable, "-m", "fedsim", "run", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.mark.slow  # a learning run of several rounds
@pytest.mark.timeout(300)
def test_fedsim_run_on_an_image_folder_beats_the_random_init_encoder(tmp_path):
    # Prepare: 40 training and 20 held-out images per class
    folder = write_digit_folder(tmp_path / "digits", n_train=40, n_test=20)
    run_dir = tmp_path / "run"
    # Execute: the demo's settings on the folder, 50 clients, 5 rounds
    proc = fedsim("--config", str(QUICKSTART), "--data-dir", str(folder), "--clients", "50",
                  "--rounds", "5", "--out", str(run_dir), "--set", "evaluation.every=5")
    # Assert (measured at seed 0: kNN 0.21 at init, 0.32 after 5 rounds; raw pixels 0.35)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = read_rows(run_dir)
    assert rows[-1]["round"] == 5 and rows[-1]["knn_top1"] > rows[0]["knn_top1"] + 0.05
    data = json.loads((run_dir / "data.json").read_text())
    assert data["kind"] == "image-folder" and data["held_out"] == "test-split"
    assert data["num_train"] == 400 and data["num_eval"] == 200
    assert all(name.startswith("test/") for name in data["held_out_files"])


def test_clients_read_only_training_images_and_evaluation_only_held_out_ones(tmp_path):
    # Prepare: no test/ split, so the task holds out a seeded split that the run records
    folder = tmp_path / "flat"
    write_digit_folder(folder, n_train=6, n_test=0)
    for c in range(10):
        os.replace(folder / "train" / str(c), folder / str(c))
    (folder / "train").rmdir()
    exp = load_config(None, {"task.data_dir": str(folder), "federation.clients": 1000,
                             "task.params": {"image_size": 16, "min_samples": 4, "max_samples": 8}})
    task = task_for(exp)
    index = task._folder.index
    # Execute
    items = np.concatenate([task._folder.client_items(c) for c in range(0, 1000, 37)])
    bank, query = task._folder.eval_split()
    # Assert
    assert index.held_out == "seeded-split" and task.describe_data()["held_out_files"]
    assert set(items) <= set(index.train_ids) and not set(items) & set(index.eval_ids)
    assert set(bank) | set(query) <= set(index.eval_ids) and not set(bank) & set(query)
    x = task.client_dataset(37)["image"]
    assert x.shape[1:] == (1, 16, 16) and 4 <= len(x) <= 8


def test_a_cifar_batch_folder_trains_colour_images(tmp_path):
    # Prepare: a CIFAR-10-style folder with 30 training and 10 test images
    gen = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name, n in (("data_batch_1", 30), ("test_batch", 10)):
        batch = {b"data": gen.integers(0, 256, (n, 3072), dtype=np.uint8),
                 b"labels": [i % 3 for i in range(n)]}
        with open(folder / name, "wb") as fh:
            pickle.dump(batch, fh)
    first_pixel = pickle.load(open(folder / "data_batch_1", "rb"), encoding="bytes")[b"data"][0, 0]
    exp = load_config(None, {"task.data_dir": str(tmp_path), "federation.clients": 5,
                             "task.params": {"image_size": 32, "min_samples": 4, "max_samples": 4,
                                             "objective": "supervised"}})
    task = task_for(exp)
    # Execute
    data = task.client_dataset(0)
    model = task.build_model()
    loss = task.loss(model, data.tensors, torch.Generator().manual_seed(0))
    # Assert
    assert data["image"].shape == (4, 3, 32, 32) and set(data["label"].tolist()) <= {0, 1, 2}
    assert task.channels == 3 and task.num_classes == 3 and torch.isfinite(loss)
    items = task._folder.client_items(0)
    if 0 in items:  # item 0 is row 0 of data_batch_1: its red channel's top-left pixel
        assert float(data["image"][list(items).index(0), 0, 0, 0]) == pytest.approx(first_pixel / 255)
    assert task.eval_data().bank_x.shape[1:] == (3, 32, 32)


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "missing", "does not exist"),  # case: no such folder
    (lambda p: _made(p / "file.png", lambda f: f.write_bytes(b"x")), "not a director"),  # case: a file
    (lambda p: _made(p / "empty", Path.mkdir), "no image"),  # case: empty folder
    (lambda p: write_digit_folder(p / "one", 2, 0) and _keep_one_class(p / "one"), "has 1 class"),  # case: one class
])
def test_malformed_folders_exit_2_with_one_line_naming_the_path(tmp_path, make, message):
    # Prepare
    path = make(tmp_path)
    # Execute
    result = CliRunner().invoke(app, ["run", "--data-dir", str(path), "--check"])
    # Assert
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0].lower(), result.output
    assert str(path) in " ".join(result.output.split()), result.output  # rich may wrap a long path


def _made(path: Path, make) -> Path:
    make(path)
    return path


def _keep_one_class(root: Path) -> Path:
    for c in range(1, 10):
        for f in (root / "train" / str(c)).iterdir():
            f.unlink()
        (root / "train" / str(c)).rmdir()
    return root


def test_data_dir_is_refused_for_a_task_that_reads_no_folders(tmp_path):
    result = CliRunner().invoke(app, ["run", "--task", "synthetic", "--model", "mlp", "--data-dir", str(tmp_path),
                                      "--check"])
    assert result.exit_code == 2 and "synthetic" in result.output

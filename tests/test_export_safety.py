"""``fedsim export`` never overwrites what it was not asked to, takes weights only from the
run unless told otherwise, and exports every registered task or says in one line it cannot."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from fedsim.cli import app
from fedsim.config import load_config
from fedsim.export import TOLERANCE, ExportError, export_run, load_run
from fedsim.plugins import load_plugins
from fedsim.registry import TASKS
from fedsim.server.outputs import RunWriter
from fedsim.factory import task_for
from tests.test_export import make_run, randomised

pytestmark = pytest.mark.timeout(300)
runner = CliRunner()


def _export(*args: str):
    result = runner.invoke(app, ["export", *args])
    lines = result.output.strip().splitlines()
    return result.exit_code, lines


def test_an_existing_output_is_refused_without_force_and_replaced_with_it(tmp_path):
    # Prepare: the user's own file where the encoder would go
    run_dir = make_run(tmp_path, "mlp")
    mine = tmp_path / "mine.pt"
    mine.write_bytes(b"the user's file")
    # Execute / Assert: refused, one line, the file untouched
    code, lines = _export(str(run_dir), "-f", "torchscript", "--out", str(mine))
    assert code == 2 and len(lines) == 1 and "already exists" in lines[0] and "--force" in lines[0]
    assert mine.read_bytes() == b"the user's file"
    code, lines = _export(str(run_dir), "-f", "torchscript", "--out", str(mine), "--force")
    assert code == 0, lines
    assert torch.jit.load(str(mine)) is not None


def test_the_run_s_own_weights_are_never_the_output(tmp_path):
    run_dir = make_run(tmp_path, "mlp")
    before = (run_dir / "model.pt").read_bytes()
    for extra in ([], ["--force"]):
        code, lines = _export(str(run_dir), "-f", "torchscript", "--out", str(run_dir / "model.pt"), *extra)
        assert code == 2 and len(lines) == 1, lines
    assert (run_dir / "model.pt").read_bytes() == before


def test_out_dir_writes_into_the_directory(tmp_path):
    run_dir = make_run(tmp_path, "mlp")
    (tmp_path / "exports").mkdir()
    code, lines = _export(str(run_dir), "-f", "torchscript", "--out", str(tmp_path / "exports"))
    assert code == 0, lines
    assert (tmp_path / "exports" / "encoder.pt").is_file()
    assert f"wrote {tmp_path / 'exports' / 'encoder.pt'}" in lines[0]


def test_weights_outside_the_run_need_an_explicit_flag(tmp_path):
    # Prepare: the same weights copied outside the run directory
    run_dir = make_run(tmp_path, "mlp")
    outside = tmp_path / "elsewhere.pt"
    outside.write_bytes((run_dir / "model.pt").read_bytes())
    # Execute / Assert: an absolute path and a ../ path are both refused without the flag
    for given in (str(outside), "../elsewhere.pt"):
        code, lines = _export(str(run_dir), "-f", "torchscript", "--weights", given)
        assert code == 2 and len(lines) == 1 and "--external-weights" in lines[0], lines
    code, lines = _export(str(run_dir), "-f", "torchscript", "--weights", str(outside), "--external-weights",
                          "--out", str(tmp_path / "x.pt"))
    assert code == 0, lines


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_an_unwritable_out_folder_is_one_line(tmp_path):
    run_dir = make_run(tmp_path, "mlp")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    code, lines = _export(str(run_dir), "-f", "torchscript", "--out", str(locked / "e.pt"))
    assert code == 2 and len(lines) == 1 and "cannot write" in lines[0]


def test_an_unwritable_out_folder_is_one_line_also_for_root(tmp_path, monkeypatch):
    # Prepare: the folder refuses files as a read-only filesystem would
    import tempfile

    run_dir = make_run(tmp_path, "mlp")

    def read_only(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)
    # Execute / Assert
    code, lines = _export(str(run_dir), "-f", "torchscript", "--out", str(tmp_path / "ro" / "e.pt"))
    assert code == 2 and len(lines) == 1 and "Read-only file system" in lines[0], lines


def test_a_long_mismatch_error_is_at_most_300_characters(tmp_path):
    # Prepare: weights of a different model (torch's message lists every key)
    run_dir = make_run(tmp_path, "resnet_small")
    torch.save({f"layer{i}.weight": torch.zeros(1) for i in range(200)}, run_dir / "model.pt")
    # Execute
    code, lines = _export(str(run_dir))
    # Assert
    assert code == 2 and len(lines) == 1 and len(lines[0]) <= 310 and "do not fit" in lines[0], lines


def _tiny_run(tmp_path: Path, task: str) -> Path:
    exp = load_config(None, {"task.name": task, "federation.clients": 2, "federation.clients_per_round": 1})
    run_dir = tmp_path / task
    RunWriter(run_dir, exp.to_yaml())
    torch.save(randomised(task_for(exp).build_model()).state_dict(), run_dir / "model.pt")
    return run_dir


@pytest.mark.slow
def test_every_registered_task_exports_or_says_in_one_line_it_cannot(tmp_path):
    load_plugins()
    exported, refused = [], []
    for task in TASKS.names():
        if not TASKS.get(task).__module__.startswith("fedsim."):
            continue  # a test plugin another test registered in this process
        run_dir = _tiny_run(tmp_path, task)
        try:
            report = export_run(run_dir, "torchscript", samples=2)
        except ExportError as err:
            message = str(err)
            assert "\n" not in message and f"task {task!r}: not supported by export" in message
            refused.append(task)
            continue
        # the written file, loaded back, gives the trained encoder's outputs
        _, task_obj, model = load_run(run_dir)
        x = task_obj.eval_data().query_x[:2].float()
        with torch.no_grad():
            want = model.backbone(x).numpy()
        got = torch.jit.load(str(report.path))(x).detach().numpy()
        assert np.abs(got - want).max() <= 10 * TOLERANCE, task
        exported.append(task)
    # the single-input tasks export; the two-input ones say so
    assert set(exported) == {"audio", "image", "synthetic", "video"}
    assert set(refused) == {"audio_image", "cardio"}

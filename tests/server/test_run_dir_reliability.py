"""Run directories under damage: non-finite checkpoints, garbage in rounds.jsonl, finished
runs resumed. Direct calls and the CLI's pre-start checks; no Ray."""

from __future__ import annotations

import json
import os
import stat

import pytest
import torch
from typer.testing import CliRunner

from fedsim import atomic
from fedsim.cli import app
from fedsim.server.outputs import NonFiniteCheckpoint, RunDirError, RunWriter, first_non_finite, read_rounds
from tests.server.test_resume_checks import one_line_exit_2, resume, tiny, write_run


def _poison(run, where: str, name: str | None = None) -> str:
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    if where == "global":
        name = name or next(k for k, v in state["global"].items() if v.is_floating_point())
        state["global"][name] = state["global"][name].clone()
        state["global"][name].view(-1)[0] = float("nan")
    torch.save(state, run / "checkpoint.pt")
    return name


def test_a_checkpoint_with_a_nan_tensor_is_one_line_exit_2_naming_round_and_tensor(tmp_path):
    # Prepare: round 2's checkpoint, one weight NaN
    run = write_run(tmp_path / "run", tiny())
    name = _poison(run, "global")
    # Execute
    line = one_line_exit_2(resume(run, "--rounds", "5"))
    # Assert
    assert f"(round 2) holds a non-finite tensor global.{name}" in line


def test_first_non_finite_walks_strategy_state():
    state = {"global": {"w": torch.ones(2)}, "strategy": {"momentum": [torch.zeros(1), torch.tensor([float("inf")])],
                                                         "count": torch.tensor([3])}}
    assert first_non_finite(state) == "strategy.momentum.1"
    state["strategy"]["momentum"][1] = torch.zeros(1)
    assert first_non_finite(state) is None


def test_a_non_finite_checkpoint_is_not_written_and_the_previous_one_stays(tmp_path):
    # Prepare
    writer = RunWriter(tmp_path / "run", "name: x\n")
    writer.checkpoint({"round": 1, "global": {"w": torch.ones(3)}, "strategy": {}})
    before = (tmp_path / "run" / "checkpoint.pt").read_bytes()
    # Execute / Assert
    with pytest.raises(NonFiniteCheckpoint, match=r"round 2: checkpoint tensor global\.w is not finite"):
        writer.checkpoint({"round": 2, "global": {"w": torch.tensor([1.0, float("nan"), 0.0])}, "strategy": {}})
    assert (tmp_path / "run" / "checkpoint.pt").read_bytes() == before


@pytest.mark.parametrize("garbage, line_no", [
    ("not json at all\n", 2),  # case: text
    ("[1, 2]\n", 2),  # case: JSON, not a record
    ('{"round": "two"}\n', 2),  # case: a record without an integer round
])
def test_garbage_in_rounds_jsonl_is_one_line_naming_the_line(tmp_path, garbage, line_no):
    # Prepare: round 0, the garbage, then rounds 1 and 2
    run = write_run(tmp_path / "run", tiny())
    lines = (run / "rounds.jsonl").read_text().splitlines(keepends=True)
    (run / "rounds.jsonl").write_text(lines[0] + garbage + "".join(lines[1:]))
    # Execute
    line = one_line_exit_2(resume(run))
    report = CliRunner().invoke(app, ["report", str(run)])
    # Assert: resume --check and report both name the line
    assert f"rounds.jsonl line {line_no} is not a round record" in line
    assert report.exit_code == 2 and f"line {line_no} is not a round record" in report.output
    assert "Traceback" not in report.output


def test_a_last_line_cut_by_a_crash_is_ignored(tmp_path):
    run = write_run(tmp_path / "run", tiny())
    with open(run / "rounds.jsonl", "a") as fh:
        fh.write('{"round": 3, "train_lo')
    assert [r["round"] for r in read_rounds(run)] == [0, 1, 2]
    with pytest.raises(RunDirError):  # the same text with its newline is garbage, not a cut
        (run / "rounds.jsonl").write_text((run / "rounds.jsonl").read_text() + "\n")
        read_rounds(run)


def test_resuming_a_finished_run_leaves_it_alone(tmp_path):
    # Prepare: a run that completed its 3 rounds and wrote its summary
    run = write_run(tmp_path / "run", tiny(), completed=3)
    (run / "summary.json").write_text(json.dumps({"wall_seconds": 12.5, "rounds": 3}))
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    # Execute: no --check, so the run would start if there were anything to do
    result = CliRunner().invoke(app, ["run", "--resume", str(run)])
    # Assert: exit 0, one note, no file changed
    assert result.exit_code == 0, result.output
    assert "already finished its 3 rounds; nothing to do" in result.stderr
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_a_dangling_out_link_is_one_line_exit_2_before_start(tmp_path):
    link = tmp_path / "out"
    link.symlink_to(tmp_path / "gone" / "run")
    result = CliRunner().invoke(app, ["run", "--check", "--out", str(link)])
    line = one_line_exit_2(result)
    assert "is a link to" in line and "which does not exist" in line


def test_an_out_where_no_file_can_be_written_is_one_line_exit_2(tmp_path, monkeypatch):
    # Prepare: the folder refuses new files as a read-only filesystem does (also for root)
    import tempfile

    def read_only(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)
    for out in (tmp_path / "new" / "run", tmp_path):  # a new folder under it, and an empty one
        line = one_line_exit_2(CliRunner().invoke(app, ["run", "--check", "--out", str(out)]))
        assert "no file can be written in" in line and "Read-only file system" in line


def test_a_full_disk_is_one_line_and_the_checkpoint_stays(tmp_path, monkeypatch):
    # Prepare: a checkpoint, then a disk that is full for the next write
    import errno

    from fedsim.atomic import DiskFull

    writer = RunWriter(tmp_path / "run", "name: x\n")
    writer.checkpoint({"round": 1, "global": {"w": torch.ones(3)}, "strategy": {}})
    before = (tmp_path / "run" / "checkpoint.pt").read_bytes()

    def full(state, fh):
        fh.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    # Execute / Assert: one line naming the path, the old checkpoint byte for byte, no temp file
    with pytest.raises(DiskFull) as info:
        writer.checkpoint({"round": 2, "global": {"w": torch.zeros(3)}, "strategy": {}})
    assert str(info.value) == f"no space left on device at {tmp_path / 'run' / 'checkpoint.pt'}"
    assert (tmp_path / "run" / "checkpoint.pt").read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["checkpoint.pt", "config.yaml", "rounds.jsonl"]


def test_torch_s_write_failure_on_a_nearly_full_disk_is_disk_full(tmp_path, monkeypatch):
    # torch.save reports a full disk as a RuntimeError without the errno
    import shutil

    from fedsim.atomic import DiskFull, as_disk_full

    error = RuntimeError("[enforce fail at inline_container.cc:664] . PytorchStreamWriter failed writing file "
                         "data/0: file write failed")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(100, 100, 0))
    assert isinstance(as_disk_full(error, tmp_path / "checkpoint.pt"), DiskFull)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(2 ** 40, 0, 2 ** 40))
    assert as_disk_full(error, tmp_path / "checkpoint.pt") is None  # plenty of space: another failure


def test_summary_json_is_written_last_and_whole(tmp_path, monkeypatch):
    """``summary.json`` marks a finished run (``fedsim deploy run`` returns when it appears and
    reads it): it must not appear before the curves, nor be readable half-written."""
    from fedsim.server import outputs

    writer = RunWriter(tmp_path / "run", "name: x\n")
    seen_when_plotting: list[bool] = []
    monkeypatch.setattr(outputs, "plot_curves",
                        lambda *a, **k: seen_when_plotting.append((tmp_path / "run" / "summary.json").exists()))
    writes: list[str] = []
    real_write = outputs.atomic_write_bytes
    monkeypatch.setattr(outputs, "atomic_write_bytes",
                        lambda path, write: (writes.append(str(path)), real_write(path, write))[1])
    writer.finish({"rounds": 2, "name": "x"}, {"w": torch.ones(2)}, {"knn_top1": True})
    assert seen_when_plotting == [False]
    assert writes[-1] == str(tmp_path / "run" / "summary.json")  # via a temp file and os.replace
    assert json.loads((tmp_path / "run" / "summary.json").read_text()) == {"rounds": 2, "name": "x"}


def test_an_atomic_write_gives_the_permissions_a_plain_write_would(tmp_path):
    """mkstemp's temp file is 0o600; the written file must not be (a shared group reads runs)."""
    old_mask = os.umask(0o027)
    atomic.new_file_mode.cache_clear()  # read once per process: read it under this umask
    try:
        (tmp_path / "plain.json").write_bytes(b"{}")
        atomic.atomic_write_bytes(tmp_path / "summary.json", lambda fh: fh.write(b"{}"))
    finally:
        os.umask(old_mask)
        atomic.new_file_mode.cache_clear()

    def mode(name: str) -> int:
        return stat.S_IMODE((tmp_path / name).stat().st_mode)

    assert mode("plain.json") == mode("summary.json") == 0o640  # a new file: 0o666 less the umask
    (tmp_path / "summary.json").chmod(0o604)
    atomic.atomic_write_bytes(tmp_path / "summary.json", lambda fh: fh.write(b'{"round": 2}'))
    assert mode("summary.json") == 0o604  # a replaced file keeps its mode, as a plain write does
    assert (tmp_path / "summary.json").read_bytes() == b'{"round": 2}'

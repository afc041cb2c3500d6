"""Determinism (same seed -> identical metrics and weights) and crash-safe resume."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from fedsim.launcher import simulate
from fedsim.server.loop import RunAborted
from tests.conftest import run_fedsim
from tests.server.conftest import read_rows, small_config, small_yaml


def _is_timing(key: str) -> bool:
    return key.endswith("_seconds") or key == "updates_per_s"


def _metrics(run_dir):
    return [{k: v for k, v in row.items() if not _is_timing(k)} for row in read_rows(run_dir)]


@pytest.mark.timeout(600)
@pytest.mark.parametrize("engine", ["flower", "cohort"])
def test_same_seed_gives_identical_metrics_and_weights(simulated, engine):
    first, second = simulated(engine, tag="a"), simulated(engine, tag="b")

    assert _metrics(first) == _metrics(second)
    a = torch.load(first / "model.pt", weights_only=True)
    b = torch.load(second / "model.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


def _fedsim(*args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "fedsim", "run", "--quiet", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, **kwargs)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_sigkill_mid_round_then_resume_is_bit_identical(simulated, tmp_path):
    config = small_yaml(tmp_path / "exp.yaml", **{"engine.name": "cohort"})
    run_dir = tmp_path / "killed"
    proc = _fedsim("--config", str(config), "--out", str(run_dir))
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if (run_dir / "checkpoint.pt").exists():
            break  # round 1 is complete (its line, then its checkpoint), round 2 is under way
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert torch.load(run_dir / "checkpoint.pt", weights_only=True)["round"] < 3

    resumed = subprocess.run([sys.executable, "-m", "fedsim", "run", "--quiet", "--resume", str(run_dir)],
                             capture_output=True, text=True, timeout=300)

    assert resumed.returncode == 0, resumed.stderr
    assert [r["round"] for r in read_rows(run_dir)] == [0, 1, 2, 3]
    reference = torch.load(simulated("cohort") / "model.pt", weights_only=True)
    final = torch.load(run_dir / "model.pt", weights_only=True)
    assert all(torch.equal(final[k], reference[k]) for k in reference)


def test_kill_during_checkpoint_write_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "checkpoint.pt"
    torch.save({"round": 1}, path)
    script = (
        "import os, signal, sys\n"
        "from fedsim.atomic import atomic_write_bytes\n"
        "def write(fh):\n"
        "    fh.write(b'partial checkpoint bytes')\n"
        "    fh.flush()\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        f"atomic_write_bytes({str(path)!r}, write)\n"
    )

    proc = subprocess.run([sys.executable, "-c", script], timeout=60)

    assert proc.returncode == -signal.SIGKILL
    assert torch.load(path, weights_only=True) == {"round": 1}


@pytest.mark.timeout(300)
def test_run_stops_with_exit_code_3_after_max_failed_rounds(tmp_path):
    config = small_yaml(tmp_path / "exp.yaml", **{
        "engine.name": "cohort", "faults": {"exception": list(range(6))},
        "federation.max_failed_rounds": 2})

    proc = run_fedsim(["run", "--quiet", "--config", str(config), "--out", str(tmp_path / "run")])
    stderr = proc.stderr

    assert proc.returncode == 3, stderr
    assert "2 consecutive rounds failed" in stderr
    # every round wrote its checkpoint (the model unchanged since round 0)
    assert "model last changed in round 0, last checkpoint is round 2" in stderr
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["round"] == 2
    rows = read_rows(tmp_path / "run")
    assert [r["skipped"] for r in rows[1:]] == [True, True]
    assert all(r["failed"] == {"client-exception": 3} for r in rows[1:])


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_diverged_server_rule_stops_the_run_instead_of_training_on_nan(tmp_path, monkeypatch):
    # Prepare: the server's finalize (it runs in this process) returns a NaN global in round 2
    from fedsim.strategies.fedavg import FedAvg

    real = FedAvg.finalize

    def diverge(self, sums, previous, server_round):
        out = real(self, sums, previous, server_round)
        if server_round == 2:
            out = {k: v * float("nan") if v.is_floating_point() else v for k, v in out.items()}
        return out

    monkeypatch.setattr(FedAvg, "finalize", diverge)
    # Execute
    with pytest.raises(RunAborted, match="produced a non-finite global model in round 2"):
        simulate(small_config(), str(tmp_path / "run"), quiet=True)
    # Assert: round 1 is complete and checkpointed, nothing after it
    assert [r["round"] for r in read_rows(tmp_path / "run")] == [0, 1]
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["round"] == 1

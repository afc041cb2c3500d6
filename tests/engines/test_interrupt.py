"""A run always ends: SIGINT/SIGTERM, an unreachable Ray address or a dying runtime stop it
within seconds with one line, no Ray process left, and ``--resume`` continues bit-identically.

The signal tests run ``python -m fedsim run`` as a subprocess in its own session, so every
Ray process it starts shares its process group and can be found (and checked gone) by it.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
import yaml

from fedsim.config import load_config
from fedsim.engines.stop import RunStopped

pytestmark = pytest.mark.slow  # subprocess runs with Ray of their own

# synthetic task, MLP: ~0.1 s a round on 2 busy cores, so a 60-round run is mid-way when signalled
TINY = {"task.name": "synthetic", "model.name": "mlp", "federation.clients": 4,
        "federation.clients_per_round": 4, "federation.rounds": 60, "evaluation.every": 20,
        "engine.name": "cohort"}
EXIT_SECONDS = 30.0  # from the signal to the process's exit
RAY_GONE_SECONDS = 20.0  # then until no process of the run's group is left


def _fedsim(*args: str, **popen: object) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "fedsim", "run", "--quiet", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, **popen)


def _rows(run_dir: Path) -> int:
    path = run_dir / "rounds.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def _live_group_members(pgid: int) -> list[str]:
    """Processes (not zombies) still in process group ``pgid``."""
    out = subprocess.run(["ps", "-eo", "pid=,pgid=,stat=,args="], capture_output=True, text=True).stdout
    rows = [line.split(None, 3) for line in out.splitlines()]
    return [r[3] for r in rows if len(r) == 4 and int(r[1]) == pgid and not r[2].startswith("Z")]


def _model(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "model.pt", weights_only=True)


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    path.write_text(load_config(None, TINY).to_yaml())
    return path


@pytest.fixture(scope="module")
def uninterrupted(config, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("whole") / "run"
    proc = _fedsim("--config", str(config), "--out", str(run_dir))
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err
    return run_dir


@pytest.mark.timeout(600)
# Both signals go through the same stop path; resuming it again after SIGTERM would add a
# Ray start-up and a 60-round run to the suite and test nothing SIGINT's resume does not.
@pytest.mark.parametrize("sig, code, resume", [(signal.SIGINT, 130, True), (signal.SIGTERM, 143, False)],
                         ids=["SIGINT", "SIGTERM"])
def test_signal_ends_the_run_cleanly_and_resume_is_bit_identical(sig, code, resume, config, uninterrupted, tmp_path):
    run_dir = tmp_path / "run"
    proc = _fedsim("--config", str(config), "--out", str(run_dir))
    deadline = time.monotonic() + 240
    while _rows(run_dir) < 3:  # round 0's evaluation and two rounds are on disk
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1]
        time.sleep(0.05)

    os.kill(proc.pid, sig)
    sent = time.monotonic()
    _, err = proc.communicate(timeout=120)
    took = time.monotonic() - sent

    assert proc.returncode == code, err
    assert took < EXIT_SECONDS, f"exited {took:.1f}s after {sig.name}"
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    checkpoint_round = torch.load(run_dir / "checkpoint.pt", weights_only=True)["round"]
    assert lines[0] == (f"error: interrupted by {sig.name} after round {checkpoint_round} of 60; "
                        f"continue with: fedsim run --resume {run_dir}")
    assert 2 <= checkpoint_round < 60
    gone_by = time.monotonic() + RAY_GONE_SECONDS
    while (left := _live_group_members(proc.pid)) and time.monotonic() < gone_by:
        time.sleep(0.5)
    assert not left, f"still running after {RAY_GONE_SECONDS:.0f}s: {left}"
    if not resume:
        return

    resumed = _fedsim("--resume", str(run_dir))
    _, err = resumed.communicate(timeout=240)

    assert resumed.returncode == 0, err
    expected, got = _model(uninterrupted), _model(run_dir)
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[k], got[k]) for k in expected)


@pytest.mark.timeout(120)
def test_unreachable_ray_address_is_one_line_and_exit_2(config, tmp_path):
    started = time.monotonic()
    proc = _fedsim("--config", str(config), "--out", str(tmp_path / "run"), "--ray-address", "127.0.0.1:1")
    _, err = proc.communicate(timeout=90)
    took = time.monotonic() - started

    assert proc.returncode == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: engine.ray_address: no Ray cluster answers at 127.0.0.1:1")
    assert took < 30, f"took {took:.1f}s"
    assert not (tmp_path / "run").exists()


@pytest.mark.own_ray
@pytest.mark.timeout(240)
def test_runtime_that_dies_stops_the_round_loop(tmp_path, monkeypatch):
    """Flower's Ray backend failing in the main thread used to leave the ServerApp thread
    polling forever; now the loop is stopped and the cause named."""
    import ray
    from flwr.server.superlink.fleet.vce.backend.raybackend import RayBackend

    from fedsim.launcher import simulate

    def build(self, app_fn):
        raise RuntimeError("actor pool exploded")

    monkeypatch.setattr(RayBackend, "build", build)
    threads_before = set(threading.enumerate())
    started = time.monotonic()

    with pytest.raises(RunStopped) as stopped:
        simulate(load_config(None, {**TINY, "federation.rounds": 2}), str(tmp_path / "run"), quiet=True)

    assert time.monotonic() - started < 120
    assert stopped.value.signum is None and stopped.value.last_round == 0
    assert "actor pool exploded" in stopped.value.reason
    assert not ray.is_initialized()
    assert not [t for t in threading.enumerate() if t not in threads_before and not t.daemon and t.is_alive()]
    assert json.loads((tmp_path / "run" / "rounds.jsonl").read_text().splitlines()[0])["round"] == 0


@pytest.mark.timeout(300)
def test_a_client_that_never_returns_does_not_keep_the_run_from_ending(tmp_path):
    """Flower's workers wait for an actor without a timeout and its runtime returns only when
    all are free; fedsim gives up the hung actor once the round loop has ended."""
    config = tmp_path / "hang.yaml"
    exp = yaml.safe_load(load_config(None, {**TINY, "federation.rounds": 1, "federation.round_timeout": 1.0,
                                            "faults": {"timeout": [0]}}).to_yaml())
    exp["plugins"] = ["tests.engines.hang_plugin"]  # validated by the subprocess only: never import it here
    config.write_text(yaml.safe_dump(exp))
    repo = Path(__file__).resolve().parents[2]
    started = time.monotonic()
    proc = _fedsim("--config", str(config), "--out", str(tmp_path / "run"), cwd=repo,
                   env={**os.environ, "PYTHONPATH": str(repo)})
    _, err = proc.communicate(timeout=240)

    assert proc.returncode == 0, err
    assert time.monotonic() - started < 120
    row = json.loads((tmp_path / "run" / "rounds.jsonl").read_text().splitlines()[1])
    assert row["clients_ok"] == 2 and row["failed"] == {"timeout": 2}  # client 0 and its worker's other

"""`--ray-address`: a run attaches to a Ray head the test starts itself on 127.0.0.1."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.server.conftest import small_yaml

pytestmark = pytest.mark.slow  # subprocess runs with Ray of their own

RAY = str(Path(sys.executable).parent / "ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_status(address: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([RAY, "status", "--address", address], capture_output=True, text=True,
                          timeout=60, env=env)


@pytest.mark.timeout(300)
def test_run_attaches_to_an_existing_ray_head(tmp_path):
    port = _free_port()
    address = f"127.0.0.1:{port}"
    ray_tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Ray's socket paths must stay short
    env = {**os.environ, "RAY_TMPDIR": ray_tmp}
    # --block keeps the head's processes in this process group, so only they are stopped below
    head = subprocess.Popen([RAY, "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
                             "--port", str(port), "--num-cpus", "2", "--include-dashboard", "false",
                             "--disable-usage-stats", "--temp-dir", ray_tmp],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while _ray_status(address, env).returncode != 0:
            assert time.monotonic() < deadline and head.poll() is None, "the Ray head did not start"
            time.sleep(1)
        config = small_yaml(tmp_path / "exp.yaml", **{"engine.name": "cohort", "federation.rounds": 2})

        run = subprocess.run([sys.executable, "-m", "fedsim", "run", "--quiet", "--config", str(config),
                              "--ray-address", address, "--out", str(tmp_path / "run")],
                             capture_output=True, text=True, timeout=240, env=env)

        assert run.returncode == 0, run.stderr
        summary = json.loads((tmp_path / "run" / "summary.json").read_text())
        assert summary["rounds"] == 2 and summary["engine"] == "cohort"
        assert _ray_status(address, env).returncode == 0  # the head outlives the run that used it
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        shutil.rmtree(ray_tmp, ignore_errors=True)

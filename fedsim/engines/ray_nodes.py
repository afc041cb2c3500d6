"""Ray nodes started on this host: a head and workers, each a ``ray start --block`` process.

For tests and measurements of multi-node runs on one machine, and to try ``--ray-address``
without a second machine. Each node gets its own temporary folder and free ports (two
raylets on one host must not share either), runs in its own process session, and is
stopped by signalling that session — never with ``ray stop``, which stops every Ray
cluster of the host, other users' included.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RAY = str(Path(sys.executable).parent / "ray")
_PORT_FLAGS = ("--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
               "--dashboard-agent-grpc-port", "--runtime-env-agent-port", "--metrics-export-port")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RayNodes:
    """``with RayNodes() as nodes: nodes.start_head(); nodes.add_worker(); nodes.wait_for(2)``."""

    def __init__(self) -> None:
        self.address: str | None = None
        self.procs: list[subprocess.Popen[bytes]] = []
        self.dirs: list[str] = []

    def _start(self, *args: str, num_cpus: int) -> None:
        ray_tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Ray's socket paths must stay short
        self.dirs.append(ray_tmp)
        ports = [arg for flag in _PORT_FLAGS for arg in (flag, str(free_port()))]
        env = {**os.environ, "RAY_TMPDIR": ray_tmp}
        self.procs.append(subprocess.Popen(
            [RAY, "start", "--block", "--node-ip-address", "127.0.0.1", "--num-cpus", str(num_cpus),
             "--num-gpus", "0", "--disable-usage-stats", "--temp-dir", ray_tmp, *ports, *args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True))

    def start_head(self, num_cpus: int = 1) -> str:
        port = free_port()
        self.address = f"127.0.0.1:{port}"
        self._start("--head", "--port", str(port), "--ray-client-server-port", str(free_port()),
                    "--include-dashboard", "false", num_cpus=num_cpus)
        return self.address

    def add_worker(self, num_cpus: int = 1) -> None:
        assert self.address is not None, "start the head first"
        self._start("--address", self.address, num_cpus=num_cpus)

    def alive(self) -> int:
        """Alive nodes as ``ray status`` reports them (0 while the head is not up)."""
        out = subprocess.run([RAY, "status", "--address", str(self.address)], capture_output=True, text=True,
                             timeout=60, env={**os.environ, "RAY_TMPDIR": self.dirs[0]})
        if out.returncode != 0:
            return 0
        active = out.stdout.split("Active:", 1)[-1].split("Pending:", 1)[0]
        return len(re.findall(r"^\s*1 node_", active, flags=re.MULTILINE))

    def wait_for(self, count: int, timeout: float = 240.0) -> bool:
        """Whether ``count`` nodes are alive within ``timeout`` seconds (and every node process runs)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in self.procs):
                return False
            if self.alive() >= count:
                return True
            time.sleep(1)
        return False

    def stop(self) -> None:
        """Stop every node this object started (workers first), by process group."""
        for proc in reversed(self.procs):
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        for d in self.dirs:
            shutil.rmtree(d, ignore_errors=True)
        self.procs.clear()

    def __enter__(self) -> "RayNodes":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

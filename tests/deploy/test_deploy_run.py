"""End to end on 127.0.0.1: a TLS SuperLink with SuperNode authentication, three SuperNodes as
separate processes each with its own small image folder, and a 2-round FedAvg run of the image
task submitted with ``fedsim deploy run``; a SuperNode with an unregistered key is refused, and
one without the CA (none given, or another CA) stops with a clear error. Every process the test starts is stopped by pid
(and Flower's helpers under them are looked for by an environment tag) within a bounded time;
FLWR_HOME is a temporary folder and the ports are free ones."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.io import write_png
from typer.testing import CliRunner

from fedsim.cli import app
from fedsim.data.digits import load_base
from fedsim.deploy.certs import write_certs, write_node_keys
from fedsim.deploy.processes import free_port

pytestmark = [pytest.mark.timeout(480), pytest.mark.slow]  # real processes and TLS: minutes
STOP_SECONDS = 30.0  # every started process is gone within this after the test stops it


def image_folder(path: Path, offset: int, per_class: int) -> Path:
    """``path/<digit>/*.png``: ``per_class`` real 8x8 digits per class from ``offset`` on."""
    x, y = load_base()
    for c in range(10):
        for i in np.flatnonzero(y == c)[offset:offset + per_class]:
            pixels = (torch.as_tensor(x[i]).reshape(1, 8, 8) * 255).round().to(torch.uint8)
            (path / str(c)).mkdir(parents=True, exist_ok=True)
            write_png(pixels, str(path / str(c) / f"digit{i}.png"))
    return path


class Started:
    """Processes the test started, their output, and the tag their descendants inherit."""

    def __init__(self, tmp: Path) -> None:
        self.tag = uuid.uuid4().hex
        self.tmp = tmp
        self.procs: list[subprocess.Popen] = []
        self.output: dict[int, list[str]] = {}

    def start(self, name: str, *args: str) -> subprocess.Popen:
        """``fedsim ARGS`` in its own process group."""
        return self.launch(name, [sys.executable, "-m", "fedsim", *args])

    def launch(self, name: str, argv: list[str], **env_extra: str) -> subprocess.Popen:
        """``argv`` in its own process group, FLWR_HOME a folder of its own, this Python's bin on PATH,
        Flower logging at INFO (the tests read its lines) whatever ``FLWR_LOG_LEVEL`` says here."""
        env = {**os.environ, "FLWR_HOME": str(self.tmp / f"flwr-home-{name}"), "FEDSIM_TEST_TAG": self.tag,
               "FLWR_LOG_LEVEL": "INFO",
               "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]), **env_extra}
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.procs.append(proc)
        lines = self.output[proc.pid] = []
        threading.Thread(target=lambda: lines.extend(ln.rstrip() for ln in proc.stdout), daemon=True).start()
        return proc

    def wait_for(self, proc: subprocess.Popen, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in ln for ln in self.output[proc.pid]):
            assert proc.poll() is None, "\n".join(self.output[proc.pid][-20:])
            assert time.monotonic() < deadline, f"no {text!r} within {timeout}s: " + "\n".join(self.output[proc.pid][-20:])
            time.sleep(0.2)

    def tagged(self) -> list[int]:
        """Pids of live processes that carry this test's tag (ours and Flower's helpers)."""
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if f"FEDSIM_TEST_TAG={self.tag}".encode() in (entry / "environ").read_bytes():
                        state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                        if state != "Z":
                            found.append(int(entry.name))
                except OSError:
                    continue
        return found

    def stop_all(self) -> list[int]:
        """SIGTERM every started process (fedsim stops its Flower group), wait, SIGKILL by pid
        what is left; returns the pids that had to be killed."""
        for proc in self.procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        while time.monotonic() < deadline and (any(p.poll() is None for p in self.procs) or self.tagged()):
            time.sleep(0.2)
        left = self.tagged()
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        for proc in self.procs:
            proc.wait(5)
        return left


@pytest.fixture
def started(tmp_path: Path):
    procs = Started(tmp_path)
    yield procs
    assert procs.stop_all() == [], "processes were still running after the test stopped them"


def test_tls_authenticated_federation_of_three_supernodes_runs_two_fedavg_rounds(tmp_path: Path,
                                                                                  started: Started) -> None:
    # Prepare: certificates, four key pairs of which three are registered, a folder per box
    certs, keys = tmp_path / "certs", tmp_path / "keys"
    write_certs(certs, ["127.0.0.1", "localhost"])
    write_node_keys(keys, 4)
    boxes = [image_folder(tmp_path / f"box{b}", offset=6 * b, per_class=6) for b in range(3)]
    server_data = image_folder(tmp_path / "server-data", offset=40, per_class=10)
    port = free_port()
    link = f"127.0.0.1:{port}"
    config = tmp_path / "fedavg.yaml"
    config.write_text(f"""\
seed: 0
task: {{name: image, params: {{image_size: 16, min_samples: 8, max_samples: 8}}, data_dir: {server_data}}}
model: {{name: resnet_small}}
strategy: {{name: fedavg}}
federation: {{clients: 3, clients_per_round: 3, rounds: 2, local_epochs: 1, batch_size: 8, lr: 0.05}}
evaluation: {{every: 2}}
engine: {{name: flower, device: cpu}}
""")
    superlink = started.start("superlink", "deploy", "superlink", "--certs", str(certs), "--port", str(port),
                              "--keys", str(keys / "supernode-1.pub"), "--keys", str(keys / "supernode-2.pub"),
                              "--keys", str(keys / "supernode-3.pub"), "--quiet")

    def supernode(i: int, *extra: str) -> subprocess.Popen:
        return started.start(f"node{i}", "deploy", "supernode", "--superlink", link, "--certs", str(certs),
                             "--key", str(keys / f"supernode-{i}.key"), "--data-dir", str(boxes[min(i, 3) - 1]),
                             "--state-dir", str(tmp_path / f"state{i}"), "--quiet", *extra)

    # Execute / Assert 1: a box without the CA certificate stops before connecting, one line
    no_ca = CliRunner().invoke(app, ["deploy", "supernode", "--superlink", link, "--certs", str(keys),
                                     "--key", str(keys / "supernode-1.key"), "--data-dir", str(boxes[0])])
    assert no_ca.exit_code == 2 and len(no_ca.output.strip().splitlines()) == 1
    assert "ca.crt does not exist: this box needs the deployment's CA certificate" in no_ca.output
    started.wait_for(superlink, "SuperLink ready", timeout=180)
    # Execute 2: a box with an unregistered key, three registered boxes, and a 2-round FedAvg
    # run through Flower's run API
    stranger = supernode(4)
    write_certs(tmp_path / "other-ca", ["127.0.0.1"])  # a CA that did not sign the SuperLink's certificate
    impostor = started.start("node-other-ca", "deploy", "supernode", "--superlink", link, "--certs",
                             str(tmp_path / "other-ca"), "--key", str(keys / "supernode-1.key"), "--data-dir",
                             str(boxes[0]), "--state-dir", str(tmp_path / "state-other"), "--max-wait", "5", "--quiet")
    nodes = [supernode(i) for i in (1, 2, 3)]
    run_dir = tmp_path / "run"
    submit = started.start("submit", "deploy", "run", "--superlink", link, "--certs", str(certs),
                           "--config", str(config), "--out", str(run_dir), "--timeout", "300")
    # Assert 2: the unregistered key is refused by the SuperLink
    assert stranger.wait(120) == 1
    assert "the SuperLink refused this SuperNode (Flower code 2004): its public key is not registered" in \
        started.output[stranger.pid][-1]
    assert impostor.wait(120) == 1  # and a box with another CA does not trust the SuperLink
    assert "TLS verification of the SuperLink failed: --certs must hold the deployment's ca.crt" in \
        started.output[impostor.pid][-1]
    code = submit.wait(330)
    log = "\n".join(started.output[submit.pid])
    # Assert 3: the run finished and wrote the same run directory as a simulation
    assert code == 0, log
    assert all(n.poll() is None for n in nodes)  # the boxes serve on after the run
    rows = [json.loads(line) for line in (run_dir / "rounds.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == [0, 1, 2]
    assert [(r["clients_ok"], r["clients_failed"], r["skipped"]) for r in rows[1:]] == [(3, 0, False)] * 2
    assert rows[2]["bytes_up"] > 0 and 0.0 <= rows[2]["knn_top1"] <= 1.0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["engine"] == "flower" and summary["rounds"] == 2 and summary["run_dir"] == str(run_dir)
    for name in ("config.yaml", "data.json", "checkpoint.pt", "model.pt", "best_knn_top1.pt", "metrics.csv",
                 "curves.png"):
        assert (run_dir / name).is_file(), name
    assert json.loads((run_dir / "data.json").read_text())["root"] == str(server_data)  # the server evaluates
    assert "round 2 (3 ok, 0 failed):" in log and str(run_dir) in started.output[submit.pid][-1]
    for i in (1, 2, 3):  # each box got its own folder through its node config
        assert f'"data-dir" = "{boxes[i - 1]}"' in (tmp_path / f"state{i}" / "node-config.toml").read_text()

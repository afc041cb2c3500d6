"""On 127.0.0.1, a Flower SuperLink and STOCK ``flower-supernode`` processes (no fedsim wrapper,
only ``--node-config`` and the environment's bin on PATH) run fedsim's ClientApp for a generated
task with no data folder: box K trains share K, so boxes on partitions 0 + 1 and 0 + 0 give
different round-1 losses, and a misconfigured box makes ``fedsim deploy run`` exit 4 naming it.
Each process has its own process group and FLWR_HOME under the test's temporary folder, the
ports are free ones, and everything is stopped by pid (``Started``)."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fedsim.cli import app
from fedsim.deploy.processes import flower_exe, free_port, superlink_plan, wait_for_port
from tests.deploy.test_deploy_run import Started, started  # noqa: F401  (the fixture)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
FAST = {"FLWR_SUPEREXEC_TASK_POLL_INTERVAL": "0.1"}  # Flower's own setting; fedsim's wrappers set it too


def box(started: Started, link: str, name: str, partition: str) -> tuple:
    """A stock SuperNode whose node config names its share of the generated task."""
    argv = [flower_exe("flower-supernode"), "--insecure", "--superlink", link, "--port", str(free_port()),
            "--node-config", partition]
    proc = started.launch(name, argv, **FAST)
    started.wait_for(proc, "SuperNode ID", timeout=120)
    return proc, int(next(ln for ln in started.output[proc.pid] if "SuperNode ID" in ln).split()[-1])


def stop(proc) -> None:
    proc.send_signal(signal.SIGTERM)  # the SuperNode leaves the SuperLink (deactivates) as it exits
    proc.wait(30)


def deploy(link: str, config: Path, out: Path, rounds: int):
    return CliRunner().invoke(app, ["deploy", "run", "--superlink", link, "--insecure", "--config", str(config),
                                    "--out", str(out), "--set", f"federation.rounds={rounds}", "--timeout", "400"])


def test_stock_supernodes_train_their_own_shares_and_a_misconfigured_box_fails_the_run(
        tmp_path: Path, started: Started) -> None:  # noqa: F811
    # Prepare: an insecure SuperLink (TLS is tested in test_deploy_run.py) and two boxes
    port = free_port()
    link = f"127.0.0.1:{port}"
    config = tmp_path / "synthetic.yaml"
    config.write_text("seed: 0\ntask: {name: synthetic}\nmodel: {name: mlp}\nstrategy: {name: fedavg}\n"
                      "federation: {clients: 2, clients_per_round: 2, local_epochs: 1, lr: 0.1}\n"
                      "evaluation: {every: 5, linear_probe: false}\n")
    superlink = started.launch("superlink", superlink_plan(certs=None, keys=[], port=port, insecure=True).argv, **FAST)
    wait_for_port("127.0.0.1", port, timeout=120, process=superlink)
    first, id0 = box(started, link, "box0", "partition-id=0 num-partitions=2")
    second, id1 = box(started, link, "box1", "partition-id=1 num-partitions=2")
    # Execute 1: boxes on partitions 0 + 1, one round (two rounds through a SuperLink are
    # tested in test_deploy_run.py; each costs Flower's process start per message here)
    run01 = deploy(link, config, tmp_path / "run01", rounds=1)
    # Assert 1: both boxes listed before round 1 and OK
    assert run01.exit_code == 0, run01.output
    listed = [ln for ln in run01.output.splitlines() if ln.startswith("box ")]
    assert len(listed) == 2, run01.output
    assert any(f"box {id0}:" in ln and "partition 0 of 2" in ln for ln in listed)
    assert any(f"box {id1}:" in ln and "partition 1 of 2" in ln for ln in listed)
    assert run01.output.index("box ") < run01.output.index("round 1")
    boxes = json.loads((tmp_path / "run01" / "boxes.json").read_text())["boxes"]
    assert [(b["sampled"], b["ok"], b["failed"]) for b in boxes] == [(1, 1, 0)] * 2
    rows01 = [json.loads(ln) for ln in (tmp_path / "run01" / "rounds.jsonl").read_text().splitlines()]
    # Execute 2: box 1 replaced by another box on partition 0
    stop(second)
    third, _ = box(started, link, "box0b", "partition-id=0 num-partitions=2")
    run00 = deploy(link, config, tmp_path / "run00", rounds=1)
    rows00 = [json.loads(ln) for ln in (tmp_path / "run00" / "rounds.jsonl").read_text().splitlines()]
    # Assert 2: the same round-1 start, different data, different losses
    assert run00.exit_code == 0, run00.output
    assert rows00[1]["clients_ok"] == 2 and rows00[1]["train_loss"] != rows01[1]["train_loss"]
    # Execute 3: a box whose share does not exist
    stop(third)
    _, bad = box(started, link, "box7", "partition-id=7 num-partitions=2")
    run07 = deploy(link, config, tmp_path / "run07", rounds=1)
    # Assert 3: exit 4, one line naming the box and its error
    assert run07.exit_code == 4, run07.output
    assert f"box {bad}: NOT READY: ValueError: node config: partition-id=7 is not within 0..1" in run07.output
    assert (f"error: box {bad}" in run07.output and "failed all 1 rounds it was sampled for: ValueError: node config: "
            "partition-id=7 is not within 0..1 (num-partitions=2)" in " ".join(run07.output.split()))
    assert str(tmp_path / "run07") in run07.output.strip().splitlines()[-1]
    print("round seconds, partitions 0+1:", [r.get("round_seconds") for r in rows01[1:]], file=sys.stderr)

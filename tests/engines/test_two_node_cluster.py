"""A run attached to a two-node Ray cluster on one host (two raylets, one CPU each, own temp
folders and ports, stopped by process group) uses one cohort worker per node CPU even with
the driver pinned to one core, and trains the same model as the same run on a local Ray.

Skipped where a second raylet cannot start on this host (the fixture says why)."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import torch

from fedsim.engines.ray_nodes import RayNodes
from tests.server.conftest import small_yaml

TASKSET = shutil.which("taskset")
pytestmark = pytest.mark.slow  # two raylets of its own and fedsim runs as subprocesses


@pytest.fixture(scope="module")
def two_nodes():
    with RayNodes() as nodes:
        nodes.start_head(num_cpus=1)
        if not nodes.wait_for(1):
            pytest.skip("no Ray head could start on this host")
        nodes.add_worker(num_cpus=1)
        if not nodes.wait_for(2):
            pytest.skip("a second raylet could not start on this host")
        yield nodes


def fedsim_run(config, out, *extra, env=None, one_core=False):
    cmd = [sys.executable, "-m", "fedsim", "run", "--config", str(config), "--out", str(out), *extra]
    if one_core and TASKSET:
        cmd = [TASKSET, "-c", "0", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=420, env=env or os.environ)


@pytest.mark.timeout(900)
def test_two_node_run_uses_every_node_cpu_and_equals_the_local_run(two_nodes, tmp_path):
    config = small_yaml(tmp_path / "exp.yaml", **{"engine.name": "cohort", "federation.rounds": 2,
                                                  "strategy.name": "fedvssl"})
    attached = fedsim_run(config, tmp_path / "cluster", "--ray-address", two_nodes.address, one_core=True)

    assert attached.returncode == 0, attached.stderr
    assert (f"attached to the Ray cluster at {two_nodes.address}: 2 nodes, 2 CPUs, 0 GPUs; "
            "2 cohort worker(s) training on cpu") in attached.stderr
    summary = json.loads((tmp_path / "cluster" / "summary.json").read_text())
    assert (summary["workers"], summary["rounds"]) == (2, 2)
    # the node settings reached the attached cluster's workers: heads went to the run's state dir
    assert list((tmp_path / "cluster" / "client_state").rglob("*.pt"))

    # no --ray-address: a local Ray of its own, even with a cluster up and RAY_ADDRESS naming it
    config_local = small_yaml(tmp_path / "local.yaml", **{"engine.name": "cohort", "federation.rounds": 2,
                                                          "strategy.name": "fedvssl", "engine.workers": 2})
    local = fedsim_run(config_local, tmp_path / "local", env={**os.environ, "RAY_ADDRESS": two_nodes.address})

    assert local.returncode == 0, local.stderr
    assert "attached" not in local.stderr
    assert json.loads((tmp_path / "local" / "summary.json").read_text())["workers"] == 2
    cluster_model = torch.load(tmp_path / "cluster" / "model.pt", weights_only=True)
    local_model = torch.load(tmp_path / "local" / "model.pt", weights_only=True)
    assert cluster_model.keys() == local_model.keys()
    for key, value in cluster_model.items():
        torch.testing.assert_close(value, local_model[key], rtol=0, atol=0)


@pytest.mark.timeout(300)
def test_a_node_that_does_not_see_a_path_is_named_in_one_line(two_nodes):
    code = ("import ray; ray.init(address=%r, logging_level='ERROR')\n"
            "from fedsim.engines.ray_cluster import RayUnavailable, check_nodes_see\n"
            "try:\n"
            "    check_nodes_see({'task.data_dir (--data-dir)': '/nonexistent/fedsim-data'})\n"
            "except RayUnavailable as e:\n"
            "    print(e)") % two_nodes.address
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240)

    assert out.returncode == 0, out.stderr
    assert re.fullmatch(r"task\.data_dir \(--data-dir\): Ray node [0-9.]+ \([0-9a-f]{8}\) does not see "
                        r"/nonexistent/fedsim-data; every node needs it at the same path \(a shared filesystem "
                        r"or a copy\)\n", out.stdout), out.stdout

"""The session's kept cluster (tests/conftest.py): runs of one process reuse Ray's workers,
and a worker that died between runs is replaced."""

from __future__ import annotations

import os
import sys

import pytest

from fedsim.config import load_config
from fedsim.engines import warm
from fedsim.launcher import simulate
from tests.server.conftest import read_rows

TINY = {"task.name": "synthetic", "model.name": "mlp", "federation.clients": 4, "engine.workers": 2,
        "federation.clients_per_round": 4, "federation.rounds": 1, "evaluation.every": 1,
        "task.params.eval_samples": 20, "task.params.image_size": 8}


def _kept_ids() -> set[str]:
    return {a._actor_id.hex() for a in warm._keeper.all()}


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_runs_reuse_the_kept_workers_and_a_dead_one_is_replaced(tmp_path):
    import ray

    assert warm.active()
    simulate(load_config(None, TINY), str(tmp_path / "a"), quiet=True)
    first = _kept_ids()
    assert ray.is_initialized() and first  # the run left Ray and its workers up

    simulate(load_config(None, TINY), str(tmp_path / "b"), quiet=True)
    assert _kept_ids() == first  # the same workers ran the second run

    ray.kill(warm._keeper.all()[0], no_restart=True)
    summary = simulate(load_config(None, TINY), str(tmp_path / "c"), quiet=True)
    rows = read_rows(tmp_path / "c")
    assert rows[-1]["clients_ok"] == 4 and summary["rounds"] == 1
    assert len(_kept_ids()) == len(first) and _kept_ids() != first  # the dead one was replaced


@pytest.mark.own_ray
@pytest.mark.timeout(180)
def test_a_local_ray_quiets_its_workers_without_changing_this_processs_environment(monkeypatch):
    """The workers' FLWR_LOG_LEVEL=ERROR and widened PYTHONPATH reach Ray's processes only: a
    subprocess this process starts later (a Flower SuperNode, say) sees the environment it had
    before."""
    import ray

    from fedsim.engines import ray_cluster

    monkeypatch.delenv("FLWR_LOG_LEVEL", raising=False)
    monkeypatch.setenv("PYTHONPATH", "/a/folder/of/the/user")
    ray_cluster.start({**ray_cluster.LOCAL_INIT_ARGS, "num_cpus": 1}, num_cpus_per_client=0.0)
    try:
        @ray.remote(num_cpus=0)
        def worker_environment() -> tuple[str | None, str | None]:
            import os

            return os.environ.get("FLWR_LOG_LEVEL"), os.environ.get("PYTHONPATH")

        level, pythonpath = ray.get(worker_environment.remote(), timeout=120)
        assert level == "ERROR"
        assert pythonpath == os.pathsep.join([*sys.path, "/a/folder/of/the/user"])  # this process's search path first
        assert "FLWR_LOG_LEVEL" not in os.environ
        assert os.environ["PYTHONPATH"] == "/a/folder/of/the/user"
    finally:
        ray_cluster.stop()

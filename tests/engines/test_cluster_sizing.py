"""An attached Ray cluster sizes the cohort engine and resolves engine.device, not the driver;
a run without --ray-address never attaches; every node must see the paths its workers open."""

import pytest

from fedsim import machine
from fedsim.config import ConfigError, load_config
from fedsim.engines import Cluster, make_engine, ray_cluster, server_device
from fedsim.machine import check_this_machine
from fedsim.launcher import keeps_client_state, ray_init_args, shared_paths

TWO_CPU_NODES = Cluster((("10.0.0.1 (aaaa)", 1.0, 0.0), ("10.0.0.2 (bbbb)", 1.0, 0.0)))
CPU_HEAD_GPU_WORKERS = Cluster((("head", 4.0, 0.0), ("w1", 8.0, 2.0), ("w2", 8.0, 1.0)))


def test_attached_cohort_has_one_worker_per_node_cpu_whatever_the_driver_has(monkeypatch):
    monkeypatch.setattr(machine, "usable_cores", lambda: 1)  # taskset -c 0
    monkeypatch.setattr(machine, "gpu_count", lambda: 0)
    exp = load_config(None, {"engine.ray_address": "10.0.0.1:6379"})

    assert make_engine(exp).num_nodes == 1  # the driver's count: what an attached run used before
    engine = make_engine(exp, TWO_CPU_NODES)
    assert (engine.num_nodes, engine.device) == (2, "cpu")
    assert make_engine(load_config(None, {"engine.num_cpus_per_client": 2.0, "engine.ray_address": "h:1"}),
                       Cluster((("a", 5.0, 0.0), ("b", 3.0, 0.0)))).num_nodes == 3  # 2 + 1, per node


def test_a_cpu_head_with_gpu_workers_trains_on_their_gpus_and_evaluates_on_its_cpu(monkeypatch):
    monkeypatch.setattr(machine, "gpu_count", lambda: 0)  # the driver has none
    for setting in ("auto", "cuda"):
        exp = load_config(None, {"engine.device": setting, "engine.workers_per_gpu": 2,
                                 "engine.ray_address": "head:6379"})
        check_this_machine(exp)  # a CUDA request is the cluster's to answer
        engine = make_engine(exp, CPU_HEAD_GPU_WORKERS)
        assert (engine.device, engine.num_nodes, engine.gpus_per_node) == ("cuda", 6, 0.5)
    assert server_device("cuda") == "cpu"


def test_cuda_on_a_cluster_without_gpus_is_one_line(monkeypatch):
    with pytest.raises(ValueError, match=r"engine.device: 'cuda' but the Ray cluster \(2 nodes, 2 CPUs, 0 GPUs\)"):
        make_engine(load_config(None, {"engine.device": "cuda", "engine.ray_address": "h:1"}), TWO_CPU_NODES)
    monkeypatch.setattr(machine, "gpu_count", lambda: 0)
    with pytest.raises(ConfigError, match="no CUDA device is visible here"):
        load_config(None, {"engine.device": "cuda"})  # local: the driver's GPUs


def test_without_ray_address_the_run_starts_its_own_local_ray():
    assert ray_init_args(load_config(None, {}))["address"] == "local"
    assert not ray_cluster.is_attached(None) and not ray_cluster.is_attached("local")
    assert ray_init_args(load_config(None, {"engine.ray_address": "10.0.0.1:6379"}))["address"] == "10.0.0.1:6379"
    assert ray_cluster.is_attached("auto")


def test_only_strategies_with_client_state_need_a_shared_out(tmp_path):
    assert keeps_client_state(load_config(None, {"strategy.name": "fedvssl"}))
    assert keeps_client_state(load_config(None, {"strategy.name": "fedvssl", "strategy.dp_clip": 1.0}))
    assert not keeps_client_state(load_config(None, {"strategy.name": "ldawa"}))
    data = tmp_path / "data"
    data.mkdir()
    exp = load_config(None, {"strategy.name": "fedvssl"}).model_copy()
    exp.task.data_dir = str(data)
    with shared_paths(exp, str(tmp_path / "out" / "run")) as paths:
        marker = paths["client state (under --out)"]
        assert paths["task.data_dir (--data-dir)"] == str(data.resolve())
        assert marker.startswith(str(tmp_path) + "/.fedsim-shared-")  # the nearest existing folder
        assert ray_cluster._missing(paths) == []
    assert ray_cluster._missing(paths) == ["client state (under --out)"]  # removed afterwards

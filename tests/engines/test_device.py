"""Device selection: CPU workers (one per core) without a GPU, GPU workers and Ray GPU shares
with one; no GPU is ever requested where none is visible."""

import pytest

from fedsim import machine
from fedsim.config import load_config
from fedsim.engines import make_engine
from fedsim.machine import training_device
from fedsim.launcher import backend_config, node_settings


def test_without_a_gpu_auto_trains_on_the_cpu_and_asks_ray_for_no_gpu(monkeypatch):
    monkeypatch.setattr(machine, "gpu_count", lambda: 0)
    monkeypatch.setattr(machine, "usable_cores", lambda: 6)
    exp = load_config(None, {})

    engine = make_engine(exp)

    assert (engine.device, engine.num_nodes, engine.gpus_per_node) == ("cpu", 6, 0.0)
    assert backend_config(exp, engine)["client_resources"] == {"num_cpus": 1.0, "num_gpus": 0.0}


def test_cuda_without_a_gpu_is_a_one_line_error(monkeypatch):
    monkeypatch.setattr(machine, "gpu_count", lambda: 0)

    with pytest.raises(ValueError, match="engine.device: 'cuda' but no CUDA device is visible here"):
        training_device("cuda")


def test_with_gpus_the_cohort_workers_share_them(monkeypatch):
    monkeypatch.setattr(machine, "gpu_count", lambda: 2)
    exp = load_config(None, {"engine.workers_per_gpu": 4})

    engine = make_engine(exp)

    assert (engine.device, engine.num_nodes, engine.gpus_per_node) == ("cuda", 8, 0.25)
    assert backend_config(exp, engine)["client_resources"]["num_gpus"] == 0.25
    cpu = make_engine(load_config(None, {"engine.device": "cpu"}))
    assert (cpu.device, cpu.gpus_per_node) == ("cpu", 0.0)


def test_simulated_nodes_get_their_own_settings(tmp_path, monkeypatch):
    monkeypatch.setattr(machine, "gpu_count", lambda: 0)
    exp = load_config(None, {})

    env = node_settings(exp, str(tmp_path / "run"), make_engine(exp).device)

    assert env == {"FEDSIM_STATE_DIR": str((tmp_path / "run" / "client_state").resolve()), "FEDSIM_DEVICE": "cpu"}

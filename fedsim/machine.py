"""What this machine offers a run: its usable CPU cores and CUDA devices, and whether a
valid config fits it (:func:`check_this_machine`).

A leaf module (it imports nothing of fedsim's; torch only when asked about GPUs): the
config checks a run against the machine with it, and the engines size their workers by it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask; ``os.cpu_count`` elsewhere)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def gpu_count() -> int:
    """CUDA devices this process sees (0 without CUDA)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def training_device(setting: str) -> str:
    """``engine.device`` resolved on this machine: ``auto`` is ``cuda`` when a GPU is visible."""
    if setting == "auto":
        return "cuda" if gpu_count() else "cpu"
    if setting == "cuda" and not gpu_count():
        raise ValueError("engine.device: 'cuda' but no CUDA device is visible here; use auto or cpu")
    return setting


def check_this_machine(exp: Any) -> None:
    """What a valid config (:class:`fedsim.config.ExperimentConfig`) still needs from the
    machine that runs it; :class:`ValueError` (one line) if not.

    ``task.data_dir`` must be an existing folder (the task checks its layout when it reads
    it; the server reads it too, for evaluation), and without a Ray cluster one client must
    fit in this machine's cores, and ``engine.device: cuda`` needs a visible GPU (an attached
    cluster is checked when the run attaches: :func:`fedsim.engines.cluster_device`). Workers
    build the run from its records without these checks.
    """
    data_dir = exp.task.data_dir
    if data_dir is not None:
        if not Path(data_dir).exists():
            raise ValueError(f"task.data_dir: {data_dir!r} does not exist")
        if not Path(data_dir).is_dir():
            raise ValueError(f"task.data_dir: {data_dir!r} is not a directory")
    local = exp.engine.ray_address in (None, "local")  # else: the cluster's cores and GPUs
    cores = usable_cores()
    if local and exp.engine.num_cpus_per_client > cores:
        raise ValueError(f"engine.num_cpus_per_client: {exp.engine.num_cpus_per_client:g} is more than the "
                         f"{cores} CPU cores of this machine; choose at most {cores} (or attach a Ray "
                         "cluster with --ray-address)")
    if local and exp.engine.device == "cuda":
        training_device("cuda")

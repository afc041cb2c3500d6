"""How a round's training is executed: the registered engines (``cohort``, ``flower``, ...).

An engine (:class:`fedsim.engines.base.Engine`) decides how many simulated SuperNodes exist,
which node trains which sampled clients, and whether replies carry weights or partial sums,
and it owns the codec of those replies. All engines call the same ClientApp, task and
strategy code; the server's round loop is the same for all. This module sizes them: on this
machine (:mod:`fedsim.machine`) or on an attached Ray cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fedsim import machine
from fedsim.engines.base import Engine, reply_codec
from fedsim.registry import ENGINES

__all__ = ["Cluster", "Engine", "cluster_device", "cluster_workers", "default_workers", "make_engine",
           "reply_codec", "server_device"]


def default_workers(device: str = "cpu", workers_per_gpu: int = 1) -> int:
    """One cohort worker per CPU core, or ``workers_per_gpu`` per GPU when training on CUDA."""
    return machine.gpu_count() * workers_per_gpu if device == "cuda" else machine.usable_cores()


@dataclass(frozen=True)
class Cluster:
    """What an attached Ray cluster offers: each alive node's ``(name, CPUs, GPUs)``."""

    nodes: tuple[tuple[str, float, float], ...]

    @property
    def gpus(self) -> float:
        return sum(g for _, _, g in self.nodes)

    def describe(self) -> str:
        cpus = sum(c for _, c, _ in self.nodes)
        return f"{len(self.nodes)} node{'s' * (len(self.nodes) != 1)}, {cpus:g} CPUs, {self.gpus:g} GPUs"


def cluster_device(setting: str, cluster: Cluster) -> str:
    """``engine.device`` resolved against an attached cluster, not the driver: ``auto`` is
    ``cuda`` when any node has a GPU, and ``cuda`` needs one somewhere."""
    if setting == "auto":
        return "cuda" if cluster.gpus else "cpu"
    if setting == "cuda" and not cluster.gpus:
        raise ValueError(f"engine.device: 'cuda' but the Ray cluster ({cluster.describe()}) has no GPU; "
                         "use auto or cpu")
    return setting


def cluster_workers(cluster: Cluster, device: str, workers_per_gpu: int, num_cpus_per_client: float) -> int:
    """Cohort workers an attached cluster holds at once: ``workers_per_gpu`` per GPU on CUDA,
    else on every node as many as its CPUs fit ``num_cpus_per_client`` (at least one)."""
    if device == "cuda":
        return max(1, int(cluster.gpus * workers_per_gpu))
    return max(1, sum(int(cpus // num_cpus_per_client) for _, cpus, _ in cluster.nodes))


def server_device(device: str) -> str:
    """Where the server evaluates: the workers' device if the driver has it too (a CPU head
    of a GPU cluster evaluates on its CPU)."""
    return "cuda" if device == "cuda" and machine.gpu_count() else "cpu"


def make_engine(exp: Any, cluster: Cluster | None = None) -> Engine:
    """The engine ``exp.engine.name`` names (``exp``: a :class:`fedsim.config.ExperimentConfig`),
    planned on this machine, or sized by the attached Ray ``cluster`` (its nodes' CPUs and
    GPUs, not the driver's)."""
    device = machine.training_device(exp.engine.device) if cluster is None else cluster_device(exp.engine.device, cluster)
    return ENGINES.get(exp.engine.name).plan(exp, device, cluster)

"""How a round's training is executed: ``flower`` (one SuperNode per client) or ``cohort``.

An engine decides how many simulated SuperNodes exist, which node trains which sampled
clients, and whether replies carry weights or partial sums. Both engines call the same
ClientApp, task and strategy code; the server's round loop is the same for both.
"""

from __future__ import annotations

from dataclasses import dataclass

from fedsim.config import ExperimentConfig, usable_cores
from fedsim.records import REPLY_SUMS, REPLY_WEIGHTS


@dataclass(frozen=True)
class Engine:
    """A plan for mapping a round's sampled clients onto simulated SuperNodes."""

    name: str
    num_nodes: int
    reply: str
    device: str = "cpu"  # where the workers train: "cpu" or "cuda"
    gpus_per_node: float = 0.0  # Ray's num_gpus per SuperNode (1 / engine.workers_per_gpu on CUDA)

    def assign(self, client_ids: list[int], node_ids: list[int]) -> list[tuple[int, list[int]]]:
        """``(node id, client ids)`` pairs for one round; ``node_ids`` sorted and stable."""
        if self.reply == REPLY_WEIGHTS:
            # Virtual client c always runs on the c-th SuperNode.
            return [(node_ids[c % len(node_ids)], [c]) for c in client_ids]
        workers = min(len(node_ids), len(client_ids))
        chunks = [client_ids[i::workers] for i in range(workers)]
        return [(node_ids[i], chunk) for i, chunk in enumerate(chunks)]

    def round_budget(self, plan: list[tuple[int, list[int]]], round_timeout: float | None) -> float | None:
        """Seconds a round's replies may take once sent (``None``: no limit).

        ``round_timeout`` is per virtual client; a cohort worker trains its clients one
        after another, so its reply gets ``round_timeout`` per client it trains.
        """
        if round_timeout is None or not plan:
            return None
        return round_timeout * (1 if self.reply == REPLY_WEIGHTS else max(len(ids) for _, ids in plan))


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


def default_workers(device: str = "cpu", workers_per_gpu: int = 1) -> int:
    """One cohort worker per CPU core, or ``workers_per_gpu`` per GPU when training on CUDA."""
    return gpu_count() * workers_per_gpu if device == "cuda" else usable_cores()


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
    return "cuda" if device == "cuda" and gpu_count() else "cpu"


def make_engine(exp: ExperimentConfig, cluster: Cluster | None = None) -> Engine:
    """The engine configured by ``exp.engine``: on this machine, or sized by the attached
    Ray ``cluster`` (its nodes' CPUs and GPUs, not the driver's)."""
    device = training_device(exp.engine.device) if cluster is None else cluster_device(exp.engine.device, cluster)
    if exp.engine.name == "flower":
        return Engine("flower", num_nodes=exp.federation.clients, reply=REPLY_WEIGHTS, device=device)
    per_gpu = exp.engine.workers_per_gpu
    sized = (default_workers(device, per_gpu) if cluster is None
             else cluster_workers(cluster, device, per_gpu, exp.engine.num_cpus_per_client))
    workers = exp.engine.workers or sized
    return Engine("cohort", num_nodes=workers, reply=REPLY_SUMS, device=device,
                  gpus_per_node=1.0 / per_gpu if device == "cuda" else 0.0)

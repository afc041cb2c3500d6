"""How a round's training is executed: ``flower`` (one SuperNode per client) or ``cohort``.

An engine decides how many simulated SuperNodes exist, which node trains which sampled
clients, and whether replies carry weights or partial sums. Both engines call the same
ClientApp, task and strategy code; the server's round loop is the same for both.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from fedsim.client.app import REPLY_SUMS, REPLY_WEIGHTS
from fedsim.config import ExperimentConfig


@dataclass(frozen=True)
class Engine:
    """A plan for mapping a round's sampled clients onto simulated SuperNodes."""

    name: str
    num_nodes: int
    reply: str

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


def default_workers() -> int:
    """One cohort worker per CPU core (or per GPU when present)."""
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.device_count()
    except Exception:  # pragma: no cover - torch always imports here
        pass
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def make_engine(exp: ExperimentConfig) -> Engine:
    """The engine configured by ``exp.engine``."""
    if exp.engine.name == "flower":
        return Engine("flower", num_nodes=exp.federation.clients, reply=REPLY_WEIGHTS)
    workers = exp.engine.workers or default_workers()
    return Engine("cohort", num_nodes=workers, reply=REPLY_SUMS)

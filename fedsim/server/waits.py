"""Before round 1: wait for the SuperNodes and their ClientApps; the errors that end a run early.

:func:`wait_for_nodes` waits for the engine's nodes to connect; :class:`Readiness` asks them
whether their ClientApp built the run (so Ray's start-up is over before a round's timeout
starts). Either raises :class:`WorkersNotReady` when its time is up.
"""

from __future__ import annotations

import time

from flwr.app import ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid

from fedsim import records as R
from fedsim.engines.stop import StopFlag

NODE_WAIT_SECONDS = 120.0
READY_SECONDS = 300.0  # Ray start-up, actor creation and each worker's first model build
READY_PINGS = 64  # at most this many nodes are asked whether they are ready
PULL_INTERVAL = 0.01
EXIT_RUN_ABORTED = 3


class RunAborted(RuntimeError):
    """Too many consecutive rounds failed; the run stops (exit code 3)."""


class WorkersNotReady(RunAborted):
    """The SuperNodes or their ClientApps did not come up in time; no round can run (exit code 3)."""


def wait_for_nodes(grid: Grid, count: int, *, timeout: float = NODE_WAIT_SECONDS,
                   stop: StopFlag | None = None) -> list[int]:
    """The ``count`` lowest SuperNode ids (sorted), waiting up to ``timeout`` s for them to connect.

    Only ``count`` are used even when more are connected (``flwr run`` with more
    ``num-supernodes`` than cohort workers), so a round is split the same way everywhere.
    """
    deadline = time.monotonic() + timeout
    stop = stop or StopFlag()
    while True:
        stop.check()
        nodes = sorted(grid.get_node_ids())
        if len(nodes) >= count:
            return nodes[:count]
        if time.monotonic() > deadline:
            raise WorkersNotReady(f"only {len(nodes)} of {count} SuperNodes connected after {timeout:.0f}s")
        stop.sleep(0.1)


class Readiness:
    """Ask up to ``READY_PINGS`` nodes a ``query`` now, collect the answers later.

    A node answers once its ClientApp runs and has built the run's task and model (from the
    ``run`` record), so Ray's start-up and the workers' first build are over before any
    round's timeout starts; the server evaluates round 0 meanwhile. An error reply counts
    as an answer: the rounds count and report such failures.
    """

    def __init__(self, grid: Grid, node_ids: list[int], run: ConfigRecord, *,
                 timeout: float = READY_SECONDS) -> None:
        self.grid, self.timeout = grid, timeout
        self.started = time.monotonic()
        content = RecordDict({R.RUN: run})
        pings = [Message(content, node_id, MessageType.QUERY, ttl=timeout) for node_id in node_ids[:READY_PINGS]]
        self.count = len(pings)
        self.waiting = set(grid.push_messages(pings))

    def wait(self, stop: StopFlag | None = None) -> float:
        """Wait for every answer; returns the seconds since the pings were sent."""
        stop = stop or StopFlag()
        while self.waiting:
            for reply in self.grid.pull_messages(list(self.waiting)):
                self.waiting.discard(reply.metadata.reply_to_message_id)
            if self.waiting and time.monotonic() - self.started > self.timeout:
                raise WorkersNotReady(f"{len(self.waiting)} of {self.count} workers did not start within "
                                      f"{self.timeout:.0f}s (are engine.num_cpus_per_client CPUs free on the "
                                      "Ray cluster?)")
            if self.waiting:
                stop.sleep(PULL_INTERVAL)
        return time.monotonic() - self.started

"""Every wait of the round loop ends: at its deadline, or as soon as the stop flag is set;
and the cohort engine uses as many SuperNodes as it has workers, however many are connected."""

import threading
import time

import pytest

from fedsim.engines.cohort import CohortEngine
from fedsim.engines.flower import FlowerEngine
from fedsim.engines.stop import RunStopped, StopFlag
from flwr.app import ConfigRecord

from fedsim.server.waits import Readiness, WorkersNotReady, wait_for_nodes


class SilentGrid:
    """A Grid whose nodes never answer."""

    def __init__(self, node_ids: list[int]) -> None:
        self.node_ids = node_ids

    def get_node_ids(self):
        return list(self.node_ids)

    def push_messages(self, messages):
        return [f"m{i}" for i, _ in enumerate(messages)]

    def pull_messages(self, message_ids):
        return []


@pytest.fixture
def inside_a_run(monkeypatch):
    """Messages can be made only inside a Flower run (as the ServerApp thread is)."""
    from flwr.supercore.task_identity import TaskIdentity

    for name in ("_run_id", "_task_id", "_node_id"):
        monkeypatch.setattr(TaskIdentity, name, 1)


def _stop_soon(flag: StopFlag, after: float = 0.2) -> None:
    threading.Timer(after, flag.set, args=("interrupted by SIGINT", 2)).start()


def test_cohort_uses_the_lowest_worker_count_node_ids_of_twenty():
    grid = SilentGrid([17, 3, 11, 5, 19, 2, 13, 7, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71])
    engine = CohortEngine(num_nodes=2)

    nodes = wait_for_nodes(grid, engine.num_nodes)
    plan = engine.assign([4, 0, 3, 1, 2], nodes)

    assert nodes == [2, 3]
    assert plan == [(2, [4, 3, 2]), (3, [0, 1])]


def test_waiting_for_nodes_ends_at_its_deadline():
    with pytest.raises(WorkersNotReady, match="only 1 of 3 SuperNodes connected"):
        wait_for_nodes(SilentGrid([1]), 3, timeout=0.3)


@pytest.mark.parametrize("wait", [
    lambda grid, stop: wait_for_nodes(grid, 3, stop=stop),  # case: nodes never connect
    lambda grid, stop: Readiness(grid, [1], ConfigRecord({})).wait(stop),  # case: workers never answer
])
def test_a_wait_ends_as_soon_as_the_run_is_stopped(wait, inside_a_run):
    stop = StopFlag()
    _stop_soon(stop)
    began = time.monotonic()

    with pytest.raises(RunStopped, match="interrupted by SIGINT"):
        wait(SilentGrid([1]), stop)

    assert time.monotonic() - began < 2.0


def test_workers_that_never_answer_end_the_readiness_wait(inside_a_run):
    with pytest.raises(WorkersNotReady, match="1 of 1 workers did not start within 0s"):
        Readiness(SilentGrid([1]), [1], ConfigRecord({}), timeout=0.3).wait()


def test_round_budget_is_per_client_and_a_cohort_worker_trains_its_clients_in_turn():
    plan = [(1, [0, 2, 4]), (2, [1, 3])]

    assert CohortEngine(num_nodes=2).round_budget(plan, 1.5) == 4.5
    assert FlowerEngine(num_nodes=5).round_budget(plan, 1.5) == 1.5
    assert CohortEngine(num_nodes=2).round_budget(plan, None) is None

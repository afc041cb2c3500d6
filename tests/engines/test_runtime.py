"""The cohort engine's faster pass over Flower's simulation dispatcher."""

import queue
import threading

import pytest
from flwr.server.superlink.fleet.vce import vce_api

from fedsim import launcher
from fedsim.engines.stop import RunStopped, StopFlag
from fedsim.launcher import dispatch_every


class FakeState:
    """A LinkState holding queued messages per node; ``get_message_ins`` hands out one."""

    def __init__(self, messages):
        self.messages = {node: list(msgs) for node, msgs in messages.items()}

    def get_message_ins(self, node_id, limit):
        out, self.messages[node_id] = self.messages[node_id][:limit], self.messages[node_id][limit:]
        return out


def test_patched_dispatcher_moves_every_message_and_the_original_comes_back():
    original = vce_api.add_messages_to_queue
    state = FakeState({1: ["a1", "a2"], 2: ["b1"]})
    out: queue.Queue = queue.Queue()
    stop = threading.Event()

    with dispatch_every(0.001):
        worker = threading.Thread(target=vce_api.add_messages_to_queue,
                                  args=(state, out, {1: 0, 2: 1}, stop))
        worker.start()
        got = [out.get(timeout=5) for _ in range(3)]
        stop.set()
        worker.join(timeout=5)

    assert got == ["a1", "b1", "a2"]  # one per node per pass, as Flower's loop
    assert vce_api.add_messages_to_queue is original


def test_original_dispatcher_is_restored_after_an_error():
    original = vce_api.add_messages_to_queue

    with pytest.raises(RuntimeError), dispatch_every(0.001):
        assert vce_api.add_messages_to_queue is not original
        raise RuntimeError("simulation failed")

    assert vce_api.add_messages_to_queue is original


def test_guard_accepts_the_installed_flower_it_was_copied_from():
    # flwr 1.41.0 is pinned: the fast loop applies (a pin bump that changes Flower's function
    # makes this fail, and the source hash in fedsim/launcher.py must be re-checked)
    assert launcher.dispatcher_patchable() is None


@pytest.mark.parametrize("change", ["version", "source"])
def test_guard_refuses_another_flower_and_runs_flowers_own_dispatcher(change, monkeypatch):
    import flwr

    original = vce_api.add_messages_to_queue
    if change == "version":
        monkeypatch.setattr(flwr, "__version__", "1.42.0")
    else:
        def add_messages_to_queue(state, queue, nodes_mapping, f_stop):  # a changed upstream body
            return None
        monkeypatch.setattr(vce_api, "add_messages_to_queue", add_messages_to_queue)
        original = add_messages_to_queue
    monkeypatch.setattr(launcher, "_warned_dispatcher", False)

    with pytest.warns(RuntimeWarning, match="Flower's own dispatch pace"), dispatch_every(0.001):
        assert vce_api.add_messages_to_queue is original  # left alone

    assert launcher.dispatcher_patchable() is not None


def test_dispatcher_that_dies_stops_the_run_with_its_error():
    class BrokenState:
        def get_message_ins(self, node_id, limit):
            raise KeyError("node 7 is gone")

    stop = StopFlag()
    with dispatch_every(0.001, stop):
        worker = threading.Thread(target=vce_api.add_messages_to_queue,
                                  args=(BrokenState(), queue.Queue(), {7: 0}, threading.Event()))
        worker.start()
        worker.join(timeout=5)

    assert stop.is_set()
    assert stop.reason == "Flower's message dispatcher failed (KeyError: 'node 7 is gone')"
    with pytest.raises(RunStopped, match="dispatcher failed"):
        stop.check()

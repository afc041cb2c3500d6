"""The cohort engine's faster pass over Flower's simulation dispatcher."""

import queue
import threading

import pytest
from flwr.server.superlink.fleet.vce import vce_api

from fedsim.engines.runtime import dispatch_every


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

"""The round loop numbers aggregations (skipped rounds do not count), sends the index to the
workers and keeps it across a resume; older checkpoints fall back to the round."""

from types import SimpleNamespace

import pytest
import torch

from fedsim import records as R
from fedsim.server import loop as loop_module
from fedsim.server.loop import RoundLoop
from fedsim.strategies.fedavg import FedAvg


def _loop(aggregations: int) -> RoundLoop:
    """A RoundLoop with only what ``_messages`` and ``_restore`` read (no Flower, no Ray)."""
    loop = object.__new__(RoundLoop)
    loop.global_arrays = {"w": torch.zeros(2)}
    loop.exp_json = "{}"
    loop.engine = SimpleNamespace(reply="sums")
    loop.state_dir = "/nonexistent"
    loop.strategy = FedAvg()
    loop.aggregations = aggregations
    return loop


def test_train_messages_carry_the_next_aggregation_index(monkeypatch):
    # a real Message needs a running Flower run; keep only its content
    monkeypatch.setattr(loop_module, "Message", lambda content, *args, **kwargs: SimpleNamespace(content=content))
    loop = _loop(aggregations=3)  # e.g. rounds 1-5 with two skipped

    messages = loop._messages(6, [(11, [0, 1]), (12, [2])])

    configs = [m.content[R.CONFIG] for m in messages]
    assert [(c[R.SERVER_ROUND], c[R.AGGREGATION]) for c in configs] == [(6, 4), (6, 4)]


@pytest.mark.parametrize(("checkpoint", "expected"), [
    ({"aggregations": 4}, 4),  # case: the counter saved with the checkpoint
    ({}, 6),  # case: a checkpoint from before the counter: count rounds, as then
])
def test_resume_restores_the_aggregation_counter(checkpoint, expected):
    loop = _loop(aggregations=0)
    state = {"round": 6, "global": {"w": torch.ones(2)}, "strategy": {}, "failed_streak": 0, **checkpoint}
    loop.writer = SimpleNamespace(load_checkpoint=lambda: state, truncate_after=lambda rnd: None)

    loop._restore()

    assert loop.aggregations == expected and loop.last_round == 6

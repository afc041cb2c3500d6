"""The round loop numbers aggregations (skipped rounds do not count), sends the index to the
workers and keeps it across a resume; older checkpoints fall back to the round."""

from types import SimpleNamespace

import pytest
import torch

from flwr.app import ConfigRecord

from fedsim import records as R
from fedsim.config import load_config
from fedsim.records import RoundContext
from fedsim.server import loop as loop_module
from fedsim.server.loop import RoundLoop
from fedsim.strategies.fedavg import FedAvg


def _loop(aggregations: int) -> RoundLoop:
    """A RoundLoop with only what ``_messages`` and ``_restore`` read (no Flower, no Ray)."""
    loop = object.__new__(RoundLoop)
    loop.global_arrays = {"w": torch.zeros(2)}
    loop.run_record = ConfigRecord({})
    loop.exp = load_config(None, {"federation.lr_schedule": "step", "federation.lr_step_rounds": 5,
                                  "federation.lr": 0.5, "federation.lr_gamma": 0.1})
    loop.engine = SimpleNamespace(reply="sums")
    loop.strategy = FedAvg()
    loop.aggregations = aggregations
    return loop


def test_train_messages_carry_the_next_aggregation_index(monkeypatch):
    # a real Message needs a running Flower run; keep only its content
    monkeypatch.setattr(loop_module, "Message", lambda content, *args, **kwargs: SimpleNamespace(content=content))
    loop = _loop(aggregations=3)  # e.g. rounds 1-5 with two skipped

    messages = loop._messages(6, [(11, [0, 1]), (12, [2])])

    specs = [RoundContext.from_record(m.content[R.ROUND]) for m in messages]
    assert [(s.server_round, s.aggregation, s.client_ids) for s in specs] == [(6, 4, (0, 1)), (6, 4, (2,))]
    assert [s.lr for s in specs] == pytest.approx([0.05, 0.05])  # round 6 of a step schedule: 0.5 * 0.1


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

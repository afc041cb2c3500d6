"""A strategy's client-side behaviour lives in its own file: a rule defined here, with its
hooks, reaches the client through the round context and the ClientApp's one training path."""

from dataclasses import replace

import pytest
import torch
from flwr.app import ConfigRecord

from fedsim import records as R
from fedsim.client.app import Resident
from fedsim.client.trainer import train_client
from fedsim.config import load_config
from fedsim.records import RoundContext, RunSpec
from fedsim.registry import STRATEGIES
from fedsim.server.loop import copy_arrays
from fedsim.strategies.base import StrategyParams
from fedsim.strategies.fedavg import FedAvg
from fedsim.strategies.hooks import ClientHooks
from tests.conftest import round_of

EXP = {"task.name": "synthetic", "model.name": "mlp", "task.params": {"samples": 32},
       "federation.batch_size": 32, "federation.lr": 0.05}  # one step per client


class ShiftParams(StrategyParams):
    shift: float = 0.25


class ShiftHooks(ClientHooks):
    """Adds ``shift · Σ w`` to the loss (every gradient grows by shift × aggregation index)
    and sends the backbone only."""

    def round_params(self, aggregation: int) -> dict:
        return {"shift": self.strategy.params.shift * aggregation}

    def sent_keys(self, keys: list[str]) -> list[str]:
        return [k for k in keys if k.startswith("backbone.")]

    def loss_term(self, model, ctx):
        shift = ctx.param("shift")
        return lambda m: shift * sum(p.sum() for p in m.parameters())


class Shift(FedAvg):
    Params = ShiftParams
    Hooks = ShiftHooks


def test_a_rule_defined_in_one_file_changes_what_its_clients_do(monkeypatch):
    # Prepare: the rule registered as a plugin would be; the server's context for round 2
    monkeypatch.setitem(STRATEGIES._entries, "shift", Shift)
    exp = load_config(None, EXP)
    sent = RoundContext.for_round(exp, Shift(), 2, aggregation=2, reply=R.REPLY_WEIGHTS, client_ids=(1,))
    ctx = RoundContext.from_record(ConfigRecord(sent.to_record()))
    shifted = Resident(replace(RunSpec.from_experiment(exp), strategy="shift"))
    plain = Resident(RunSpec.from_experiment(exp))
    start = copy_arrays(plain.task.build_model())
    # Execute: the same client through the ClientApp's training path, with and without the rule
    update = shifted.train(start, 1, ctx, None)
    reference = plain.train(start, 1, round_of(exp, 2, [1], R.REPLY_WEIGHTS), None)
    # Assert: the value travelled; one SGD step moved every sent weight by a further -lr * shift
    assert ctx.params == {"shift": 0.5}
    assert set(update.arrays) == {k for k in start if k.startswith("backbone.")} != set(start)
    for name, value in update.arrays.items():
        torch.testing.assert_close(value, reference.arrays[name] - 0.05 * 0.5, rtol=0, atol=1e-6)
    assert update.metrics["loss"] == reference.metrics["loss"]  # the reported loss is the task's alone


def test_the_trainer_builds_the_optimiser_the_hooks_give():
    class Frozen(ClientHooks):
        def optimizer(self, model, ctx):
            return torch.optim.SGD(model.parameters(), lr=0.0)

    exp = load_config(None, EXP)
    task = Resident(RunSpec.from_experiment(exp)).task
    start = copy_arrays(task.build_model())

    update = train_client(task, task.build_model(), start, round_of(exp, 1, [0]), Frozen(FedAvg()), client_id=0)

    assert all(torch.equal(update.arrays[k], start[k]) for k in start)


@pytest.mark.parametrize(("name", "keeps"), [("fedavg", False), ("fedvssl", True)])
def test_a_rule_keeps_client_state_when_its_hooks_load_part_of_the_model(name, keeps):
    hooks = STRATEGIES.get(name)().client_hooks()

    assert hooks.keeps_local is keeps

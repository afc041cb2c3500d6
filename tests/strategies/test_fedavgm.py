"""FedAvgM: server momentum steps by hand and the momentum through a checkpoint."""

import io

import pytest
import torch

from fedsim.strategies.fedavgm import FedAvgM, FedAvgMParams
from tests.conftest import make_update
from tests.strategies.tiny import run_round


def test_two_momentum_steps_by_hand():
    strategy = FedAvgM()  # η = 1, β = 0.9

    # round 1: g = 0 - 1 = -1, v = g -> w = 0 - v = 1
    out1 = run_round(strategy, {"w": torch.tensor([0.0])}, [make_update(0, w=[1.0])], 1)
    # round 2: g = 1 - 2 = -1, v = 0.9*(-1) + (-1) = -1.9 -> w = 1 + 1.9 = 2.9
    out2 = run_round(strategy, out1, [make_update(0, w=[2.0])], 2)

    torch.testing.assert_close(out1["w"], torch.tensor([1.0]))
    torch.testing.assert_close(out2["w"], torch.tensor([2.9]))


def test_server_learning_rate_scales_the_step():
    strategy = FedAvgM(FedAvgMParams(server_learning_rate=0.5, server_momentum=0.0))

    out = run_round(strategy, {"w": torch.tensor([0.0])}, [make_update(0, n=1, w=[1.0]), make_update(1, n=3, w=[3.0])], 1)

    # mean 2.5, g = -2.5 -> w = 0 + 0.5 * 2.5
    torch.testing.assert_close(out["w"], torch.tensor([1.25]))


def test_momentum_round_trips_through_a_checkpoint():
    start = {"w": torch.tensor([0.0, 1.0]), "b": torch.tensor(2.0)}
    first = FedAvgM()
    mid = run_round(first, start, [make_update(0, w=[1.0, 0.0], b=1.0)], 1)
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    expected = run_round(first, mid, [make_update(0, w=[2.0, -1.0], b=3.0)], 2)

    resumed = FedAvgM()
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    out = run_round(resumed, mid, [make_update(0, w=[2.0, -1.0], b=3.0)], 2)

    for name, value in expected.items():
        torch.testing.assert_close(out[name], value)


@pytest.mark.parametrize("params", [{"server_momentum": 1.0}, {"server_learning_rate": 0.0}])
def test_params_are_validated(params):
    with pytest.raises(ValueError):
        FedAvgMParams(**params)


@pytest.mark.parametrize("name", ["fedavgm", "fedadam", "fedyogi", "fedadagrad"])
def test_batchnorm_statistics_take_the_mean_and_are_never_stepped(name):
    # Prepare: a variance that momentum would push below zero (0.5 -> 0.1 -> 0.1 - 0.9*0.4 < 0)
    from fedsim.plugins import load_plugins
    from fedsim.registry import STRATEGIES

    load_plugins()
    strategy = STRATEGIES.get(name)()
    start = {"w": torch.tensor([0.0]), "bn.running_var": torch.tensor([0.5])}
    # Execute
    out1 = run_round(strategy, start, [make_update(0, n=1, w=[1.0], **{"bn.running_var": [0.2]}),
                                       make_update(1, n=3, w=[1.0], **{"bn.running_var": [0.0]})], 1)
    out2 = run_round(strategy, out1, [make_update(0, w=[1.0], **{"bn.running_var": [0.1]})], 2)
    # Assert: the statistic is the sample-weighted mean, the parameter took the server step
    torch.testing.assert_close(out1["bn.running_var"], torch.tensor([0.05]))
    torch.testing.assert_close(out2["bn.running_var"], torch.tensor([0.1]))
    assert not torch.equal(out2["w"], torch.tensor([1.0]))  # the mean; the server step moved past it

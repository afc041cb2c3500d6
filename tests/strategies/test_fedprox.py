"""FedProx exposes mu to the clients and aggregates as FedAvg."""

import pytest
import torch

from fedsim.strategies.fedavg import FedAvg
from fedsim.strategies.fedprox import FedProx, FedProxParams
from tests.conftest import make_update
from tests.strategies.tiny import run_round


@pytest.mark.parametrize(("params", "mu"), [({}, 0.01), ({"mu": 0.5}, 0.5), ({"mu": 0.0}, 0.0)])
def test_proximal_mu_is_exposed(params, mu):
    assert FedProx(FedProxParams(**params)).proximal_mu() == mu


def test_other_strategies_have_no_proximal_term():
    assert FedAvg().proximal_mu() == 0.0


def test_aggregation_is_fedavg():
    updates = [make_update(0, n=1, w=[1.0, 2.0]), make_update(1, n=3, w=[5.0, -2.0])]
    previous = {"w": torch.zeros(2)}

    out = run_round(FedProx(), previous, updates, 1)

    torch.testing.assert_close(out["w"], torch.tensor([4.0, -1.0]))


def test_negative_mu_is_rejected():
    with pytest.raises(ValueError):
        FedProxParams(mu=-0.1)

"""FedProx sends mu to the clients, adds the proximal term there and aggregates as FedAvg."""

import pytest
import torch
from torch import nn

from fedsim import records as R
from fedsim.records import RoundContext, WireError
from fedsim.strategies.fedavg import FedAvg
from fedsim.strategies.fedprox import FedProx, FedProxParams
from tests.conftest import make_update
from tests.strategies.tiny import run_round


def _ctx(**params) -> RoundContext:
    return RoundContext(server_round=1, aggregation=1, client_ids=(0,), reply=R.REPLY_WEIGHTS, lr=0.1,
                        local_epochs=1, batch_size=8, seed=0, params=params)


@pytest.mark.parametrize(("params", "mu"), [({}, 0.01), ({"mu": 0.5}, 0.5), ({"mu": 0.0}, 0.0)])
def test_mu_goes_into_the_round_context(params, mu):
    assert FedProx(FedProxParams(**params)).client_hooks().round_params(1) == {"proximal-mu": mu}


def test_other_strategies_send_nothing_and_add_no_term():
    hooks = FedAvg().client_hooks()

    assert hooks.round_params(1) == {} and hooks.loss_term(nn.Linear(2, 1), _ctx()) is None


def test_the_term_is_half_mu_times_the_squared_distance_to_the_loaded_weights():
    # Prepare: the client loaded w = [1, 2], b = [0]; training then moved them by [0.5, -1] and [2]
    model = nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 2.0]]))
        model.bias.zero_()
    term = FedProx().client_hooks().loss_term(model, _ctx(**{"proximal-mu": 0.4}))
    with torch.no_grad():
        model.weight.add_(torch.tensor([[0.5, -1.0]]))
        model.bias.add_(2.0)
    # Execute
    value = term(model)
    # Assert: 0.4 / 2 * (0.25 + 1 + 4) = 1.05; its gradient is mu * (w - w_loaded)
    value.backward()
    assert float(value.detach()) == pytest.approx(1.05)
    torch.testing.assert_close(model.weight.grad, torch.tensor([[0.2, -0.4]]))
    torch.testing.assert_close(model.bias.grad, torch.tensor([0.8]))


def test_mu_zero_adds_no_term_and_a_missing_mu_is_refused_by_name():
    hooks = FedProx().client_hooks()

    assert hooks.loss_term(nn.Linear(2, 1), _ctx(**{"proximal-mu": 0.0})) is None
    with pytest.raises(WireError, match="no 'params.proximal-mu'"):
        hooks.loss_term(nn.Linear(2, 1), _ctx())


def test_aggregation_is_fedavg():
    updates = [make_update(0, n=1, w=[1.0, 2.0]), make_update(1, n=3, w=[5.0, -2.0])]
    previous = {"w": torch.zeros(2)}

    out = run_round(FedProx(), previous, updates, 1)

    torch.testing.assert_close(out["w"], torch.tensor([4.0, -1.0]))


def test_negative_mu_is_rejected():
    with pytest.raises(ValueError):
        FedProxParams(mu=-0.1)

"""FedAdam / FedYogi / FedAdagrad: one server step by hand, and moments through a checkpoint."""

import io
import math

import pydantic
import pytest
import torch

from fedsim.strategies.fedavg import FedAvg
from fedsim.strategies.fedopt import FedAdagrad, FedAdam, FedOptParams, FedYogi
from tests.conftest import make_update
from tests.strategies.tiny import run_round

PREVIOUS = {"w": torch.tensor([1.0, 1.0]), "steps": torch.tensor(4)}


def _updates(delta=(1.0, -2.0)):
    # two clients whose sample-weighted mean is PREVIOUS + delta, steps mean (6*1 + 10*3)/4 = 9
    w = [1.0 + delta[0], 1.0 + delta[1]]
    return [make_update(0, n=1, w=[w[0] - 3.0, w[1] + 3.0], steps=6),
            make_update(1, n=3, w=[w[0] + 1.0, w[1] - 1.0], steps=10)]


def test_fedadam_one_step_by_hand():
    eta, b1, b2, tau, t = 0.1, 0.9, 0.99, 1e-3, 1
    out = run_round(FedAdam(), PREVIOUS, _updates(), server_round=t)

    # Δ = [1, -2]; m = (1-b1)Δ; v = (1-b2)Δ²; Flower's bias correction uses t + 1
    eta_norm = eta * math.sqrt(1 - b2 ** (t + 1)) / (1 - b1 ** (t + 1))
    expected = [1.0 + eta_norm * (1 - b1) * d / (math.sqrt((1 - b2) * d * d) + tau) for d in (1.0, -2.0)]
    torch.testing.assert_close(out["w"], torch.tensor(expected))
    assert int(out["steps"]) == 9  # integer buffer: FedAvg mean, not the optimiser


def test_fedyogi_one_step_by_hand():
    eta, b1, b2, tau = 0.01, 0.9, 0.99, 1e-3
    out = run_round(FedYogi(), PREVIOUS, _updates(), server_round=1)

    # v_1 = 0 - (1-b2)Δ² sign(0 - Δ²) = (1-b2)Δ²; no bias correction in Yogi
    expected = [1.0 + eta * (1 - b1) * d / (math.sqrt((1 - b2) * d * d) + tau) for d in (1.0, -2.0)]
    torch.testing.assert_close(out["w"], torch.tensor(expected))


def test_fedadagrad_one_step_by_hand():
    eta, tau = 0.1, 1e-3
    out = run_round(FedAdagrad(), PREVIOUS, _updates(), server_round=1)

    # m = Δ (β1 = 0), v = Δ²
    expected = [1.0 + eta * d / (abs(d) + tau) for d in (1.0, -2.0)]
    torch.testing.assert_close(out["w"], torch.tensor(expected))


def test_fedadam_second_step_uses_the_moments():
    eta, b1, b2, tau = 0.1, 0.9, 0.99, 1e-3
    strategy = FedAdam()
    mid = run_round(strategy, PREVIOUS, _updates(), server_round=1)
    prev2 = {"w": mid["w"], "steps": mid["steps"]}
    mean2 = prev2["w"] + torch.tensor([0.5, 0.5])
    updates2 = [make_update(0, n=2, w=mean2.tolist(), steps=9)]

    out = run_round(strategy, prev2, updates2, server_round=2)

    d1, d2 = torch.tensor([1.0, -2.0], dtype=torch.float64), torch.tensor([0.5, 0.5], dtype=torch.float64)
    m = b1 * (1 - b1) * d1 + (1 - b1) * d2
    v = b2 * (1 - b2) * d1 ** 2 + (1 - b2) * d2 ** 2
    eta_norm = eta * math.sqrt(1 - b2 ** 3) / (1 - b1 ** 3)
    torch.testing.assert_close(out["w"].double(), prev2["w"].double() + eta_norm * m / (v.sqrt() + tau))


@pytest.mark.parametrize("cls", [FedAdam, FedYogi, FedAdagrad])
def test_moments_round_trip_through_a_checkpoint(cls):
    continuous = cls()
    mid = run_round(continuous, PREVIOUS, _updates(), 1)
    expected = run_round(continuous, mid, _updates((0.3, 0.1)), 2)
    first = cls()
    run_round(first, PREVIOUS, _updates(), 1)
    buffer = io.BytesIO()
    torch.save({"strategy": first.state_dict()}, buffer)
    buffer.seek(0)

    resumed = cls()
    resumed.load_state_dict(torch.load(buffer, weights_only=True)["strategy"])
    out = run_round(resumed, mid, _updates((0.3, 0.1)), 2)

    assert set(first.state_dict()) == {"m_t", "v_t"}
    torch.testing.assert_close(out["w"], expected["w"])


def test_fresh_state_is_empty():
    assert FedAdam().state_dict() == {}


def test_aggregation_before_the_step_is_fedavg():
    # with a huge tau the step is eta_norm * m / tau ≈ 0, but the mean must still be FedAvg's
    strategy = FedAdam(FedOptParams(eta=1.0, beta_1=0.0, beta_2=0.0, tau=1.0))

    out = run_round(strategy, PREVIOUS, _updates(), server_round=1)

    fedavg = run_round(FedAvg(), PREVIOUS, _updates(), server_round=1)
    # β1 = β2 = 0: m = Δ, v = Δ², eta_norm = 1 -> w = prev + Δ / (|Δ| + 1)
    delta = fedavg["w"] - PREVIOUS["w"]
    torch.testing.assert_close(out["w"], PREVIOUS["w"] + delta / (delta.abs() + 1.0))


@pytest.mark.parametrize("params", [{"eta": 0.0}, {"beta_1": 1.0}, {"tau": -1.0}, {"lr": 0.1}])
def test_params_are_validated(params):
    with pytest.raises(pydantic.ValidationError):
        FedOptParams(**params)

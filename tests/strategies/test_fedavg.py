"""FedAvg as a reduction, against hand-computed weighted means."""

import torch

from fedsim.strategies.fedavg import FedAvg
from tests.conftest import make_update

PREVIOUS = {"w": torch.zeros(2), "b": torch.zeros(()), "steps": torch.tensor(0)}


def _updates():
    # case: three clients with 1, 2 and 5 examples
    return [
        make_update(0, n=1, w=[1.0, 2.0], b=3.0, steps=4),
        make_update(1, n=2, w=[4.0, -2.0], b=0.0, steps=8),
        make_update(2, n=5, w=[0.0, 1.0], b=1.0, steps=2),
    ]


def test_weighted_mean_matches_hand_computation():
    acc = FedAvg().new_accumulator(PREVIOUS, server_round=1)
    for u in _updates():
        acc.accumulate(u)

    out = acc.finalize()

    # w = (1*[1,2] + 2*[4,-2] + 5*[0,1]) / 8 = [9/8, 3/8]; b = (3 + 0 + 5) / 8 = 1
    torch.testing.assert_close(out["w"], torch.tensor([9 / 8, 3 / 8]))
    torch.testing.assert_close(out["b"], torch.tensor(1.0))
    # integer buffer: (4 + 16 + 10) / 8 = 3.75 -> rounded, dtype kept
    assert out["steps"].dtype == torch.int64 and int(out["steps"]) == 4


def test_merge_of_two_partial_accumulators_equals_one_accumulator():
    strategy = FedAvg()
    whole = strategy.new_accumulator(PREVIOUS, 1)
    left = strategy.new_accumulator(PREVIOUS, 1)
    right = strategy.new_accumulator(PREVIOUS, 1)
    updates = _updates()
    for u in updates:
        whole.accumulate(u)
    left.accumulate(updates[0])
    for u in updates[1:]:
        right.accumulate(u)

    left.merge(right)

    assert left.num_clients == 3
    for name, value in whole.finalize().items():
        torch.testing.assert_close(left.finalize()[name], value)


def test_single_client_returns_its_model():
    acc = FedAvg().new_accumulator(PREVIOUS, 1)
    acc.accumulate(make_update(0, n=7, w=[0.5, -0.25], b=2.0, steps=3))

    out = acc.finalize()

    torch.testing.assert_close(out["w"], torch.tensor([0.5, -0.25]))
    assert int(out["steps"]) == 3


def test_finalize_without_clients_is_an_error():
    acc = FedAvg().new_accumulator(PREVIOUS, 1)
    try:
        acc.finalize()
    except ValueError as e:
        assert "no client updates" in str(e)
    else:
        raise AssertionError("finalize on an empty accumulator must raise")

"""Median, trimmed mean and Krum on hand-made clients; their row accumulators merge by concatenation."""

import pytest
import torch

from fedsim.strategies.krum import Krum, KrumParams
from fedsim.strategies.median import Median
from fedsim.strategies.trimmed_mean import TrimmedMean, TrimmedMeanParams
from tests.conftest import make_update
from tests.strategies.tiny import run_round

PREVIOUS = {"w": torch.zeros(2), "steps": torch.tensor(0)}


def _clients(points, ns=None, steps=None):
    ns = ns or [1] * len(points)
    steps = steps or list(range(len(points)))
    return [make_update(k, n=n, w=p, steps=s) for k, (p, n, s) in enumerate(zip(points, ns, steps))]


@pytest.mark.parametrize(("points", "expected"), [
    ([[1.0, 5.0], [2.0, -1.0], [10.0, 0.0]], [2.0, 0.0]),  # case: odd count, the middle value
    ([[1.0, 5.0], [2.0, -1.0], [10.0, 0.0], [4.0, 1.0]], [3.0, 0.5]),  # case: even count, mean of the two middle
])
def test_median_by_hand(points, expected):
    out = run_round(Median(), PREVIOUS, _clients(points), 1)

    torch.testing.assert_close(out["w"], torch.tensor(expected))


def test_median_ignores_one_outlier():
    out = run_round(Median(), PREVIOUS, _clients([[1.0, 1.0], [1.1, 0.9], [1e6, -1e6]]), 1)

    torch.testing.assert_close(out["w"], torch.tensor([1.1, 0.9]))


@pytest.mark.parametrize(("beta", "expected"), [
    (0.2, [3.0, 0.0]),  # case: int(0.2*5) = 1 cut at each end: mean(2, 3, 4), mean(-1, 0, 1)
    (0.0, [22.0, 18.0]),  # case: no cut is the plain (unweighted) mean
    (0.4, [3.0, 0.0]),  # case: int(0.4*5) = 2 cut at each end: the median
])
def test_trimmed_mean_by_hand(beta, expected):
    points = [[1.0, -100.0], [2.0, 1.0], [3.0, 0.0], [4.0, -1.0], [100.0, 190.0]]

    out = run_round(TrimmedMean(TrimmedMeanParams(beta=beta)), PREVIOUS, _clients(points), 1)

    torch.testing.assert_close(out["w"], torch.tensor(expected))


# Squared distances: a-b .01, a-c .04, a-d .18, b-c .05, b-d .13, c-d .10, e far from all.
# f = 1 -> each client's score sums its 5-1-2 = 2 nearest: a .05, b .06, c .09, d .23, e huge.
KRUM_POINTS = [[0.0, 0.0], [0.1, 0.0], [0.0, 0.2], [0.3, 0.3], [10.0, 10.0]]


def test_krum_selects_the_most_central_client():
    out = run_round(Krum(KrumParams(num_malicious=1)), PREVIOUS, _clients(KRUM_POINTS), 1)

    torch.testing.assert_close(out["w"], torch.tensor([0.0, 0.0]))
    assert int(out["steps"]) == 0  # client a's own buffer


def test_multi_krum_averages_the_selected_by_num_examples():
    strategy = Krum(KrumParams(num_malicious=1, num_selected=2))

    out = run_round(strategy, PREVIOUS, _clients(KRUM_POINTS, ns=[1, 3, 1, 1, 1]), 1)

    # a (n=1) and b (n=3): (1*[0,0] + 3*[0.1,0]) / 4
    torch.testing.assert_close(out["w"], torch.tensor([0.075, 0.0]))
    assert strategy.last_round_info() == {"krum_selected": 2.0}


@pytest.mark.parametrize("cls", [Median, TrimmedMean, Krum])
def test_rows_merge_by_concatenation_in_any_order(cls):
    strategy = cls()
    updates = _clients([[1.0, 5.0], [2.0, -1.0], [10.0, 0.0], [4.0, 1.0], [0.5, 0.5]])
    whole = run_round(strategy, PREVIOUS, updates, 1)
    worker_a, worker_b, server = (strategy.new_accumulator(PREVIOUS, 1) for _ in range(3))
    for u in updates[3:]:
        worker_a.accumulate(u)
    for u in updates[:3]:
        worker_b.accumulate(u)

    server.merge_sums(worker_a.sums, worker_a.num_clients)  # as a cohort worker's reply
    server.merge(worker_b)

    assert not strategy.decomposable and server.num_clients == 5
    assert server.sums["row:w"].shape == (5, 2)
    for name, value in whole.items():
        torch.testing.assert_close(server.finalize()[name], value)


@pytest.mark.parametrize(("cls", "params"), [(TrimmedMean, {"beta": 0.5}), (Krum, {"num_selected": 0}),
                                             (Krum, {"num_malicious": -1})])
def test_params_are_validated(cls, params):
    with pytest.raises(ValueError):
        cls.Params(**params)

"""Median, trimmed mean and Krum on hand-made clients; their row accumulators merge by concatenation."""

import math

import pytest
import torch

from fedsim.strategies.krum import Krum, KrumParams, krum_select, pairwise_sq_distances
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


def reference_multikrum(vectors: list[list[float]], f: int, selected: int) -> list[int]:
    """Multi-Krum from Blanchard et al. 2017 (arXiv 1703.02757), one pair at a time in exact
    float sums: score(i) = Σ_{i→j} ‖V_i − V_j‖² over the n − f − 2 vectors closest to V_i
    (at least one, as Flower), then the ``selected`` lowest scores, ties to the lower index."""
    n = len(vectors)
    closest = min(n - 1, max(1, n - f - 2))
    scores = []
    for i in range(n):
        dist = sorted(math.fsum((a - b) ** 2 for a, b in zip(vectors[i], vectors[j])) for j in range(n) if j != i)
        scores.append(math.fsum(dist[:closest]))
    return sorted(range(n), key=lambda i: (scores[i], i))[:selected]


def test_krum_distances_by_hand():
    rows = {"w": torch.tensor(KRUM_POINTS[:4]), "steps": torch.tensor([7, 0, 0, 0])}

    dist = pairwise_sq_distances(rows)

    # the comment above KRUM_POINTS; the integer buffer is not part of the distance
    expected = torch.tensor([[0.0, 0.01, 0.04, 0.18], [0.01, 0.0, 0.05, 0.13],
                             [0.04, 0.05, 0.0, 0.10], [0.18, 0.13, 0.10, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(dist, expected)


@pytest.mark.parametrize(("f", "selected"), [
    (2, 1),  # case: Krum
    (1, 3),  # case: Multi-Krum
])
def test_krum_agrees_with_the_paper_on_small_updates(f, selected):
    # Flower's float32 ‖a‖² + ‖b‖² − 2a·b agreed in 0 of these 20 trials (f=2, selected=1)
    for trial in range(20):
        g = torch.Generator().manual_seed(trial)
        previous = {"w": torch.randn(200, generator=g), "b": torch.randn(10, generator=g)}
        rows = {k: torch.stack([v + 1e-4 * torch.randn(v.shape, generator=g) for _ in range(8)])
                for k, v in previous.items()}
        vectors = [torch.cat([rows["w"][i], rows["b"][i]]).double().tolist() for i in range(8)]

        chosen = krum_select(rows, f, selected)

        assert chosen == reference_multikrum(vectors, f, selected), f"trial {trial}"


def test_krum_ties_go_to_the_lowest_client_id():
    updates = [make_update(cid, w=[1.0, 1.0], steps=cid) for cid in (7, 3, 5)]  # identical, arriving unsorted

    out = run_round(Krum(), PREVIOUS, updates, 1)

    assert int(out["steps"]) == 3


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

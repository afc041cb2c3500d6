"""L-DAWA against hand-computed values and a slow reference written from the official code."""

from functools import reduce

import numpy as np
import pydantic
import pytest
import torch

from fedsim.strategies.fedavg import FedAvg
from fedsim.strategies.ldawa import LDAWA, LDAWAParams, layer_divergence
from tests.conftest import make_update
from tests.strategies.tiny import random_global, random_updates, run_round

AFTER_WARMUP = 4  # default warmup_rounds = 3: L-DAWA from round 4 on


def reference_ldawa(clients: list[dict[str, np.ndarray]], w_g: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``my_aggregate`` of yasar-rehman/L-DAWA ``FL_Pretraining/main_CIFAR10_LDAWA.py``, one
    client and one layer at a time, in float64; fedsim's documented differences: integer
    buffers take the maximum over clients and a zero global norm enters unscaled."""
    names = list(w_g)
    c = [[w[name].astype(np.float64) for name in names] for w in clients]
    for wi in range(len(c)):
        for lid, name in enumerate(names):
            x, y = c[wi][lid], w_g[name].astype(np.float64)
            if not np.issubdtype(w_g[name].dtype, np.floating) or not (x.ndim > 0 and y.ndim > 0):
                continue
            if np.linalg.norm(x) > 0 and np.linalg.norm(y) > 0:
                v = (x * y).sum() / (np.linalg.norm(x) * np.linalg.norm(y))
                c[wi][lid] = x * min(v, 1.0)
    out = {}
    for lid, name in enumerate(names):
        layer = [c[wi][lid] for wi in range(len(c))]
        if np.issubdtype(w_g[name].dtype, np.floating):
            out[name] = reduce(np.add, layer) / len(c)
        else:
            out[name] = reduce(np.maximum, layer)
    return out


@pytest.mark.parametrize(("client", "global_", "expected"), [
    ([2.0, 0.0], [1.0, 0.0], 1.0),  # case: same direction, longer -> cos 1
    ([3.0, 4.0], [1.0, 0.0], 0.6),  # case: cos = 3/5
    ([0.0, 1.0], [1.0, 0.0], 0.0),  # case: orthogonal
    ([-1.0, 0.0], [1.0, 0.0], -1.0),  # case: opposite, negative stays negative
    ([0.0, 0.0], [1.0, 0.0], 1.0),  # case: zero client norm enters unscaled
    ([1.0, 2.0], [0.0, 0.0], 1.0),  # case: zero global norm enters unscaled
    (2.5, -1.0, 1.0),  # case: 0-d tensor enters unscaled (official: len(shape) == 0 skipped)
])
def test_layer_divergence_by_hand(client, global_, expected):
    delta = layer_divergence(torch.tensor(client), torch.tensor(global_))

    assert delta == pytest.approx(expected, abs=1e-12)


def test_cosine_is_capped_at_one():
    g = torch.randn(1000, generator=torch.Generator().manual_seed(0))

    delta = layer_divergence(3.7 * g, g)

    assert delta <= 1.0 and delta == pytest.approx(1.0, abs=1e-12)


PREVIOUS = {"conv.weight": torch.tensor([1.0, 0.0]), "bn.running_mean": torch.tensor([0.0, 2.0]),
            "bn.running_var": torch.tensor([1.0, 1.0]), "bn.num_batches_tracked": torch.tensor(5)}


def _two_clients():
    return [
        # δ: conv 1 (longer, same direction), running_mean 1, running_var 1
        make_update(0, n=1, conv__weight=[2.0, 0.0], bn__running_mean=[0.0, 1.0],
                    bn__running_var=[2.0, 2.0], bn__num_batches_tracked=7),
        # δ: conv 0.6, running_mean 0 (orthogonal), running_var 1
        make_update(1, n=2, conv__weight=[3.0, 4.0], bn__running_mean=[1.0, 0.0],
                    bn__running_var=[3.0, 3.0], bn__num_batches_tracked=9),
    ]


def test_ldawa_round_by_hand():
    out = run_round(LDAWA(), PREVIOUS, _two_clients(), AFTER_WARMUP)

    # conv: (1*[2,0] + 0.6*[3,4]) / 2 = [1.9, 1.2]   (no n_k weighting, no Σδ normalisation)
    torch.testing.assert_close(out["conv.weight"], torch.tensor([1.9, 1.2]))
    # BN running stats are scaled and averaged too: ([0,1] + 0*[1,0]) / 2, ([2,2] + [3,3]) / 2
    torch.testing.assert_close(out["bn.running_mean"], torch.tensor([0.0, 0.5]))
    torch.testing.assert_close(out["bn.running_var"], torch.tensor([2.5, 2.5]))
    # integer buffer copied (maximum over clients), not averaged, dtype kept
    assert out["bn.num_batches_tracked"].dtype == torch.int64
    assert int(out["bn.num_batches_tracked"]) == 9


def test_negative_cosine_subtracts():
    updates = [make_update(0, w=[2.0, 0.0]), make_update(1, w=[0.0, 1.0]), make_update(2, w=[-1.0, 0.0])]

    out = run_round(LDAWA(), {"w": torch.tensor([1.0, 0.0])}, updates, AFTER_WARMUP)

    # (1*[2,0] + 0*[0,1] + (-1)*[-1,0]) / 3 = [1, 0]
    torch.testing.assert_close(out["w"], torch.tensor([1.0, 0.0]))


@pytest.mark.parametrize("server_round", [1, 2, 3])
def test_warmup_rounds_are_fedavg(server_round):
    out = run_round(LDAWA(), PREVIOUS, _two_clients(), server_round)

    expected = run_round(FedAvg(), PREVIOUS, _two_clients(), server_round)
    for name, value in expected.items():
        torch.testing.assert_close(out[name], value)


def test_warmup_is_configurable():
    strategy = LDAWA(LDAWAParams(warmup_rounds=0))

    out = run_round(strategy, PREVIOUS, _two_clients(), server_round=1)

    torch.testing.assert_close(out["conv.weight"], torch.tensor([1.9, 1.2]))


def test_equals_fedavg_when_all_deltas_are_one_and_n_equal():
    previous = {"w": torch.tensor([1.0, 2.0, -1.0])}
    # every client a positive multiple of the global: all δ = 1
    updates = [make_update(k, n=5, w=(s * previous["w"]).tolist()) for k, s in enumerate([0.5, 1.0, 3.0])]

    out = run_round(LDAWA(), previous, updates, AFTER_WARMUP)

    torch.testing.assert_close(out["w"], run_round(FedAvg(), previous, updates, 1)["w"])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_slow_reference_on_random_models(seed):
    previous = random_global(seed)
    updates = random_updates(previous, num_clients=5, seed=seed)
    previous["backbone.conv.bias"] = torch.zeros(3)  # case: a zero global tensor

    out = run_round(LDAWA(), previous, updates, AFTER_WARMUP)

    expected = reference_ldawa([{k: v.numpy() for k, v in u.arrays.items()} for u in updates],
                               {k: v.numpy() for k, v in previous.items()})
    for name, value in expected.items():
        torch.testing.assert_close(out[name].double(), torch.as_tensor(value).double(),
                                   atol=1e-6, rtol=1e-6, check_dtype=False)


def test_integer_buffers_merge_by_maximum():
    strategy = LDAWA()
    left, right = (strategy.new_accumulator(PREVIOUS, AFTER_WARMUP) for _ in range(2))
    a, b = _two_clients()
    left.accumulate(b)  # the larger count (9) on the left ...
    right.accumulate(a)

    right.merge_sums(left.sums, left.num_clients)  # ... merged into the right

    assert int(right.finalize()["bn.num_batches_tracked"]) == 9


def test_reports_mean_delta():
    strategy = LDAWA()

    run_round(strategy, PREVIOUS, _two_clients(), AFTER_WARMUP)

    # client 0: mean δ over 3 float tensors = 1; client 1: (0.6 + 0 + 1) / 3
    info = strategy.last_round_info()
    assert info["ldawa_warmup"] == 0.0
    assert info["ldawa_mean_delta"] == pytest.approx((1.0 + 1.6 / 3) / 2)


@pytest.mark.parametrize("params", [{"warmup_rounds": -1}, {"warmup": 3}])
def test_params_are_validated(params):
    with pytest.raises(pydantic.ValidationError):
        LDAWA.Params(**params)


def test_a_skipped_round_does_not_shorten_the_warmup():
    # Prepare: rounds 1..6, round 2 skipped (global unchanged), so rounds 1, 3, 4, 5, 6 are
    # aggregations 1..5, as the round loop numbers them; default warm-up = 3 aggregations
    strategy = LDAWA()
    rounds = {1: 1, 3: 2, 4: 3, 5: 4, 6: 5}

    # Execute
    outs, warmup = {}, {}
    for server_round, aggregation in rounds.items():
        outs[server_round] = run_round(strategy, PREVIOUS, _two_clients(), server_round, aggregation=aggregation)
        warmup[server_round] = strategy.last_round_info()["ldawa_warmup"]

    # Assert: three FedAvg aggregations (rounds 1, 3, 4), then L-DAWA
    assert warmup == {1: 1.0, 3: 1.0, 4: 1.0, 5: 0.0, 6: 0.0}
    # round 4 is FedAvg: (1*[2,0] + 2*[3,4]) / 3; round 5 is L-DAWA: (1*[2,0] + 0.6*[3,4]) / 2
    torch.testing.assert_close(outs[4]["conv.weight"], torch.tensor([8.0 / 3, 8.0 / 3]))
    torch.testing.assert_close(outs[5]["conv.weight"], torch.tensor([1.9, 1.2]))


def test_the_aggregation_index_defaults_to_the_server_round():
    acc = LDAWA().new_accumulator(PREVIOUS, 4)

    assert acc.aggregation == 4 and LDAWA().new_accumulator(PREVIOUS, 4, aggregation=3).aggregation == 3

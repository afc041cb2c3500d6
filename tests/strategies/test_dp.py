"""Central DP wrapper: clipping bounds every contribution, noise has the configured std."""

import pytest
import torch
from torch import nn

from fedsim.records import RoundContext
from fedsim.strategies.dp import DPFixedClipping, clip_update, wrap_dp
from fedsim.strategies.fedavg import FedAvg
from fedsim.strategies.fedavgm import FedAvgM
from fedsim.strategies.fedopt import FedAdam
from fedsim.strategies.fedprox import FedProx, FedProxParams
from fedsim.strategies.ldawa import LDAWA
from fedsim.strategies.fedvssl import FedVSSL
from fedsim.strategies.median import Median
from tests.conftest import make_update
from tests.strategies.tiny import run_round

PREVIOUS = {"w": torch.tensor([1.0, 1.0, 1.0]), "b": torch.tensor(0.0), "steps": torch.tensor(3)}


@pytest.mark.parametrize("scale", [0.01, 1.0, 50.0])
def test_clipping_bounds_every_client_update(scale):
    g = torch.Generator().manual_seed(0)
    for k in range(20):
        w = PREVIOUS["w"] + scale * torch.randn(3, generator=g)
        update = make_update(k, w=w.tolist(), b=scale * float(torch.randn((), generator=g)), steps=9)

        clipped, _ = clip_update(update, PREVIOUS, clip=0.5)

        delta = torch.cat([clipped.arrays["w"] - PREVIOUS["w"], (clipped.arrays["b"] - PREVIOUS["b"]).reshape(1)])
        assert float(delta.norm()) <= 0.5 * (1 + 1e-6)
        assert int(clipped.arrays["steps"]) == 9  # integer buffers pass as sent


def test_clipping_keeps_the_direction_and_leaves_small_updates_alone():
    big = make_update(0, w=[4.0, 1.0, 1.0], b=4.0, steps=3)  # Δ = [3, 0, 0, 4], norm 5
    small = make_update(1, w=[1.1, 1.0, 1.0], b=0.0, steps=3)

    clipped, was = clip_update(big, PREVIOUS, clip=1.0)
    same, was_small = clip_update(small, PREVIOUS, clip=1.0)

    torch.testing.assert_close(clipped.arrays["w"], torch.tensor([1.6, 1.0, 1.0]))
    torch.testing.assert_close(clipped.arrays["b"], torch.tensor(0.8))
    assert was and not was_small and same is small


def test_statistics_and_constants_are_neither_clipped_nor_part_of_the_norm():
    previous = {"w": torch.zeros(2), "bn.running_var": torch.ones(2), "block.scale_conv": torch.ones(2)}
    update = make_update(0, w=[3.0, 4.0], bn__running_var=[100.0, 0.01], block__scale_conv=[9.0, 9.0])

    clipped, was = clip_update(update, previous, clip=1.0)

    # the norm is ‖[3, 4]‖ = 5 over the trainable tensor alone; the others pass as sent
    assert was
    torch.testing.assert_close(clipped.arrays["w"], torch.tensor([0.6, 0.8]))
    torch.testing.assert_close(clipped.arrays["bn.running_var"], torch.tensor([100.0, 0.01]))
    torch.testing.assert_close(clipped.arrays["block.scale_conv"], torch.tensor([9.0, 9.0]))


def _see_data(model: nn.Module, g: torch.Generator, offset: float) -> None:
    """Train-mode passes over low-variance inputs: BN's running_var falls to about 0.001."""
    model.train()
    with torch.no_grad():
        for _ in range(40):
            model(0.05 * torch.randn(16, 3, generator=g) + offset)


def _bn_model() -> nn.Module:
    """Linear + BatchNorm1d whose statistics already come from low-variance data."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    _see_data(model, torch.Generator().manual_seed(0), 0.0)
    return model


def _bn_clients(model: nn.Module, num_clients: int) -> list:
    """Clients whose BN saw more low-variance data and whose weights moved."""
    g = torch.Generator().manual_seed(1)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    updates = []
    for k in range(num_clients):
        model.load_state_dict(start)
        _see_data(model, g, float(k))
        with torch.no_grad():
            model[0].weight.add_(0.1 * torch.randn(4, 3, generator=g))
        arrays = {name: v.clone() for name, v in model.state_dict().items()}
        updates.append(make_update(k, n=10, **{name.replace(".", "__"): v for name, v in arrays.items()}))
    model.load_state_dict(start)
    return updates


@pytest.mark.parametrize("inner", [FedAvg, FedAdam, FedAvgM, LDAWA])
def test_dp_on_a_batchnorm_model_keeps_variances_positive_and_eval_finite(inner):
    # Prepare: the setting, z = 1, C = 1, 4 clients: σ = 0.25 on the mean, far above
    # the running variances (≈ 0.001; noise on them went to −0.147 and eval BN to NaN)
    model = _bn_model()
    previous = {k: v.clone() for k, v in model.state_dict().items()}
    updates = _bn_clients(model, 4)
    strategy = wrap_dp(inner(), clip=1.0, noise_multiplier=1.0, seed=0)

    # Execute
    out = run_round(strategy, previous, updates, 1)
    model.load_state_dict(out)
    model.eval()
    y = model(torch.randn(8, 3, generator=torch.Generator().manual_seed(2)))

    # Assert: statistics are the clients' plain mean (equal n; FedAvg warm-up for L-DAWA),
    # the trainable weight got noise, the eval output is finite
    assert strategy.last_round_info()["dp_noise_std"] == pytest.approx(0.25)
    for name in ("1.running_mean", "1.running_var"):
        torch.testing.assert_close(out[name], torch.stack([u.arrays[name] for u in updates]).mean(0))
    assert bool((out["1.running_var"] >= 0).all())
    assert not torch.allclose(out["0.weight"], torch.stack([u.arrays["0.weight"] for u in updates]).mean(0),
                              atol=0.05)
    assert bool(torch.isfinite(y).all())


def test_without_noise_the_round_is_fedavg_of_the_clipped_updates():
    strategy = wrap_dp(FedAvg(), clip=1.0, noise_multiplier=0.0, seed=0)
    updates = [make_update(0, n=1, w=[4.0, 1.0, 1.0], b=4.0, steps=3), make_update(1, n=1, w=[1.0, 1.0, 1.0], b=0.0, steps=3)]

    out = run_round(strategy, PREVIOUS, updates, 1)

    # client 0 clipped to w = [1.6, 1, 1], b = 0.8; mean with the unchanged client 1
    torch.testing.assert_close(out["w"], torch.tensor([1.3, 1.0, 1.0]))
    torch.testing.assert_close(out["b"], torch.tensor(0.4))
    info = strategy.last_round_info()
    assert info["dp_clipped"] == 1.0 and info["dp_clients"] == 2.0 and info["dp_noise_std"] == 0.0


@pytest.mark.parametrize(("ns", "expected_std"), [
    ([10, 10, 10, 10], 2.0 * 1.5 / 4),  # case: equal weights, Flower's z·C/K
    ([10, 30], 2.0 * 1.5 * 30 / 40),  # case: weighted mean, z·C·n_max/Σn
])
def test_noise_on_zero_updates_has_the_configured_std(ns, expected_std):
    previous = {"w": torch.zeros(2000)}
    strategy = wrap_dp(FedAvg(), clip=1.5, noise_multiplier=2.0, seed=7)
    updates = [make_update(k, n=n, w=[0.0] * 2000) for k, n in enumerate(ns)]

    out = run_round(strategy, previous, updates, server_round=3)

    assert strategy.last_round_info()["dp_noise_std"] == pytest.approx(expected_std)
    assert float(out["w"].std()) == pytest.approx(expected_std, rel=0.05)
    assert abs(float(out["w"].mean())) < 4 * expected_std / 2000 ** 0.5


def test_noise_is_seeded_by_seed_and_round():
    previous = {"w": torch.zeros(50)}
    updates = [make_update(0, w=[0.0] * 50)]

    def noise(seed, rnd):
        return run_round(wrap_dp(FedAvg(), clip=1.0, noise_multiplier=1.0, seed=seed), previous, updates, rnd)["w"]

    torch.testing.assert_close(noise(1, 2), noise(1, 2))
    assert not torch.equal(noise(1, 2), noise(1, 3))
    assert not torch.equal(noise(1, 2), noise(2, 2))


def test_server_optimiser_gets_the_noise_before_its_step():
    previous = {"w": torch.zeros(4)}
    updates = [make_update(0, w=[1.0, -1.0, 2.0, 0.5])]
    dp = wrap_dp(FedAdam(), clip=10.0, noise_multiplier=0.5, seed=3)
    out = run_round(dp, previous, updates, 1)
    noise = run_round(wrap_dp(FedAvg(), clip=10.0, noise_multiplier=0.5, seed=3), previous, updates, 1)["w"] - updates[0].arrays["w"]

    noisy_mean = updates[0].arrays["w"] + noise
    expected = run_round(FedAdam(), previous, [make_update(0, w=noisy_mean.tolist())], 1)

    torch.testing.assert_close(out["w"], expected["w"])


def test_wrapper_takes_the_client_hooks_whole_and_folds_itself():
    inner = FedVSSL()
    strategy = wrap_dp(inner, clip=1.0, noise_multiplier=1.0, seed=0)
    keys = ["backbone.w", "head.w"]

    hooks = strategy.client_hooks()

    assert type(hooks) is type(inner.client_hooks()) and hooks.strategy is inner and hooks.fold_rule is strategy
    assert hooks.load_keys(keys) == ["backbone.w"] and hooks.sent_keys(keys) == ["backbone.w"]
    assert isinstance(strategy, DPFixedClipping) and strategy.state_dict() == inner.state_dict()


def test_the_wrapped_rules_client_values_go_to_the_clients():
    strategy = wrap_dp(FedProx(FedProxParams(mu=0.3)), clip=1.0, noise_multiplier=1.0, seed=0)

    assert strategy.client_hooks().round_params(1) == {"proximal-mu": 0.3}


def test_a_cohort_worker_folds_through_the_wrapper_so_it_clips():
    # Prepare: one update 10 away from the global, a clip of 1 and no noise
    strategy = wrap_dp(FedAvg(), clip=1.0, noise_multiplier=0.0, seed=0)
    ctx = RoundContext(server_round=1, aggregation=1, client_ids=(0,), reply="sums", lr=0.1, local_epochs=1,
                       batch_size=8, seed=0)
    # Execute
    acc = strategy.client_hooks().accumulator({"w": torch.zeros(1)}, ctx)
    acc.accumulate(make_update(0, w=[10.0]))
    # Assert: the worker's sums hold the clipped update (norm 1), and the clip count
    torch.testing.assert_close(acc.finalize()["w"], torch.tensor([1.0]))
    assert float(acc.sums["dp:clipped"]) == 1.0


def test_non_decomposable_strategies_are_refused():
    with pytest.raises(ValueError, match="decomposable"):
        wrap_dp(Median(), clip=1.0, noise_multiplier=1.0, seed=0)


@pytest.mark.parametrize(("clip", "noise"), [(0.0, 1.0), (1.0, -0.5)])
def test_params_are_validated(clip, noise):
    with pytest.raises(ValueError):
        wrap_dp(FedAvg(), clip=clip, noise_multiplier=noise, seed=0)

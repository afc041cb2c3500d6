"""Central DP wrapper: clipping bounds every contribution, noise has the configured std."""

import pytest
import torch

from fedsim.strategies.dp import DPFixedClipping, clip_update, wrap_dp
from fedsim.strategies.fedavg import FedAvg
from fedsim.strategies.fedopt import FedAdam
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


def test_wrapper_delegates_keys_mu_and_state():
    inner = FedVSSL()
    strategy = wrap_dp(inner, clip=1.0, noise_multiplier=1.0, seed=0)
    keys = ["backbone.w", "head.w"]

    assert strategy.load_keys(keys) == ["backbone.w"] and strategy.sent_keys(keys) == ["backbone.w"]
    assert strategy.proximal_mu() == 0.0 and isinstance(strategy, DPFixedClipping)
    assert strategy.state_dict() == inner.state_dict()


def test_non_decomposable_strategies_are_refused():
    with pytest.raises(ValueError, match="decomposable"):
        wrap_dp(Median(), clip=1.0, noise_multiplier=1.0, seed=0)


@pytest.mark.parametrize(("clip", "noise"), [(0.0, 1.0), (1.0, -0.5)])
def test_params_are_validated(clip, noise):
    with pytest.raises(ValueError):
        wrap_dp(FedAvg(), clip=clip, noise_multiplier=noise, seed=0)

"""Constant buffers (RepOpt's ``scale_conv`` / ``scale_1x1``) keep the previous global's value
exactly in every strategy, DP and server optimisers included; statistics are never stepped.
Iterates the registry, so new strategies are covered."""

import pytest
import torch

from fedsim.plugins import load_plugins
from fedsim.registry import STRATEGIES
from fedsim.strategies.base import Strategy, is_constant, is_statistic, is_trainable
from fedsim.strategies.dp import wrap_dp
from tests.conftest import make_update
from tests.strategies.tiny import run_round

load_plugins()


@pytest.mark.parametrize(("name", "tensor", "constant", "statistic", "trainable"), [
    ("stages.0.scale_conv", torch.ones(3), True, False, False),  # case: RepOpt-VGG / RepGhost scale
    ("stages.0.scale_1x1", torch.ones(3), True, False, False),  # case: RepOpt-VGG 1×1 scale
    ("stages.0.scale_identity", torch.ones(3), False, False, True),  # case: RepGhost's trainable d
    ("bn.running_var", torch.ones(3), False, True, False),  # case: BatchNorm statistic
    ("bn.num_batches_tracked", torch.tensor(3), False, False, False),  # case: integer buffer
    ("conv.weight", torch.ones(3), False, False, True),  # case: a parameter
])
def test_what_is_constant_statistic_or_trainable(name, tensor, constant, statistic, trainable):
    assert (is_constant(name), is_statistic(name), is_trainable(name, tensor)) == (constant, statistic, trainable)


def _build(name: str) -> Strategy:
    if name.startswith("dp("):
        return wrap_dp(_build(name[3:-1]), clip=1.0, noise_multiplier=1.0, seed=5)
    cls = STRATEGIES.get(name)
    return cls(cls.Params())


CASES = STRATEGIES.names() + ["dp(fedavg)", "dp(fedadam)", "dp(fedyogi)", "dp(fedavgm)", "dp(ldawa)"]
# names start with "backbone." so FedVSSL sends (and would aggregate) them too
PREVIOUS = {"backbone.block.conv.weight": torch.tensor([1.0, -2.0, 0.5]),
            "backbone.block.scale_conv": torch.tensor([0.7, 1.3, 0.9]),
            "backbone.block.scale_1x1": torch.tensor([0.2, 0.1, 0.3]),
            "backbone.block.bn.running_var": torch.tensor([0.01, 0.02, 0.03])}


def _clients(changed: bool) -> list:
    """Four clients that moved their weights and statistics; the scales sent unchanged, or
    changed (a client is not trusted to keep them)."""
    g = torch.Generator().manual_seed(0)
    updates = []
    for k in range(4):
        arrays = {name: v + 0.3 * torch.randn(v.shape, generator=g) for name, v in PREVIOUS.items()}
        arrays["backbone.block.bn.running_var"] = PREVIOUS["backbone.block.bn.running_var"] * (1 + 0.1 * k)
        for name in ("backbone.block.scale_conv", "backbone.block.scale_1x1"):
            arrays[name] = PREVIOUS[name] * (1 + k) if changed else PREVIOUS[name].clone()
        updates.append(make_update(k, n=5 + k, **{n.replace(".", "__"): v for n, v in arrays.items()}))
    return updates


@pytest.mark.parametrize("changed", [False, True])
@pytest.mark.parametrize("name", CASES)
def test_constant_buffers_keep_the_previous_value_exactly(name, changed):
    # Prepare: two rounds, so server optimisers also step with non-zero moments
    strategy = _build(name)

    # Execute
    first = run_round(strategy, PREVIOUS, _clients(changed), 1)
    second = run_round(strategy, first, _clients(changed), 2)

    # Assert
    for out in (first, second):
        for buffer in ("backbone.block.scale_conv", "backbone.block.scale_1x1"):
            assert torch.equal(out[buffer], PREVIOUS[buffer])
        assert bool((out["backbone.block.bn.running_var"] > 0).all())


@pytest.mark.parametrize("name", ["fedadam", "fedyogi", "fedadagrad", "fedavgm"])
def test_server_optimisers_keep_no_moments_for_statistics_or_constants(name):
    strategy = _build(name)

    run_round(strategy, PREVIOUS, _clients(changed=False), 1)

    for moments in strategy.state_dict().values():
        assert list(moments) == ["backbone.block.conv.weight"]


def test_server_optimiser_statistics_are_the_fedavg_mean():
    updates = _clients(changed=False)

    out = run_round(_build("fedadam"), PREVIOUS, updates, 1)

    # running_var × (1, 1.1, 1.2, 1.3) weighted by n = 5, 6, 7, 8: × (5 + 6.6 + 8.4 + 10.4) / 26
    torch.testing.assert_close(out["backbone.block.bn.running_var"],
                               PREVIOUS["backbone.block.bn.running_var"] * (30.4 / 26))

"""Every registered strategy: merging accumulators of any split of the clients equals one
accumulator over all of them (to 1e-5: the adaptive server optimisers divide by a root of a
sum whose float32 rounding depends on the order of addition). Iterates the registry, so new strategies are covered."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fedsim.plugins import load_plugins
from fedsim.registry import STRATEGIES
from fedsim.strategies.base import Strategy
from fedsim.strategies.dp import wrap_dp
from tests.strategies.tiny import random_global, random_updates

load_plugins()


def _build(name: str) -> Strategy:
    if name.startswith("dp("):
        return wrap_dp(_build(name[3:-1]), clip=1.0, noise_multiplier=1.0, seed=5)
    cls = STRATEGIES.get(name)
    return cls(cls.Params())


CASES = STRATEGIES.names() + ["dp(fedavg)", "dp(fedadam)", "dp(ldawa)"]


def _finalize(name, previous, server_round, groups, *, split):
    strategy = _build(name)  # fresh: server optimisers change state when finalizing
    accs = [strategy.new_accumulator(previous, server_round) for _ in groups]
    for acc, group in zip(accs, groups):
        for u in group:
            acc.accumulate(u)
    if not split:
        return accs[0].finalize()
    server = strategy.new_accumulator(previous, server_round)
    for i, acc in enumerate(accs):
        if acc.num_clients == 0:
            continue  # a worker with no valid client sends nothing to merge
        if i % 2:
            server.merge(acc)
        else:
            server.merge_sums(acc.sums, acc.num_clients)  # as a cohort worker's ArrayRecord reply
    return server.finalize()


@pytest.mark.parametrize("name", CASES)
@settings(max_examples=15, deadline=None, derandomize=True)  # the same examples in every run
@given(seed=st.integers(0, 10_000), num_clients=st.integers(1, 6), server_round=st.sampled_from([1, 2, 5]),
       data=st.data())
def test_any_split_merges_to_the_same_result(name, seed, num_clients, server_round, data):
    previous = random_global(seed)
    sent = _build(name).client_hooks().sent_keys(list(previous))
    updates = random_updates(previous, num_clients, seed, keys=sent)
    labels = data.draw(st.lists(st.integers(0, 3), min_size=num_clients, max_size=num_clients))
    order = data.draw(st.permutations(range(num_clients)))
    groups = [[updates[i] for i in order if labels[i] == g] for g in range(4)]

    whole = _finalize(name, previous, server_round, [updates], split=False)
    merged = _finalize(name, previous, server_round, groups, split=True)

    assert list(merged) == list(previous)
    for key, value in whole.items():
        assert merged[key].dtype == previous[key].dtype
        torch.testing.assert_close(merged[key], value, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", STRATEGIES.names())
def test_params_reject_unknown_keys(name):
    with pytest.raises(ValueError):
        STRATEGIES.get(name).Params(no_such_parameter=1)

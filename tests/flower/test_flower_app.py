"""fedsim.flower in a plain Flower app (tests/flower/quickstart_app.py) under Flower's own
simulation runtime: L-DAWA and FedVSSL train for a few rounds on 2 SuperNodes, and every
round's model is fedsim's own reduction of the replies the strategy received."""

from __future__ import annotations

import pytest
import torch
from flwr.simulation import run_simulation

import quickstart_app as app
from fedsim.registry import STRATEGIES
from fedsim.strategies.base import ClientUpdate


@pytest.fixture(scope="module")
def results():
    run_simulation(server_app=app.server_app, client_app=app.client_app, num_supernodes=2,
                   backend_config={"client_resources": {"num_cpus": 1},
                                   "init_args": {"address": "local", "num_cpus": 2, "logging_level": "ERROR"}})
    return app.RESULTS


def fedsim_reduction(name: str, params: dict, rounds) -> list[dict[str, torch.Tensor]]:
    """fedsim's own strategy folded over the replies the Flower strategy got, node order."""
    rule = STRATEGIES.get(name)
    strategy = rule(rule.Params(**params))
    out = []
    for aggregation, (previous, contents) in enumerate(rounds, start=1):
        acc = strategy.new_accumulator(previous, aggregation)
        for cid, content in enumerate(contents):
            m = content["metrics"]
            acc.accumulate(ClientUpdate(cid, content["arrays"].to_torch_state_dict(), int(m["num-examples"]),
                                        {"loss": m["train_loss"]}))
        out.append(acc.finalize())
    return out


@pytest.mark.parametrize(("name", "params"), [("ldawa", {"warmup_rounds": 1}), ("fedvssl", {})])
def test_flower_simulation_result_is_fedsims_reduction_of_the_replies(results, name, params):
    res = results[name]
    rounds = res["rounds"]
    assert len(rounds) == app.ROUNDS[name] and all(len(c) == 2 for _, c in rounds)
    result = res["result"]
    assert sorted(result.train_metrics_clientapp) == list(range(1, app.ROUNDS[name] + 1))
    assert sorted(result.evaluate_metrics_serverapp) == list(range(0, app.ROUNDS[name] + 1))
    assert sorted(result.evaluate_metrics_clientapp) == list(range(1, app.ROUNDS[name] + 1))
    final = result.arrays.to_torch_state_dict()
    last_previous, _ = rounds[-1]
    assert not torch.equal(final["backbone.0.weight"], last_previous["backbone.0.weight"])
    expected = fedsim_reduction(name, params, rounds)
    for key, value in final.items():
        torch.testing.assert_close(value, expected[-1][key], rtol=0, atol=0)
    # each round started from the previous round's result
    for (previous, _), got in zip(rounds[1:], expected[:-1]):
        for key, value in previous.items():
            torch.testing.assert_close(value, got[key], rtol=0, atol=0)


def test_ldawa_warms_up_then_scales_by_cosine(results):
    metrics = results["ldawa"]["result"].train_metrics_clientapp
    assert [metrics[r]["ldawa_warmup"] for r in (1, 2, 3)] == [1.0, 0.0, 0.0]
    assert 0.0 < metrics[3]["ldawa_mean_delta"] <= 1.0


def test_fedvssl_clients_send_the_backbone_and_keep_their_own_head(results):
    res = results["fedvssl"]
    for _, contents in res["rounds"]:
        assert all(set(c["arrays"]) == {k for k in c["arrays"] if k.startswith("backbone.")} for c in contents)
    final = res["result"].arrays.to_torch_state_dict()
    torch.testing.assert_close(final["head.weight"], app.initial_model().head.weight.detach(), rtol=0, atol=0)
    metrics = res["result"].train_metrics_clientapp
    assert metrics[1]["own-head"] == 0.0  # first participation: the global head
    assert metrics[2]["own-head"] == pytest.approx(1.0)  # then the head each node kept (context.state)

"""fedsim.flower: the Flower-facing strategies equal fedsim's own reductions, and Flower's own
classes, on replies built as Flower builds them (Message/RecordDict, ArrayRecord +
MetricRecord "num-examples"). No Ray: the Grid is a stand-in that lists node ids."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import strategy as flwr_strategy

from fedsim import flower as F
from fedsim.flower.client import LOCAL_STATE_KEY, keep_local_mod
from fedsim.registry import STRATEGIES

NODES = [31, 7, 19, 23]
PARAMS = {"ldawa": {"warmup_rounds": 1}, "krum": {"num_malicious": 0}}


class ListGrid:
    """What Flower's node sampling reads from a Grid: the connected node ids."""

    def get_node_ids(self):
        return list(NODES)


@pytest.fixture(autouse=True)
def inside_a_run(monkeypatch):
    """Flower builds instruction messages only inside a run (as the ServerApp thread is)."""
    from flwr.supercore.task_identity import TaskIdentity

    for name in ("_run_id", "_task_id", "_node_id"):
        monkeypatch.setattr(TaskIdentity, name, 1)


def model(seed: int) -> dict[str, np.ndarray]:
    g = np.random.default_rng(seed)
    return {"backbone.w": g.normal(size=(4, 3)).astype(np.float32),
            "backbone.b": g.normal(size=4).astype(np.float32),
            "head.w": g.normal(size=(2, 4)).astype(np.float32)}


def as_record(arrays: dict[str, np.ndarray]) -> ArrayRecord:
    return ArrayRecord({k: torch.from_numpy(v) for k, v in arrays.items()})


def reply(instruction: Message, arrays: dict[str, np.ndarray], n: int, loss: float) -> Message:
    """A ClientApp's reply as Flower's quickstart builds it."""
    content = RecordDict({"arrays": as_record(arrays),
                          "metrics": MetricRecord({"train_loss": loss, "num-examples": n})})
    return Message(content=content, reply_to=instruction)


def client_models(global_: dict[str, np.ndarray], rnd: int, sent=None) -> list[dict[str, np.ndarray]]:
    """Four clients' trained models near the global (client 3 far off: Krum's choice is clear)."""
    out = []
    for i in range(len(NODES)):
        g = np.random.default_rng(100 * rnd + i)
        scale = 0.5 if i == 3 else 0.05
        m = {k: (v + scale * g.normal(size=v.shape)).astype(np.float32) for k, v in global_.items()}
        out.append({k: v for k, v in m.items() if sent is None or k.startswith(sent)})
    return out


def run_rounds(strategy, rounds: int = 2, sent=None) -> list[tuple[dict, list[Message]]]:
    """Drive ``strategy`` through configure_train/aggregate_train as ``Strategy.start`` does;
    returns each round's (global the clients started from, replies)."""
    arrays = as_record(model(0))
    seen = []
    for rnd in range(1, rounds + 1):
        messages = list(strategy.configure_train(rnd, arrays, ConfigRecord(), ListGrid()))
        start = {k: v.numpy() for k, v in arrays.items()}
        trained = client_models(start, rnd, sent)
        by_node = sorted(messages, key=lambda m: m.metadata.dst_node_id)
        replies = [reply(m, t, n=10 * (i + 1), loss=0.3 * (i + 1)) for i, (m, t) in enumerate(zip(by_node, trained))]
        replies.reverse()  # arrival order must not matter
        arrays, _ = strategy.aggregate_train(rnd, replies)
        seen.append((start, replies, arrays))
    return seen


def fedsim_rounds(name: str, seen) -> list[dict[str, torch.Tensor]]:
    """fedsim's own reduction on the same replies, clients in node order."""
    rule = STRATEGIES.get(name)
    strategy = rule(rule.Params(**PARAMS.get(name, {})))
    out = []
    for aggregation, (start, replies, _) in enumerate(seen, start=1):
        acc = strategy.new_accumulator({k: torch.from_numpy(v) for k, v in start.items()}, aggregation)
        for cid, msg in enumerate(sorted(replies, key=lambda m: m.metadata.src_node_id)):
            m = msg.content["metrics"]
            acc.accumulate(F.strategy.base.ClientUpdate(cid, msg.content["arrays"].to_torch_state_dict(),
                                                        int(m["num-examples"]), {"loss": m["train_loss"]}))
        out.append(acc.finalize())
    return out


@pytest.mark.parametrize("name", STRATEGIES.names())
def test_every_registered_strategy_equals_fedsims_reduction_over_two_rounds(name):
    strategy = F.strategy_class(name)(**PARAMS.get(name, {}))
    sent = "backbone." if name == "fedvssl" else None
    seen = run_rounds(strategy, sent=sent)
    expected = fedsim_rounds(name, seen)
    for (_, _, got), want in zip(seen, expected, strict=True):
        assert list(got) == list(want)
        for key, value in got.to_torch_state_dict().items():
            torch.testing.assert_close(value, want[key], rtol=0, atol=0)


def test_fedvssl_keeps_the_head_and_swa_mixes_the_previous_global():
    seen = run_rounds(F.FedVSSL(), sent="backbone.")
    (start1, _, out1), (start2, replies2, out2) = seen
    np.testing.assert_array_equal(out2["head.w"].numpy(), start1["head.w"])  # never sent: kept
    # round 2 = 0.5 * (0.9 loss-weighted + 0.1 sample-weighted mean) + 0.5 * previous global
    rows = sorted(replies2, key=lambda m: m.metadata.src_node_id)
    w = np.stack([m.content["arrays"]["backbone.b"].numpy() for m in rows]).astype(np.float64)
    p = np.exp(-np.array([0.3, 0.6, 0.9, 1.2]))
    n = np.array([10.0, 20.0, 30.0, 40.0])
    mix = 0.9 * (p @ w) / p.sum() + 0.1 * (n @ w) / n.sum()
    np.testing.assert_allclose(out2["backbone.b"].numpy(), 0.5 * mix + 0.5 * start2["backbone.b"], rtol=1e-6)


def test_fedvssl_tells_clients_which_tensors_to_send():
    messages = list(F.FedVSSL().configure_train(1, as_record(model(0)), ConfigRecord(), ListGrid()))
    assert messages[0].content["config"]["fedsim.send-prefix"] == ["backbone."]
    assert "fedsim.send-prefix" not in list(F.LDAWA().configure_train(
        1, as_record(model(0)), ConfigRecord(), ListGrid()))[0].content["config"]


def test_fedprox_sends_flowers_proximal_mu_key():
    messages = list(F.FedProx(mu=0.1).configure_train(1, as_record(model(0)), ConfigRecord(), ListGrid()))
    assert messages[0].content["config"]["proximal-mu"] == 0.1


def test_under_dp_the_wrapped_rules_client_hooks_still_reach_the_clients():
    vssl = list(F.FedVSSL(dp_clip=1.0).configure_train(1, as_record(model(0)), ConfigRecord(), ListGrid()))
    prox = list(F.FedProx(mu=0.2, dp_clip=1.0).configure_train(1, as_record(model(0)), ConfigRecord(), ListGrid()))
    assert vssl[0].content["config"]["fedsim.send-prefix"] == ["backbone."]
    assert prox[0].content["config"]["proximal-mu"] == 0.2


FLOWER_TWINS = [
    ("fedavg", {}, flwr_strategy.FedAvg, {}, 1e-6),
    ("fedavgm", {"server_momentum": 0.9}, flwr_strategy.FedAvgM, {"server_momentum": 0.9}, 1e-6),
    ("fedadam", {}, flwr_strategy.FedAdam, {"eta": 0.1, "beta_1": 0.9, "beta_2": 0.99, "tau": 1e-3}, 1e-5),
    ("median", {}, flwr_strategy.FedMedian, {}, 0.0),
    ("trimmed-mean", {"beta": 0.34}, flwr_strategy.FedTrimmedAvg, {"beta": 0.34}, 1e-6),
    ("krum", {}, flwr_strategy.Krum, {"num_malicious_nodes": 0}, 0.0),
]


@pytest.mark.parametrize(("name", "ours", "flower", "theirs", "tol"), FLOWER_TWINS, ids=[t[0] for t in FLOWER_TWINS])
def test_fedsim_classes_equal_flowers_own_on_the_same_replies(name, ours, flower, theirs, tol):
    mine = run_rounds(F.strategy_class(name)(**ours), rounds=3)
    twin = flower(**theirs)
    for rnd, (start, replies, got) in enumerate(mine, start=1):
        list(twin.configure_train(rnd, as_record(start), ConfigRecord(), ListGrid()))
        want, _ = twin.aggregate_train(rnd, replies)
        for key in start:
            np.testing.assert_allclose(got[key].numpy(), want[key].numpy(), rtol=tol, atol=tol)


def test_start_returns_flowers_result_shape_with_metrics_and_round_info():
    seen = run_rounds(F.LDAWA(warmup_rounds=1), rounds=2)
    strategy = F.LDAWA(warmup_rounds=1)
    list(strategy.configure_train(1, as_record(seen[0][0]), ConfigRecord(), ListGrid()))
    _, metrics = strategy.aggregate_train(1, seen[0][1])
    assert metrics["ldawa_warmup"] == 1.0
    # sample-weighted like Flower: (10*.3 + 20*.6 + 30*.9 + 40*1.2) / 100
    assert metrics["train_loss"] == pytest.approx(0.9)


def test_a_malformed_reply_is_left_out_and_the_rest_aggregated():
    strategy = F.FedAvg()
    arrays = as_record(model(0))
    messages = sorted(strategy.configure_train(1, arrays, ConfigRecord(), ListGrid()),
                      key=lambda m: m.metadata.dst_node_id)
    good, bad = model(1), {k: np.full_like(v, np.nan) for k, v in model(2).items()}
    out, _ = strategy.aggregate_train(1, [reply(messages[0], good, 5, 0.1), reply(messages[1], bad, 5, 0.1)])
    np.testing.assert_allclose(out["backbone.w"].numpy(), good["backbone.w"], rtol=1e-6)
    assert strategy.aggregations == 1


def test_keep_local_mod_keeps_the_head_on_the_node_and_sends_the_backbone():
    context = Context(run_id=1, node_id=7, node_config={}, state=RecordDict(), run_config={})
    own_head = np.full((2, 4), 5.0, dtype=np.float32)

    def client(msg, ctx):  # a quickstart ClientApp: load all, train, reply with all
        received = {k: v.numpy() for k, v in msg.content["arrays"].items()}
        client.heads.append(received["head.w"].copy())
        trained = {**received, "head.w": own_head}
        return reply(msg, trained, 3, 0.5)

    client.heads = []
    config = ConfigRecord({"fedsim.send-prefix": ["backbone."]})
    for _ in range(2):
        msg = Message(RecordDict({"arrays": as_record(model(0)), "config": config}), dst_node_id=7,
                      message_type=MessageType.TRAIN)
        out = keep_local_mod(msg, context, client)
        assert list(out.content["arrays"]) == ["backbone.w", "backbone.b"]
    np.testing.assert_array_equal(client.heads[0], model(0)["head.w"])  # first time: the global's
    np.testing.assert_array_equal(client.heads[1], own_head)  # then its own
    assert list(context.state[LOCAL_STATE_KEY]) == ["head.w"]

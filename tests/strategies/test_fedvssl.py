"""FedVSSL against hand-computed values and a slow reference written from the official code."""

import math

import numpy as np
import pydantic
import pytest
import torch

from fedsim.strategies.fedvssl import FedVSSL, FedVSSLParams
from fedsim.factory import strategy_for
from tests.conftest import make_update
from tests.strategies.tiny import random_global, random_updates, run_round


def reference_fedvssl(clients: list[tuple[dict[str, np.ndarray], float, int]], previous: dict[str, np.ndarray],
                      rnd: int, alpha: float = 0.9) -> dict[str, np.ndarray]:
    """``SaveModelStrategy.aggregate_fit`` of yasar-rehman/FEDVSSL
    ``reproduce_papers/fedssl/main_cam_st_theta_b_mixed_+SWA_wo_mement.py``, in float64:
    the client reports exp(-avg_loss), two weighted averages are mixed with alpha, and from
    ``rnd > 1`` the result is averaged 0.5/0.5 with the previous global."""
    def aggregate(results):
        total = sum(num for _, num in results)
        return {k: sum(w[k].astype(np.float64) * num for w, num in results) / total for k in previous}

    weights_loss = aggregate([(w, math.exp(-loss)) for w, loss, _ in clients])
    weights_fedavg = aggregate([(w, n) for w, _, n in clients])
    weights = {k: alpha * weights_loss[k] + (1 - alpha) * weights_fedavg[k] for k in previous}
    if rnd > 1:
        weights = {k: 0.5 * weights[k] + 0.5 * previous[k] for k in previous}
    return weights


def _clients():
    # p_1 = exp(0) = 1, p_2 = exp(-ln 2) = 0.5; n = 1, 3
    return [make_update(0, n=1, loss=0.0, backbone__w=[1.0]), make_update(1, n=3, loss=math.log(2), backbone__w=[4.0])]


PREVIOUS = {"backbone.w": torch.tensor([0.5]), "head.w": torch.tensor([7.0])}


@pytest.mark.parametrize(("server_round", "params", "expected"), [
    # loss-weighted (1*1 + 0.5*4)/1.5 = 2; FedAvg (1*1 + 3*4)/4 = 3.25; 0.9*2 + 0.1*3.25 = 2.125
    (1, {}, 2.125),  # case: round 1, no SWA yet
    (2, {}, 0.5 * 2.125 + 0.5 * 0.5),  # case: SWA with the previous global (1.3125)
    (2, {"swa": False}, 2.125),  # case: SWA off
    (2, {"swa_weight": 0.25}, 0.75 * 2.125 + 0.25 * 0.5),  # case: β = 0.25
    (1, {"alpha": 0.0}, 3.25),  # case: α = 0 is FedAvg
    (1, {"alpha": 1.0}, 2.0),  # case: α = 1 is the loss-weighted mean only
])
def test_mixing_and_swa_by_hand(server_round, params, expected):
    strategy = FedVSSL(FedVSSLParams(**params))

    out = run_round(strategy, PREVIOUS, _clients(), server_round)

    torch.testing.assert_close(out["backbone.w"], torch.tensor([expected]))
    torch.testing.assert_close(out["head.w"], torch.tensor([7.0]))  # not sent: previous head kept


@pytest.mark.parametrize(("server_round", "aggregation", "expected"), [
    (2, 1, 2.125),  # case: round 1 was skipped, round 2 is the first aggregation: no SWA yet
    (3, 2, 0.5 * 2.125 + 0.5 * 0.5),  # case: the second aggregation averages with the previous global
])
def test_swa_counts_aggregations_not_rounds(server_round, aggregation, expected):
    out = run_round(FedVSSL(), PREVIOUS, _clients(), server_round, aggregation=aggregation)

    torch.testing.assert_close(out["backbone.w"], torch.tensor([expected]))


def test_clients_load_and_send_the_backbone_only():
    keys = ["backbone.conv.weight", "backbone.bn.running_mean", "head.0.weight", "head.0.bias"]
    hooks = FedVSSL().client_hooks()

    assert hooks.load_keys(keys) == ["backbone.conv.weight", "backbone.bn.running_mean"]
    assert hooks.sent_keys(keys) == ["backbone.conv.weight", "backbone.bn.running_mean"]
    assert hooks.kept_keys(keys) == ["head.0.weight", "head.0.bias"] and hooks.keeps_local
    assert hooks.sent_prefixes(keys) == ["backbone."]
    head = FedVSSL(FedVSSLParams(backbone_prefix="head.")).client_hooks()
    assert head.sent_keys(keys) == ["head.0.weight", "head.0.bias"]


def test_no_backbone_tensor_is_a_clear_error():
    with pytest.raises(ValueError, match="backbone_prefix"):
        FedVSSL().client_hooks().sent_keys(["encoder.w", "head.w"])


@pytest.mark.parametrize(("seed", "server_round"), [(0, 1), (1, 2), (2, 7)])
def test_matches_slow_reference_on_random_models(seed, server_round):
    strategy = FedVSSL()
    previous = random_global(seed)
    sent = strategy.client_hooks().sent_keys(list(previous))
    updates = random_updates(previous, num_clients=5, seed=seed, keys=sent)

    out = run_round(strategy, previous, updates, server_round)

    expected = reference_fedvssl([({k: v.numpy() for k, v in u.arrays.items()}, u.metrics["loss"], u.num_examples)
                                  for u in updates], {k: previous[k].numpy() for k in sent}, server_round)
    for name in sent:
        ref = torch.as_tensor(expected[name])
        if not previous[name].is_floating_point():
            ref = ref.round()
        torch.testing.assert_close(out[name].double(), ref.double(), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(out["head.weight"], previous["head.weight"])


def test_all_weights_underflowing_falls_back_to_fedavg():
    updates = [make_update(0, n=1, loss=800.0, backbone__w=[1.0]), make_update(1, n=3, loss=900.0, backbone__w=[4.0])]

    out = run_round(FedVSSL(FedVSSLParams(swa=False)), PREVIOUS, updates, 1)

    torch.testing.assert_close(out["backbone.w"], torch.tensor([3.25]))


def test_missing_loss_is_a_clear_error():
    update = make_update(0, backbone__w=[1.0])
    update.metrics = {}
    acc = FedVSSL().new_accumulator(PREVIOUS, 1)

    with pytest.raises(ValueError, match="mean training loss"):
        acc.accumulate(update)


@pytest.mark.parametrize("params", [{"alpha": 1.5}, {"swa_weight": 1.0}, {"backbone_prefix": ""}, {"beta": 1}])
def test_params_are_validated(params):
    with pytest.raises(pydantic.ValidationError):
        FedVSSLParams(**params)


def test_the_partial_update_defaults_to_the_tasks_encoder_prefixes(monkeypatch):
    # Prepare: a task whose encoder lives under two prefixes
    from fedsim.config import load_config
    from fedsim.tasks.image import ImageTask

    monkeypatch.setattr(ImageTask, "encoder_prefixes", ("video_tower.", "audio_tower."))
    keys = ["video_tower.w", "audio_tower.w", "head.w"]
    # Execute
    default = strategy_for(load_config(None, {"strategy.name": "fedvssl"}))
    explicit = strategy_for(load_config(None, {"strategy.name": "fedvssl",
                                  "strategy.params": {"backbone_prefix": "head."}}))
    # Assert
    assert default.client_hooks().load_keys(keys) == ["video_tower.w", "audio_tower.w"]
    assert explicit.client_hooks().load_keys(keys) == ["head.w"]

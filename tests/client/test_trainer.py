"""Local training: the plain-SGD fast path is bit-identical to ``torch.optim.SGD``; the
round context and the strategy's client hooks are all the trainer is told."""

import pytest
import torch

from fedsim import records as R
from fedsim.client import trainer
from fedsim.config import load_config
from fedsim.optim import grad_mults
from fedsim.factory import task_for
from fedsim.optim import plain as plain_sgd
from fedsim.records import RoundContext
from fedsim.strategies.fedavg import FedAvg


def round_ctx(**values) -> RoundContext:
    """Round 2 of seed 0 with the given local-training values."""
    return RoundContext(**{"server_round": 2, "aggregation": 2, "client_ids": (3,), "reply": R.REPLY_WEIGHTS,
                           "lr": 0.05, "local_epochs": 2, "batch_size": 32, "seed": 0, **values})


def _setup(model_name):
    exp = load_config(None, {"task.name": "synthetic", "model.name": model_name,
                             "task.params": {"samples": 64}, "federation.batch_size": 32})
    task = task_for(exp)
    start = {k: v.clone() for k, v in task.build_model().state_dict().items()}
    return task, start


def _train(task, start, hooks=None, **kw):
    model = task.build_model()
    hooks = FedAvg().client_hooks() if hooks is None else hooks
    update = trainer.train_client(task, model, start, round_ctx(**kw), hooks, client_id=3)
    return model, {k: v.clone() for k, v in update.arrays.items()}, update.metrics["loss"]


@pytest.mark.parametrize("model_name", [
    "mlp",  # case: the benchmark MLP
    # case: BatchNorm buffers (running stats, num_batches_tracked) are returned too (CPU-bound: slow set)
    pytest.param("resnet_small", marks=pytest.mark.slow),
])
def test_plain_sgd_equals_torch_sgd_bit_for_bit(model_name, monkeypatch):
    task, start = _setup(model_name)

    model, fast, fast_loss = _train(task, start)
    monkeypatch.setattr(plain_sgd, "PlainSGD", lambda m, lr: torch.optim.SGD(m.parameters(), lr=lr))
    _, ref, ref_loss = _train(task, start)

    assert fast.keys() == ref.keys() == model.state_dict().keys()
    assert all(torch.equal(fast[k], ref[k]) for k in ref)
    assert all(torch.equal(fast[k], v) for k, v in model.state_dict().items())  # the final state
    assert any(not torch.equal(fast[k], start[k]) for k in start)
    assert fast_loss == ref_loss


def test_momentum_and_weight_decay_use_torch_sgd():
    task, start = _setup("mlp")

    _, plain, _ = _train(task, start)
    _, decayed, _ = _train(task, start, momentum=0.9, weight_decay=1e-2)

    assert any(not torch.equal(plain[k], decayed[k]) for k in plain)


def test_repopt_sgd_step_is_sgd_with_gradient_masks():
    # Prepare: one batch, one step, so the step is lr * mask * grad at the start weights
    exp = load_config(None, {"task.name": "synthetic", "model.name": "repopt_vgg",
                             "task.params": {"samples": 8}, "federation.batch_size": 8})
    task = task_for(exp)
    model = task.build_model()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    ref = task.build_model()
    ref.load_state_dict(start)
    data = task.client_dataset(3)
    gen = trainer.torch_generator(0, 2, 3)
    batch = next(data.batches(gen, 8))  # the trainer's batch-order draw; one batch of all 8
    ref.train()
    task.loss(ref, batch, gen).backward()
    masks = grad_mults(ref)  # parameter -> multiplier, from the model's scale buffers
    assert len(masks) == 6 and all(not torch.all(mask == 1) for mask in masks.values())

    # Execute
    update = trainer.train_client(task, model, start, round_ctx(local_epochs=1, batch_size=8, lr=0.1,
                                                                optimizer="repopt-sgd"),
                                  FedAvg().client_hooks(), client_id=3)

    # Assert: masked kernels moved by lr * M * g, every other parameter by lr * g
    for name, p in ref.named_parameters():
        mask = masks.get(p, 1.0)
        expected = start[name] - 0.1 * mask * p.grad
        torch.testing.assert_close(update.arrays[name], expected, rtol=1e-5, atol=1e-6)


def test_the_task_hears_of_each_client_start_after_the_global_weights_are_loaded(monkeypatch):
    # Prepare: record the model's weights when the hook runs and count the loss calls before it
    task, start = _setup("mlp")
    seen, calls = [], []
    loss = task.loss
    monkeypatch.setattr(task, "start_local_training",
                        lambda m: seen.append(({k: v.clone() for k, v in m.state_dict().items()}, len(calls))))
    monkeypatch.setattr(task, "loss", lambda *a: calls.append(1) or loss(*a))
    # Execute
    _train(task, start)
    # Assert: called once, before any step, with the global weights in the model
    assert len(seen) == 1 and seen[0][1] == 0 and calls
    assert all(torch.equal(seen[0][0][k], start[k]) for k in start)


def test_a_model_with_dropout_trains_the_same_whatever_the_worker_drew_before():
    # Arrange: the synthetic task's MLP behind a dropout layer (drawn from torch's global
    # generator, as the clip-order head's dropout is), and its global weights
    from torch import nn

    from fedsim.factory import task_for
    from fedsim.records import RoundContext
    from fedsim.strategies.fedavg import FedAvg

    task = task_for(load_config(None, {"task.name": "synthetic", "model.name": "mlp",
                                       "federation.clients": 10}))
    model = nn.Sequential(nn.Dropout(0.5), task.build_model())
    start = {k: v.clone() for k, v in model.state_dict().items()}
    ctx = RoundContext(server_round=1, aggregation=1, client_ids=(4,), reply="weights", lr=0.1,
                       local_epochs=1, batch_size=8, seed=0)
    hooks = FedAvg(FedAvg.Params()).client_hooks()

    def train(draws_before: int):
        torch.rand(draws_before)  # what earlier clients of this worker drew from the global RNG
        update = trainer.train_client(task, model, start, ctx, hooks, client_id=4)
        return {k: v.clone() for k, v in update.arrays.items()}

    # Act
    first, second = train(1), train(1000)

    # Assert: identical weights, and dropout was active (different from a dropout-free step)
    assert all(torch.equal(first[k], second[k]) for k in first)
    model[0].p = 0.0
    plain = train(1)
    assert any(not torch.equal(first[k], plain[k]) for k in first)

"""The synthetic benchmark task: per-client determinism and exactly one SGD step per client."""

import pytest
import torch
import torch.nn.functional as F

from fedsim.client.trainer import train_client
from fedsim.config import load_config
from fedsim.factory import task_for
from fedsim.records import RoundContext
from fedsim.strategies.fedavg import FedAvg

BENCH = {"task.name": "synthetic", "model.name": "mlp", "federation.clients": 100_000,
         "federation.local_epochs": 1, "federation.batch_size": 32, "federation.lr": 0.05}


def _task(**overrides):
    return task_for(load_config(None, {**BENCH, **overrides}))


def _round(batch_size: int) -> RoundContext:
    return RoundContext(server_round=1, aggregation=1, client_ids=(5,), reply="weights", lr=0.05, local_epochs=1,
                        batch_size=batch_size, seed=0)


def test_model_has_the_anchor_parameter_count():
    model = _task().build_model()

    # 784·100 + 100 (backbone) + 100·10 + 10 (head), as the anchors' 784-100-10 MLP
    assert sum(p.numel() for p in model.parameters()) == 79_510
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


def test_client_data_is_a_pure_function_of_seed_and_client_id():
    a, b = _task(), _task()

    first, again, other = a.client_dataset(99_999), b.client_dataset(99_999), a.client_dataset(7)
    reseeded = _task(seed=1).client_dataset(99_999)

    assert first["image"].shape == (32, 1, 28, 28) and first["label"].shape == (32,)
    assert torch.equal(first["image"], again["image"]) and torch.equal(first["label"], again["label"])
    assert not torch.equal(first["image"], other["image"])
    assert not torch.equal(first["image"], reseeded["image"])
    assert int(first["label"].min()) >= 0 and int(first["label"].max()) <= 9


def test_eval_data_is_fixed_and_labelled():
    data = _task().eval_data()

    assert data.bank_x.shape == (200, 1, 28, 28) and data.query_y.shape == (200,)
    assert torch.equal(data.bank_x, _task().eval_data().bank_x)


@pytest.mark.parametrize("samples, batch, expected_steps", [
    (32, 32, 1),  # case: the benchmark workload, one step
    (64, 32, 2),  # case: two batches
])
def test_one_local_epoch_takes_one_step_per_batch(samples, batch, expected_steps):
    task = _task(**{"task.params": {"samples": samples}, "federation.batch_size": batch})
    calls = []
    loss = task.loss
    task.loss = lambda *args: calls.append(1) or loss(*args)
    model = task.build_model()
    start = {k: v.clone() for k, v in model.state_dict().items()}

    update = train_client(task, model, start, _round(batch), FedAvg().client_hooks(), client_id=5)

    assert len(calls) == expected_steps and update.num_examples == samples


def test_the_step_is_plain_sgd_on_the_clients_batch():
    task = _task()
    model = task.build_model()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    data = task.client_dataset(5)
    # hand-computed reference: w - lr * grad of the mean cross-entropy on the whole batch
    ref = task.build_model()
    F.cross_entropy(ref(data["image"]), data["label"]).backward()
    expected = {name: p.detach() - 0.05 * p.grad for name, p in ref.named_parameters()}

    update = train_client(task, model, start, _round(32), FedAvg().client_hooks(), client_id=5)

    for name, value in expected.items():
        torch.testing.assert_close(update.arrays[name], value, rtol=1e-5, atol=1e-6)

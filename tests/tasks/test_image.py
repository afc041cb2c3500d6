"""The image task: parameters, per-client data and its three objectives."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import fedsim.models  # noqa: F401  (registers the backbones)
from fedsim.config import PartitionConfig
from fedsim.data.augmentations import augment
from fedsim.data.digits import split_indices
from fedsim.losses import BYOLLoss, NTXentLoss
from fedsim.tasks.base import TaskContext
from fedsim.tasks.image import ImageParams, ImageTask

pytestmark = pytest.mark.timeout(60)

SMALL = {"image_size": 12, "min_samples": 16, "max_samples": 24}


def _task(*, seed: int = 0, num_clients: int = 20, data_dir: str | None = None,
          partitioning: PartitionConfig | None = None, **params) -> ImageTask:
    context = TaskContext(num_clients=num_clients, seed=seed,
                          partitioning=partitioning or PartitionConfig(kind="dirichlet", alpha=0.5),
                          backbone="resnet_small", data_dir=data_dir)
    return ImageTask(context, ImageParams(**{**SMALL, **params}))


def _images(n: int = 6, size: int = 12, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- parameters

def test_min_samples_above_max_samples_is_a_value_error():
    # Execute / Assert
    with pytest.raises(ValueError, match=r"min_samples \(65\) is more than max_samples \(64\)"):
        ImageParams(min_samples=65, max_samples=64)


@pytest.mark.parametrize("params", [
    {"image_size": 8},  # case: below the 12 px minimum
    {"temperature": 0.0},  # case: τ must be positive
    {"objective": "dino"},  # case: not an implemented objective
    {"colour": True},  # case: unknown keys are errors
])
def test_invalid_params_are_rejected(params):
    # Execute / Assert
    with pytest.raises(ValueError):
        ImageParams(**params)



# ---------------------------------------------------------------- client data

def test_client_data_is_a_pure_function_of_seed_and_client_id():
    # Prepare
    a, b = _task(), _task()
    # Execute
    first, again, other = a.client_dataset(7), b.client_dataset(7), a.client_dataset(8)
    reseeded = _task(seed=1).client_dataset(7)
    # Assert
    x = first["image"]
    assert x.shape == (len(first), 1, 12, 12) and set(first.tensors) == {"image"}  # simclr: no labels
    assert torch.equal(x, again["image"])
    assert x.shape != other["image"].shape or not torch.equal(x, other["image"])
    assert x.shape != reseeded["image"].shape or not torch.equal(x, reseeded["image"])


def test_every_sampled_client_of_a_thousand_has_min_to_max_samples():
    # Prepare
    task = _task(num_clients=1000, min_samples=32, max_samples=40)
    # Execute
    sizes = [len(task.client_dataset(c)) for c in (0, 1, 50, 499, 998, 999)]
    # Assert: never fewer than a batch of 32, even on shards of ~24 base images
    assert all(32 <= n <= 40 for n in sizes), sizes


def test_client_outside_the_population_is_an_error():
    # Execute / Assert
    with pytest.raises(ValueError, match="outside 0..3"):
        _task(num_clients=4).client_dataset(4)


def test_supervised_client_data_carries_labels():
    # Execute
    data = _task(objective="supervised").client_dataset(3)
    y = data["label"]
    # Assert
    assert y.shape == (len(data),) and y.dtype == torch.int64
    assert 0 <= int(y.min()) and int(y.max()) <= 9


def test_eval_data_is_the_held_out_split_and_is_built_once():
    # Prepare
    task = _task()
    _, bank, query = split_indices(0)
    # Execute
    data = task.eval_data()
    # Assert
    assert data is task.eval_data()
    assert data.bank_x.shape == (len(bank), 1, 12, 12) and data.query_y.shape == (len(query),)
    assert set(data.bank_y.tolist()) == set(range(10))
    assert torch.equal(data.query_x, _task().eval_data().query_x)


# ---------------------------------------------------------------- model and losses

@pytest.mark.parametrize("objective, out_dim", [("simclr", 16), ("byol", 16), ("supervised", 10)])
def test_model_head_and_init_depend_on_objective_and_seed_only(objective, out_dim):
    # Prepare
    before = torch.get_rng_state()
    # Execute
    model = _task(objective=objective, projection_dim=16).build_model()
    again = _task(objective=objective, projection_dim=16).build_model()
    # Assert
    assert torch.equal(torch.get_rng_state(), before)
    for (name, p), q in zip(model.state_dict().items(), again.state_dict().values()):
        assert torch.equal(p, q), name
    assert model(_images(3)).shape == (3, out_dim)


def test_simclr_loss_is_ntxent_of_two_augmented_views():
    # Prepare
    task = _task(temperature=0.3, projection_dim=16)
    model = task.build_model().eval()
    x = task.client_dataset(0)["image"][:8]
    gen = torch.Generator().manual_seed(5)
    # Execute
    loss = task.loss(model, {"image": x}, torch.Generator().manual_seed(5))
    # Assert: two views drawn one after the other from the same generator
    v1, v2 = augment(x, gen), augment(x, gen)
    with torch.no_grad():
        expected = NTXentLoss(0.3)(model(v1), model(v2))
    assert loss.dim() == 0 and loss.requires_grad
    torch.testing.assert_close(loss.detach(), expected)


def test_byol_loss_regresses_the_received_models_projection_of_the_other_view():
    # Prepare: the trainer's hook rebuilds the target from the weights just loaded
    task = _task(objective="byol", projection_dim=16)
    model = task.build_model()
    x = task.client_dataset(0)["image"][:8]
    gen = torch.Generator().manual_seed(5)
    task.start_local_training(model)
    # Execute
    loss = task.loss(model, {"image": x}, torch.Generator().manual_seed(5))
    loss.backward()
    # Assert: at the first step the target is the online encoder + projector (no predictor)
    v = torch.cat([augment(x, gen), augment(x, gen)])
    p = model.predictor(model(v))
    with torch.no_grad():
        z = model(v)
    expected = BYOLLoss()(p[:8], p[8:], z[:8], z[8:])
    torch.testing.assert_close(loss.detach(), expected.detach())
    assert set(task.encoder_state(model.state_dict())) == {k for k in model.state_dict() if k.startswith("backbone.")}
    assert model.predictor[0].weight.grad is not None and model.backbone.parameters().__next__().grad is not None


def test_byol_predictor_lr_multiplies_the_predictors_gradients_only():
    # Prepare: the same model and batch at byol_predictor_lr 1 and 10
    grads = {}
    for scale in (1.0, 10.0):
        task = _task(objective="byol", projection_dim=16, byol_predictor_lr=scale)
        model = task.build_model()
        task.start_local_training(model)
        # Execute
        task.loss(model, {"image": task.client_dataset(0)["image"][:8]}, torch.Generator().manual_seed(5)).backward()
        grads[scale] = {name: p.grad.clone() for name, p in model.named_parameters()}
    # Assert: under SGD a gradient × 10 is the learning rate × 10
    for name, g in grads[1.0].items():
        factor = 10.0 if name.startswith("predictor.") else 1.0
        torch.testing.assert_close(grads[10.0][name], g * factor, msg=name)


def test_simclr_loss_backpropagates_into_the_backbone():
    # Prepare
    task = _task()
    model = task.build_model()
    x = task.client_dataset(0)["image"][:8]
    # Execute
    task.loss(model, {"image": x}, torch.Generator().manual_seed(0)).backward()
    # Assert
    grads = [p.grad for p in model.backbone.parameters() if p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)


def test_supervised_loss_is_label_smoothed_cross_entropy_of_one_view():
    # Prepare
    task = _task(objective="supervised", label_smoothing=0.2)
    model = task.build_model().eval()
    data = task.client_dataset(1).tensors
    # Execute
    loss = task.loss(model, data, torch.Generator().manual_seed(2))
    # Assert
    view = augment(data["image"], torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = F.cross_entropy(model(view), data["label"], label_smoothing=0.2)
    torch.testing.assert_close(loss.detach(), expected)


def test_supervised_loss_needs_labels():
    # Prepare
    task = _task(objective="supervised")
    model = task.build_model()
    # Execute / Assert
    with pytest.raises(ValueError, match="needs labels"):
        task.loss(model, {"image": _images(4)}, torch.Generator().manual_seed(0))


def test_features_are_the_backbone_output():
    # Prepare
    task = _task()
    model = task.build_model().eval()
    x = _images(3)
    # Execute
    with torch.no_grad():
        feats = task.features(model, x)
    # Assert
    assert feats.shape == (3, model.backbone.out_dim)
    with torch.no_grad():
        torch.testing.assert_close(feats, model.backbone(x))

"""Registry-wide contract tests (after timm's tests over ``list_models()``).

Every registered task and every registered model goes through the task contract of
docs/concepts/task-contract.md: build, one client's batches, a loss that back-propagates, ``evaluate`` returning
exactly the declared metrics, baselines named after a metric, and determinism in
(seed, client id). A new task or backbone is tested by being registered.
"""

from __future__ import annotations

import math

import pytest
import torch

from fedsim.config import load_config
from fedsim.models import build_backbone
from fedsim.plugins import load_plugins
from fedsim.registry import MODELS, TASKS, ModelInfo
from fedsim.tasks.base import ClientDataset, Task
from fedsim.factory import task_for

load_plugins()
pytestmark = pytest.mark.timeout(120)

# Small settings per task so the whole module stays in seconds.
SMALL_PARAMS = {"image": {"image_size": 12, "min_samples": 8, "max_samples": 12},
                "synthetic": {"samples": 8, "image_size": 8, "eval_samples": 20},
                # every client holds both modalities, so every client's batch has the same keys
                "audio_image": {"image_size": 12, "min_samples": 6, "max_samples": 8, "clip_seconds": 0.3,
                                "eval_per_class": 3, "modality_mix": {"both": 1.0}}}
# the video task with all three pretexts on short, small clips
SMALL_PARAMS["video"] = {"pretext": ["order", "speed", "colorize"], "frames": 8, "frame_size": 16,
                         "order_frames": 2, "order_gap": 1, "speed_frames": 3, "colorize_frames": 4,
                         "eval_frames": 4, "min_clips": 4, "max_clips": 6, "eval_samples": 20}
SMALL_MODEL = {"image": "resnet_small", "synthetic": "mlp", "video": "r3d_small", "cardio": "cardionet_lite"}
IMAGE_MODELS = [n for n in MODELS.names() if MODELS.info(n).input == "image"]
VIDEO_MODELS = [n for n in MODELS.names() if MODELS.info(n).input == "video"]


def _task(name: str, seed: int = 0, model: str | None = None) -> Task:
    params = dict(SMALL_PARAMS.get(name, {}))
    if model is not None and "image_size" in params:  # the model's smallest input, if larger
        params["image_size"] = max(params["image_size"], MODELS.info(model).min_size)
    exp = load_config(None, {"task.name": name, "task.params": params,
                             "model.name": model or SMALL_MODEL.get(name, "resnet_small"),
                             "federation.clients": 50, "seed": seed,
                             "evaluation.knn_k": 3})
    return task_for(exp)


@pytest.mark.parametrize("name", TASKS.names())
def test_task_builds_a_model_and_client_batches_that_train(name):
    # Prepare
    task = _task(name)
    model = task.build_model()
    data = task.client_dataset(7)
    gen = torch.Generator().manual_seed(0)
    # Execute
    batch = next(iter(data.batches(gen, 4)))
    loss = task.loss(model, batch, gen)
    loss.backward()
    # Assert
    assert isinstance(data, ClientDataset) and len(data) >= 2
    assert all(isinstance(v, torch.Tensor) and len(v) == len(next(iter(batch.values()))) for v in batch.values())
    assert loss.dim() == 0 and math.isfinite(float(loss.detach()))
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)
    encoder = task.encoder_state(model.state_dict())  # the prefixes name real encoder tensors
    assert encoder and set(encoder) <= set(model.state_dict())


@pytest.mark.parametrize("name", [  # audio and video evaluate for tens of seconds: in the slow set
    pytest.param(n, marks=pytest.mark.slow) if n in ("audio", "video") else n for n in TASKS.names()])
def test_task_evaluates_exactly_its_declared_metrics(name):
    # Prepare
    task = _task(name)
    declared = [m.name for m in task.metrics()]
    # Execute
    metrics = task.evaluate(task.build_model())
    baselines = task.baselines()
    # Assert
    assert declared and len(set(declared)) == len(declared) and task.primary_metric.name == declared[0]
    assert sorted(metrics) == sorted(declared)
    assert all(isinstance(v, float) and math.isfinite(v) for v in metrics.values())
    for key in baselines:  # <metric>_<what>, so a report can put it beside its metric
        assert any(key.startswith(f"{m}_") for m in declared), key


@pytest.mark.parametrize("name", TASKS.names())
def test_task_data_is_a_pure_function_of_seed_and_client_id(name):
    # Prepare
    first, again, reseeded = _task(name), _task(name), _task(name, seed=1)

    def tensors(task: Task, client: int) -> dict[str, torch.Tensor]:
        return dict(next(iter(task.client_dataset(client).batches(torch.Generator().manual_seed(3), 64))))

    # Execute
    a, b, other, c = tensors(first, 5), tensors(again, 5), tensors(first, 6), tensors(reseeded, 5)
    # Assert
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    key = next(iter(a))
    assert a[key].shape != other[key].shape or not torch.equal(a[key], other[key])
    assert a[key].shape != c[key].shape or not torch.equal(a[key], c[key])
    assert _task(name).describe_data()  # JSON-able record for data.json


def test_every_model_declares_an_input_some_task_trains():
    defaults = {TASKS.get(n).default_model for n in TASKS.names()}
    for name in MODELS.names():
        info = MODELS.info(name)
        assert isinstance(info, ModelInfo) and info.input in ("image", "video", "av"), name
        if info.input == "av":  # task-specific inputs: the task that builds it is its contract test
            assert name in defaults, name


@pytest.mark.parametrize("name", IMAGE_MODELS + VIDEO_MODELS)
def test_model_takes_its_declared_inputs_and_backpropagates(name):
    # Prepare
    info = MODELS.info(name)
    size = max(info.min_size, 16)
    torch.manual_seed(0)
    model = build_backbone(name, in_channels=1, image_size=size)
    x = torch.randn(4, 1, size, size) if info.input == "image" else torch.randn(4, 1, 4, size, size)  # (n, c, t, h, w)
    # Execute
    features = model(x)
    features.square().mean().backward()
    # Assert
    assert features.shape == (4, model.out_dim)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_every_model_trains_inside_the_image_task(name):
    # Prepare: the image task builds any registered image model, at its size and channels
    task = _task("image", model=name)
    model = task.build_model()
    batch = next(iter(task.client_dataset(0).batches(torch.Generator().manual_seed(0), 4)))
    # Execute
    loss = task.loss(model, batch, torch.Generator().manual_seed(1))
    loss.backward()
    # Assert
    assert math.isfinite(float(loss.detach()))
    if MODELS.info(name).repopt:  # RepOpt models carry the scales their gradient masks come from
        assert any(k.endswith("scale_conv") for k in model.state_dict())


@pytest.mark.parametrize("name", VIDEO_MODELS)
def test_every_video_model_trains_inside_the_video_task(name):
    # Prepare
    task = _task("video", model=name)
    model = task.build_model()
    batch = next(iter(task.client_dataset(0).batches(torch.Generator().manual_seed(0), 4)))
    # Execute
    loss = task.loss(model, batch, torch.Generator().manual_seed(1))
    loss.backward()
    # Assert
    assert math.isfinite(float(loss.detach()))
    assert all(p.grad is not None for p in model.backbone.parameters())

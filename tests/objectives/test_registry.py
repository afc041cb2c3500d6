"""Objectives as registered parts: lookup by name and views, what each task offers, a new one."""

from __future__ import annotations

import typing
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import fedsim.objectives as objectives
import fedsim.tasks  # noqa: F401  (registers the built-in tasks)
from fedsim.objectives import build_objective, objective_class, objective_names, register_objective
from fedsim.objectives.base import VIEWS, TwoViewObjective
from fedsim.objectives.heads import BackboneHead
from fedsim.registry import TASKS
from fedsim.tasks.base import TaskContext

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def registry(monkeypatch):
    """The objective registry, restored after the test."""
    monkeypatch.setattr(objectives, "_REGISTERED", list(objectives._REGISTERED))
    return objectives._REGISTERED


def _choices(task: str) -> tuple[str, ...]:
    """The names a task's parameters accept (``objective``, or the video task's ``pretext`` list)."""
    fields = TASKS.get(task).Params.model_fields
    annotation = (fields.get("objective") or fields["pretext"]).annotation
    while not all(isinstance(a, str) for a in typing.get_args(annotation)):  # list[Literal[...]] -> Literal
        annotation = typing.get_args(annotation)[0]
    return typing.get_args(annotation)


@pytest.mark.parametrize("task, expected", [
    ("image", ("simclr", "byol", "supervised")),
    ("audio", ("simclr", "barlow", "order")),
    ("video", ("order", "speed", "colorize", "contrastive")),
])
def test_every_name_a_task_accepts_is_an_objective_its_views_can_feed(task, expected):
    # Execute
    names = _choices(task)
    # Assert: the menu users write from, each entry a registered part whose needs the task's views cover
    assert names == expected
    views = TASKS.get(task).views
    for name in names:
        assert objective_class(name, views).needs <= views
        assert name in objective_names(views)


def test_one_name_two_parts_the_views_pick_which():
    # Execute
    on_spectrograms = objective_class("order", {"augmented", "timeline"})
    on_clips = objective_class("order", {"rgb_clips"})
    # Assert
    assert on_spectrograms is not on_clips
    assert on_spectrograms.__module__ == "fedsim.objectives.spectrogram_order"
    assert on_clips.__module__ == "fedsim.objectives.clip_order"


def test_a_name_the_views_cannot_feed_is_a_value_error_listing_the_choices():
    # Execute / Assert: images have no time axis, so no order objective
    with pytest.raises(ValueError, match=r"unknown objective 'order' .*choose one of: simclr, byol, supervised, barlow"):
        objective_class("order", {"augmented", "labels"})


def test_registering_twice_or_needing_an_undeclared_view_is_refused(registry):
    # Execute / Assert
    with pytest.raises(ValueError, match="registered twice"):
        register_objective("simclr", needs={"augmented"})(type("Again", (TwoViewObjective,), {}))
    with pytest.raises(ValueError, match="unknown views"):
        register_objective("smell", needs={"odour"})
    assert set(VIEWS) == {"augmented", "timeline", "labels", "rgb_clips"}


def test_a_new_objective_is_one_class_and_a_registration(registry):
    # Prepare: mean squared distance of two views' features, registered for any augmented views
    @register_objective("mse_views", needs={"augmented"})
    class MSEViews(TwoViewObjective):
        def head(self, dim, source):
            return nn.Identity()

        def pair_loss(self, z0, z1):
            return (z0 - z1).pow(2).mean()

    image = TASKS.get("image")
    ctx = TaskContext(num_clients=4, seed=0, partitioning=SimpleNamespace(kind="iid"), backbone="resnet_small")
    task = image(ctx, image.Params(image_size=12, min_samples=8, max_samples=8))
    objective = build_objective("mse_views", image.views, task.params)
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(144, 3))
    encoder.out_dim = 3  # what a registered backbone carries
    model = objective.build(encoder, task)
    batch = task.client_dataset(0).tensors
    gen = torch.Generator().manual_seed(1)
    # Execute
    loss = objective.loss(model, batch, task, gen)
    loss.backward()
    # Assert: two views of the task, drawn in order from the generator, through the model's encoder
    again = torch.Generator().manual_seed(1)
    v0, v1 = task.view(batch["image"], again), task.view(batch["image"], again)
    with torch.no_grad():
        expected = (model.backbone(v0) - model.backbone(v1)).pow(2).mean()
    assert isinstance(model, BackboneHead) and objective.name == "mse_views"
    torch.testing.assert_close(loss.detach(), expected)
    assert model.backbone[1].weight.grad is not None
    assert "mse_views" in objective_names(image.views) and "mse_views" in objective_names(TASKS.get("audio").views)

"""The audio task: views, the three objectives, evaluation and its baselines."""

from __future__ import annotations

import pytest
import torch

from fedsim.config import load_config
from fedsim.objectives.spectrogram_order import PERMUTATIONS
from fedsim.tasks.audio import AudioParams, AudioTask
from fedsim.factory import task_for

pytestmark = pytest.mark.timeout(120)
SMALL = {"min_clips": 4, "max_clips": 6, "eval_per_class": 3, "clip_seconds": 0.5}


def _task(**params) -> AudioTask:
    exp = load_config(None, {"task.name": "audio", "model.name": "resnet_small", "federation.clients": 20,
                             "task.params": {**SMALL, **params}, "evaluation.knn_k": 3})
    return task_for(exp)


def test_a_task_may_name_its_default_backbone(monkeypatch):
    monkeypatch.setattr(AudioTask, "default_model", "audio_rep_inceptionnext")
    assert load_config(None, {"task.name": "audio"}).model.name == "audio_rep_inceptionnext"
    assert load_config(None, {"task.name": "audio", "model.name": "mlp"}).model.name == "mlp"
    assert load_config(None, {"task.name": "audio", "strategy.name": "fedrepopt"}).model.name == "repopt_vgg"


def test_views_are_log_mels_drawn_only_from_the_generator():
    # Prepare
    task = _task()
    wave = task.client_dataset(3)["audio"]
    state = torch.get_rng_state()
    # Execute
    a = task.view(wave, torch.Generator().manual_seed(1))
    b = task.view(wave, torch.Generator().manual_seed(1))
    c = task.view(wave, torch.Generator().manual_seed(2))
    # Assert
    assert a.shape == (len(wave), 1, *task.spectrogram_shape())
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(torch.get_rng_state(), state)  # masking ran on a forked global RNG


@pytest.mark.parametrize("objective", ["simclr", "barlow", "order"])
def test_each_objective_backpropagates_into_the_encoder(objective):
    # Prepare
    task = _task(objective=objective)
    model = task.build_model()
    batch = task.client_dataset(0).tensors
    # Execute
    loss = task.loss(model, batch, torch.Generator().manual_seed(0))
    loss.backward()
    # Assert
    assert loss.dim() == 0 and torch.isfinite(loss.detach())
    grads = [p.grad for p in model.backbone.parameters() if p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)


def test_the_order_pretext_shuffles_segments_by_the_label_permutation(monkeypatch):
    # Prepare: a spectrogram whose three time segments are constant 0, 1, 2; a backbone that
    # returns each segment's mean, so the head sees the order of the shuffled segments
    task = _task(objective="order")
    spec = torch.cat([torch.full((2, 1, 4, 5), float(v)) for v in range(3)], dim=-1)  # (2, 1, 4, 15)
    seen = {}

    class Head(torch.nn.Module):
        def forward(self, f):
            seen["features"] = f
            return torch.zeros(len(f), len(PERMUTATIONS), requires_grad=True)

    class SegmentMean(torch.nn.Module):  # (3n, 1, F, t) -> (3n, 1): each segment's mean
        def forward(self, x):
            return x.mean(dim=(1, 2, 3))[:, None]

    from fedsim.tasks.base import BackboneHead
    model = BackboneHead(SegmentMean(), Head())
    gen = torch.Generator().manual_seed(4)
    label = torch.randint(0, len(PERMUTATIONS), (2,), generator=torch.Generator().manual_seed(4))
    view_of_spec = type("Source", (), {"sample_key": "audio", "view": staticmethod(lambda x, g: x)})
    # Execute: the objective on a source whose view is the spectrogram itself
    task.objective.loss(model, {"audio": spec}, view_of_spec, gen)
    # Assert: slot j holds segment PERMUTATIONS[label][j]
    assert torch.equal(seen["features"], PERMUTATIONS[label].float())


def test_evaluation_declares_knn_probe_and_retrieval_with_pooled_logmel_baseline():
    # Prepare
    task = _task()
    # Execute
    metrics = task.evaluate(task.build_model())
    baselines = task.baselines()
    # Assert
    assert [m.name for m in task.metrics()] == ["knn_top1", "linear_top1", "retrieval_map"]
    assert set(metrics) == {"knn_top1", "linear_top1", "retrieval_map"}
    assert set(baselines) == {"knn_top1_raw_input", "knn_top1_pooled_logmel"}
    data = task.eval_data()
    assert data.bank_x.shape[1:] == (1, *task.spectrogram_shape())


def test_invalid_params_are_refused():
    for bad in ({"min_clips": 9, "max_clips": 4}, {"win_length": 2048, "n_fft": 1024},
                {"noise_snr_db": (30, 10)}, {"objective": "mae"}):
        with pytest.raises(ValueError):
            AudioParams(**bad)


def test_barlow_defaults_to_the_width_scaled_lambda_and_the_papers_projector():
    from fedsim.losses.barlow import scaled_lambda

    task = _task(objective="barlow", projection_dim=32)
    assert task.objective.loss_fn.lambda_offdiag == pytest.approx(scaled_lambda(32))
    assert _task(objective="barlow", barlow_lambda=0.01).objective.loss_fn.lambda_offdiag == 0.01
    assert len(task.build_model().head) == 7  # Linear, BN, ReLU, Linear, BN, ReLU, Linear

"""kNN and linear-probe evaluation on hand-built feature banks, and on the image task."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import fedsim.models  # noqa: F401  (registers the backbones)
from fedsim.config import PartitionConfig
from fedsim.tasks import classification as evaluation
from fedsim.tasks.base import TaskContext
from fedsim.tasks.classification import EvalData, evaluate_encoder, knn_top1, linear_probe_top1, raw_input_knn
from fedsim.tasks.image import ImageParams, ImageTask

pytestmark = pytest.mark.timeout(60)


def _t(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


def _y(labels) -> torch.Tensor:
    return torch.tensor(labels, dtype=torch.int64)


# ---------------------------------------------------------------- kNN

def test_knn_on_axis_aligned_classes_is_exact():
    # Prepare: class c lives on axis c; queries point near their class's axis
    bank = _t([[1, 0, 0], [2, 0.1, 0], [0, 1, 0], [0, 3, 0.2], [0, 0, 1], [0.1, 0, 5]])
    bank_y = _y([0, 0, 1, 1, 2, 2])
    query = _t([[5, 0.2, 0.1], [0.1, 0.4, 0], [0, 0.1, 0.3]])
    # Execute
    right = knn_top1(bank, bank_y, query, _y([0, 1, 2]), k=2)
    one_wrong = knn_top1(bank, bank_y, query, _y([0, 1, 1]), k=2)
    # Assert
    assert right == 1.0
    assert one_wrong == pytest.approx(2 / 3)


def test_knn_uses_cosine_not_euclidean_distance():
    # Prepare: the query is close in angle to the far sample A, close in distance to B
    bank, bank_y = _t([[10.0, 0.0], [0.5, 0.6]]), _y([0, 1])
    query = _t([[1.0, 0.1]])
    # Execute
    acc = knn_top1(bank, bank_y, query, _y([0]), k=1)
    # Assert: cos(q, A) = 0.995 > cos(q, B) = 0.713, although |q - B| = 0.71 < |q - A| = 9.0
    assert acc == 1.0


def test_knn_is_a_majority_vote_of_the_k_nearest():
    # Prepare: the single nearest bank sample is class 1, the next two are class 0
    bank = _t([[1.0, 0.0], [0.9, 0.3], [0.9, -0.3], [0.0, 1.0]])
    bank_y = _y([1, 0, 0, 1])
    query = _t([[1.0, 0.0]])
    # Execute
    k1 = knn_top1(bank, bank_y, query, _y([1]), k=1)
    k3 = knn_top1(bank, bank_y, query, _y([0]), k=3)
    # Assert
    assert k1 == 1.0 and k3 == 1.0


@pytest.mark.parametrize("query, expected_label", [
    ([1.0, 0.5], 1),  # case: one vote each; class 1's neighbour is more similar (0.89 vs 0.45)
    ([1.0, 1.0], 0),  # case: one vote each, equal similarity -> the smaller label
])
def test_knn_vote_ties_go_to_larger_similarity_then_smaller_label(query, expected_label):
    # Prepare
    bank, bank_y = _t([[1.0, 0.0], [0.0, 1.0]]), _y([1, 0])
    # Execute
    acc = knn_top1(bank, bank_y, _t([query]), _y([expected_label]), k=2)
    # Assert
    assert acc == 1.0


def test_knn_tie_break_with_negative_similarities():
    # Prepare: both neighbours point away from the query; class 2's one less so
    bank, bank_y = _t([[-1.0, 0.0], [-1.0, 1.0]]), _y([0, 2])
    query = _t([[1.0, 0.0]])
    # Execute
    acc = knn_top1(bank, bank_y, query, _y([2]), k=2)
    # Assert: sim to class 0 = -1, to class 2 = -0.707 -> class 2
    assert acc == 1.0


def test_k_larger_than_the_bank_uses_the_whole_bank():
    # Prepare: 3 bank samples, two of class 1
    bank, bank_y = _t([[1.0, 0.0], [0.0, 1.0], [0.1, 1.0]]), _y([0, 1, 1])
    # Execute
    acc = knn_top1(bank, bank_y, _t([[1.0, 0.0]]), _y([1]), k=100)
    # Assert: the nearest is class 0, but the vote over all three says 1
    assert acc == 1.0


def test_query_label_missing_from_the_bank_counts_as_wrong():
    # Execute
    acc = knn_top1(_t([[1.0, 0.0]]), _y([0]), _t([[1.0, 0.0], [0.9, 0.1]]), _y([0, 4]), k=1)
    # Assert
    assert acc == 0.5


@pytest.mark.parametrize("bank, query, k, match", [
    ([[1.0, 0.0]], [[1.0, 0.0]], 0, "k must be at least 1"),  # case: no neighbours
    ([], [[1.0, 0.0]], 1, "non-empty"),  # case: empty bank
    ([[1.0, 0.0]], [], 1, "non-empty"),  # case: empty query
])
def test_knn_rejects_impossible_inputs(bank, query, k, match):
    # Prepare
    bank_f = torch.tensor(bank, dtype=torch.float32).reshape(-1, 2)
    query_f = torch.tensor(query, dtype=torch.float32).reshape(-1, 2)
    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        knn_top1(bank_f, torch.zeros(len(bank_f), dtype=torch.int64), query_f,
                 torch.zeros(len(query_f), dtype=torch.int64), k=k)


# ---------------------------------------------------------------- linear probe

def _blobs(n_per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Three well separated Gaussian blobs in 4-d (linearly separable)."""
    gen = torch.Generator().manual_seed(seed)
    centres = _t([[6, 0, 0, 0], [0, 6, 0, 0], [0, 0, 6, 6]])
    x = torch.cat([c + 0.5 * torch.randn(n_per_class, 4, generator=gen) for c in centres])
    return x, torch.arange(3).repeat_interleave(n_per_class)


def test_linear_probe_separates_linearly_separable_classes():
    # Prepare
    bank_f, bank_y = _blobs(20, seed=0)
    query_f, query_y = _blobs(10, seed=1)
    # Execute
    acc = linear_probe_top1(bank_f, bank_y, query_f, query_y)
    # Assert
    assert acc == 1.0


def test_linear_probe_finds_a_direction_knn_cannot_see():
    # Prepare: the label is the sign of a tiny coordinate; two huge nuisance coordinates
    # dominate the cosine similarity, so kNN is near chance
    gen = torch.Generator().manual_seed(0)

    def make(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        sign = torch.randint(0, 2, (n,), generator=gen)
        small = (sign * 2 - 1) * (0.05 + 0.05 * torch.rand(n, generator=gen))
        nuisance = 100 * torch.randn(n, 2, generator=gen)
        return torch.cat([nuisance, small[:, None]], 1), sign

    bank_f, bank_y = make(60)
    query_f, query_y = make(40)
    # Execute
    probe = linear_probe_top1(bank_f, bank_y, query_f, query_y)
    knn = knn_top1(bank_f, bank_y, query_f, query_y)
    # Assert: the probe standardises features, so the tiny coordinate separates the classes
    assert probe == 1.0
    assert knn < 0.75


# ---------------------------------------------------------------- on a task

class _Identity(nn.Module):
    """A model whose backbone is the identity on flattened inputs; records its mode."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Flatten()
        self.modes: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)


def _fake_task(model: _Identity) -> SimpleNamespace:
    """Axis-aligned 2×2 'images': class c has its ink in pixel c."""
    def images(labels: list[int], noise: float) -> torch.Tensor:
        x = torch.full((len(labels), 1, 2, 2), noise)
        for i, c in enumerate(labels):
            x[i, 0, c // 2, c % 2] = 1.0
        return x

    bank_y, query_y = [0, 1, 2, 3] * 3, [3, 2, 1, 0]
    data = EvalData(bank_x=images(bank_y, 0.0), bank_y=_y(bank_y),
                    query_x=images(query_y, 0.1), query_y=_y(query_y))

    def features(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
        model.modes.append(m.training)
        assert not torch.is_grad_enabled()
        return m.backbone(x)

    return SimpleNamespace(eval_data=lambda: data, features=features, data=data)


def test_evaluate_encoder_on_frozen_features_restores_train_mode(monkeypatch):
    # Prepare: batches of 5 so the 12-sample bank is encoded in three pieces
    monkeypatch.setattr(evaluation, "FEATURE_BATCH", 5)
    model = _Identity().train()
    task = _fake_task(model)
    # Execute
    metrics = evaluate_encoder(task.features, model, task.data, k=3, seed=0)
    # Assert
    assert metrics == {"knn_top1": 1.0, "linear_top1": 1.0}
    assert model.modes == [False] * 4  # 3 bank batches + 1 query batch, all in eval mode
    assert model.training


def test_evaluate_encoder_without_the_probe_reports_knn_only():
    # Prepare
    model = _Identity().eval()
    # Execute
    task = _fake_task(model)
    metrics = evaluate_encoder(task.features, model, task.data, k=1, linear_probe=False)
    # Assert
    assert metrics == {"knn_top1": 1.0}
    assert not model.training


def test_raw_input_knn_reads_flattened_pixels():
    # Prepare
    task = _fake_task(_Identity())
    data = task.eval_data()
    # Execute
    acc = raw_input_knn(data, k=3)
    # Assert
    assert acc == 1.0
    assert acc == knn_top1(data.bank_x.flatten(1), data.bank_y, data.query_x.flatten(1), data.query_y, k=3)


def test_on_the_image_task_both_baselines_beat_chance():
    # Prepare
    context = TaskContext(num_clients=4, seed=0, partitioning=PartitionConfig(), backbone="resnet_small")
    task = ImageTask(context, ImageParams(image_size=12))
    model = task.build_model()
    # Execute
    raw = task.baselines()["knn_top1_raw_input"]
    metrics = task.evaluate(model)
    # Assert: 10 classes -> chance 0.1 (measured: raw ~0.5, random-init kNN ~0.26)
    assert 0.3 < raw <= 1.0
    assert set(metrics) == {"knn_top1", "linear_top1"} == {m.name for m in task.metrics()}
    assert 0.15 < metrics["knn_top1"] <= 1.0 and 0.15 < metrics["linear_top1"] <= 1.0
    assert metrics == task.evaluate(model)  # deterministic


# ---------------------------------------------------------------- retrieval mAP

def test_retrieval_map_against_hand_computed_ranks():
    # Prepare: bank items along the unit circle; query q0 (class 0) ranks the bank as
    # b0 (cls 0), b1 (cls 1), b2 (cls 0), b3 (cls 1) -> AP = (1/1 + 2/3) / 2 = 5/6;
    # query q1 (class 1) at b3's direction ranks b3, b2, b1, b0 -> AP = (1/1 + 2/3) / 2 = 5/6
    import math
    angles = [0.0, 0.3, 0.6, 0.9]
    bank = _t([[math.cos(a), math.sin(a)] for a in angles])
    bank_y = _y([0, 1, 0, 1])
    query = _t([[1.0, -0.1], [math.cos(1.0), math.sin(1.0)]])
    # Execute
    got = evaluation.retrieval_map(bank, bank_y, query, _y([0, 1]))
    # Assert
    assert got == pytest.approx(5 / 6)


def test_retrieval_map_is_one_for_perfectly_separated_classes_and_skips_unknown_classes():
    bank, bank_y = _t([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]]), _y([0, 0, 1])
    assert evaluation.retrieval_map(bank, bank_y, _t([[1.0, 0.05], [0.1, 1.0], [1.0, 1.0]]), _y([0, 1, 7])) == 1.0
    with pytest.raises(ValueError, match="at least one query"):
        evaluation.retrieval_map(bank, bank_y, _t([[1.0, 0.0]]), _y([5]))


def test_a_bank_of_one_class_skips_the_linear_probe_with_a_warning():
    # a tiny folder (2 classes x 8 images) can hold out a bank of one class: no probe to fit
    from fedsim.tasks.classification import linear_probe_top1

    bank_f, bank_y = torch.randn(2, 4), torch.tensor([1, 1])
    with pytest.warns(RuntimeWarning, match="linear probe skipped: the held-out bank has 2 item\\(s\\) of 1 class"):
        value = linear_probe_top1(bank_f, bank_y, torch.randn(2, 4), torch.tensor([0, 1]))
    assert math.isnan(value)

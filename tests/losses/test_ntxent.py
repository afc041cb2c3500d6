"""NT-Xent against hand-computed values and a slow loop written from SimCLR's Algorithm 1."""

from __future__ import annotations

import math

import pytest
import torch

from fedsim.losses import NTXentLoss

pytestmark = pytest.mark.timeout(30)


def slow_ntxent(out0: torch.Tensor, out1: torch.Tensor, temperature: float) -> float:
    """arXiv 2002.05709, Algorithm 1, as plain loops: mean of l(i, j) over all 2n positive pairs."""
    z = [v / math.sqrt(sum(float(c) ** 2 for c in v)) for v in torch.cat([out0, out1]).double()]
    n2 = len(z)
    n = n2 // 2

    def sim(a: int, b: int) -> float:
        return sum(float(p) * float(q) for p, q in zip(z[a], z[b])) / temperature

    total = 0.0
    for i in range(n2):
        j = (i + n) % n2  # the other view of the same sample
        denominator = sum(math.exp(sim(i, k)) for k in range(n2) if k != i)
        total += -math.log(math.exp(sim(i, j)) / denominator)
    return total / n2


def test_single_pair_has_zero_loss():
    # Prepare: one sample, so the positive is the only other view
    out0, out1 = torch.tensor([[1.0, 2.0]]), torch.tensor([[-3.0, 0.5]])
    # Execute
    loss = NTXentLoss(0.5)(out0, out1)
    # Assert: -log(e^s / e^s) = 0
    torch.testing.assert_close(loss, torch.tensor(0.0))


def test_two_orthogonal_samples_by_hand():
    # Prepare: views equal, samples orthogonal: s_pos = 1/τ = 2, s_neg = 0
    out0 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    out1 = out0.clone()
    # Execute
    loss = NTXentLoss(0.5)(out0, out1)
    # Assert: every row: -log(e^2 / (e^2 + e^0 + e^0)) = log(1 + 2 e^-2)
    torch.testing.assert_close(loss, torch.tensor(math.log(1 + 2 * math.exp(-2))))


def test_three_samples_by_hand():
    # Prepare: sample 0 views agree; samples 1 and 2 have opposite views; all on the axes
    e1, e2, e3 = torch.eye(3)
    out0 = torch.stack([e1, e2, e3])
    out1 = torch.stack([e1, -e2, -e3])
    # Execute
    loss = NTXentLoss(1.0)(out0, out1)
    # Assert, τ = 1. z = [e1, e2, e3, e1, -e2, -e3]
    # row e1 (x2):  pos 1, negatives e2, e3, -e2, -e3 -> 0 each: -log(e / (e + 4))
    # row e2 (x4, same by symmetry for e3, -e2, -e3): pos -1, negatives e1, e3, e1, -e3 -> 0:
    #   -log(e^-1 / (e^-1 + 4))
    row_agree = -math.log(math.e / (math.e + 4))
    row_opposite = -math.log(math.exp(-1) / (math.exp(-1) + 4))
    torch.testing.assert_close(loss, torch.tensor((2 * row_agree + 4 * row_opposite) / 6))


@pytest.mark.parametrize("n, c, temperature", [
    (2, 3, 0.5),  # case: the smallest batch with negatives
    (3, 4, 0.1),  # case: sharp softmax
    (5, 8, 1.0),  # case: τ = 1
])
def test_matches_the_slow_loop_on_random_embeddings(n, c, temperature):
    # Prepare
    gen = torch.Generator().manual_seed(n * 100 + c)
    out0, out1 = torch.randn(n, c, generator=gen), torch.randn(n, c, generator=gen)
    # Execute
    loss = NTXentLoss(temperature)(out0, out1)
    # Assert
    assert abs(float(loss) - slow_ntxent(out0, out1, temperature)) < 1e-5


def test_scale_of_the_projections_does_not_matter_and_views_are_symmetric():
    # Prepare
    gen = torch.Generator().manual_seed(0)
    out0, out1 = torch.randn(4, 5, generator=gen), torch.randn(4, 5, generator=gen)
    loss_fn = NTXentLoss(0.5)
    # Execute
    base = loss_fn(out0, out1)
    scaled = loss_fn(3.0 * out0, 0.25 * out1)
    swapped = loss_fn(out1, out0)
    # Assert
    torch.testing.assert_close(scaled, base)
    torch.testing.assert_close(swapped, base)


def test_aligned_views_score_lower_than_random_views():
    # Prepare
    gen = torch.Generator().manual_seed(1)
    out0 = torch.randn(6, 8, generator=gen)
    # Execute
    aligned = NTXentLoss(0.5)(out0, out0 + 0.01 * torch.randn(6, 8, generator=gen))
    random = NTXentLoss(0.5)(out0, torch.randn(6, 8, generator=gen))
    # Assert
    assert float(aligned) < float(random)


def test_gradient_flows_to_both_views():
    # Prepare
    gen = torch.Generator().manual_seed(2)
    out0 = torch.randn(3, 4, generator=gen, requires_grad=True)
    out1 = torch.randn(3, 4, generator=gen, requires_grad=True)
    # Execute
    NTXentLoss(0.5)(out0, out1).backward()
    # Assert
    assert out0.grad is not None and float(out0.grad.abs().sum()) > 0
    assert out1.grad is not None and float(out1.grad.abs().sum()) > 0


@pytest.mark.parametrize("temperature", [0.0, -0.5, float("nan")])
def test_non_positive_temperature_is_an_error(temperature):
    # Execute / Assert
    with pytest.raises(ValueError, match="temperature must be positive"):
        NTXentLoss(temperature)


@pytest.mark.parametrize("shape0, shape1", [
    ((3, 4), (2, 4)),  # case: different batch sizes
    ((3, 4), (3, 5)),  # case: different embedding sizes
    ((4,), (4,)),  # case: not a batch
])
def test_mismatched_shapes_are_an_error(shape0, shape1):
    # Execute / Assert
    with pytest.raises(ValueError, match="expected two"):
        NTXentLoss()(torch.ones(shape0), torch.ones(shape1))

"""BYOL against slow loops written from the paper's pseudocode (arXiv 2006.07733, Algorithm 1)."""

import math

import pytest
import torch
from torch import nn

from fedsim.losses import BYOLLoss, BYOLNetwork, MomentumTarget, ema_update
from fedsim.losses.byol import regression_loss


def slow_pair_loss(p: torch.Tensor, z: torch.Tensor) -> float:
    """mean_i || p_i/||p_i|| - z_i/||z_i|| ||^2, element by element."""
    total = 0.0
    for pi, zi in zip(p.tolist(), z.tolist()):
        npi, nzi = math.sqrt(sum(v * v for v in pi)), math.sqrt(sum(v * v for v in zi))
        total += sum((a / npi - b / nzi) ** 2 for a, b in zip(pi, zi))
    return total / len(p)


@pytest.mark.parametrize("n, c", [(1, 2), (4, 3), (7, 5)])
def test_loss_matches_the_slow_reference_and_is_symmetrised(n, c):
    gen = torch.Generator().manual_seed(n + 10 * c)
    p0, p1, z0, z1 = (torch.randn(n, c, generator=gen, dtype=torch.float64) for _ in range(4))
    expected = slow_pair_loss(p0, z1) + slow_pair_loss(p1, z0)  # each view predicts the other's target
    assert float(BYOLLoss()(p0, p1, z0, z1)) == pytest.approx(expected, rel=1e-9)


def test_loss_is_zero_for_aligned_and_four_for_opposite_vectors():
    p = torch.tensor([[1.0, 2.0], [0.0, -3.0]])
    assert float(regression_loss(p, 5 * p)) == pytest.approx(0.0, abs=1e-6)
    assert float(regression_loss(p, -p)) == pytest.approx(4.0)


def test_no_gradient_reaches_the_target_projection():
    p, z = torch.randn(4, 3, requires_grad=True), torch.randn(4, 3, requires_grad=True)
    regression_loss(p, z).backward()
    assert p.grad is not None and p.grad.abs().sum() > 0 and z.grad is None
    with pytest.raises(ValueError):
        regression_loss(torch.randn(4, 3), torch.randn(4, 2))


def small_net() -> nn.Module:
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))


@pytest.mark.parametrize("tau", [0.0, 0.9, 0.99, 1.0])
def test_ema_update_matches_the_slow_reference(tau):
    torch.manual_seed(0)
    target, online = small_net(), small_net()
    online(torch.randn(5, 3))  # move the online BatchNorm's running stats and batch counter
    before = {k: v.clone() for k, v in target.state_dict().items()}
    ema_update(target, online, tau)
    for k, v in target.state_dict().items():
        o = online.state_dict()[k]
        if v.is_floating_point():  # xi <- tau * xi + (1 - tau) * theta, entry by entry
            ref = [tau * a + (1 - tau) * b for a, b in zip(before[k].flatten().tolist(), o.flatten().tolist())]
            assert v.flatten().tolist() == pytest.approx(ref, rel=1e-6, abs=1e-7), k
        else:
            assert torch.equal(v, o), k
    with pytest.raises(ValueError):
        ema_update(target, online, 1.5)


def byol_net() -> BYOLNetwork:
    torch.manual_seed(1)
    return BYOLNetwork(nn.Sequential(nn.Linear(3, 4), nn.ReLU()), nn.Linear(4, 2), nn.Linear(2, 2))


def test_target_restarts_from_the_online_weights_and_then_follows_them():
    # Prepare
    online, target = byol_net(), MomentumTarget(tau=0.5)
    x0, x1 = torch.randn(6, 3), torch.randn(6, 3)
    # Execute: reset copies theta; one loss, one SGD step, and the next loss moves xi halfway
    target.reset(online)
    assert all(torch.equal(target.net.state_dict()[k], v) for k, v in online.projector_view().state_dict().items())
    loss = target.loss(online, x0, x1)
    loss.backward()
    with torch.no_grad():
        for q in online.parameters():
            q -= 0.1 * q.grad
    xi0 = {k: v.clone() for k, v in target.net.state_dict().items()}
    target.loss(online, x0, x1)
    # Assert
    for k, v in target.net.state_dict().items():
        torch.testing.assert_close(v, 0.5 * xi0[k] + 0.5 * online.projector_view().state_dict()[k])
    assert all(not q.requires_grad for q in target.net.parameters())
    assert "predictor.weight" in online.state_dict() and not any(k.startswith("predictor") for k in target.net.state_dict())


def test_loss_needs_a_reset_first():
    with pytest.raises(RuntimeError):
        MomentumTarget(0.99).loss(byol_net(), torch.randn(4, 3), torch.randn(4, 3))

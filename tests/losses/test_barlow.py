"""Barlow Twins against a slow loop written from the paper's Algorithm 1 (arXiv 2103.03230)."""

import pytest
import torch

from fedsim.losses import BarlowTwinsLoss


def slow_barlow(a: torch.Tensor, b: torch.Tensor, lam: float) -> float:
    n, c = a.shape
    za = [[(a[k, i] - a[:, i].mean()) / a[:, i].std(unbiased=False) for i in range(c)] for k in range(n)]
    zb = [[(b[k, i] - b[:, i].mean()) / b[:, i].std(unbiased=False) for i in range(c)] for k in range(n)]
    loss = 0.0
    for i in range(c):
        for j in range(c):
            cij = sum(float(za[k][i] * zb[k][j]) for k in range(n)) / n
            loss += (1 - cij) ** 2 if i == j else lam * cij ** 2
    return loss


@pytest.mark.parametrize("n, c, lam", [(4, 3, 5e-3), (6, 2, 0.5), (3, 5, 0.0)])
def test_matches_the_slow_reference(n, c, lam):
    gen = torch.Generator().manual_seed(n * 10 + c)
    a, b = torch.randn(n, c, generator=gen, dtype=torch.float64), torch.randn(n, c, generator=gen, dtype=torch.float64)
    loss = BarlowTwinsLoss(lam, eps=0.0)(a, b)
    assert float(loss) == pytest.approx(slow_barlow(a, b, lam), rel=1e-9)


def test_scale_multiplies_the_loss():
    a, b = torch.randn(5, 3), torch.randn(5, 3)
    torch.testing.assert_close(BarlowTwinsLoss(0.1, scale=0.25)(a, b), 0.25 * BarlowTwinsLoss(0.1)(a, b))


def test_identical_decorrelated_views_cost_nothing():
    # two identical views whose dimensions are uncorrelated: C = I exactly
    z = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    assert float(BarlowTwinsLoss(1.0, eps=0.0)(z, z.clone())) == pytest.approx(0.0, abs=1e-12)


def test_gradient_flows_and_bad_inputs_are_refused():
    a = torch.randn(5, 4, requires_grad=True)
    BarlowTwinsLoss()(a, torch.randn(5, 4)).backward()
    assert a.grad is not None and torch.isfinite(a.grad).all()
    with pytest.raises(ValueError):
        BarlowTwinsLoss(-1.0)
    with pytest.raises(ValueError):
        BarlowTwinsLoss()(torch.randn(1, 4), torch.randn(1, 4))


def test_lambda_is_one_over_the_width():
    from fedsim.losses.barlow import scaled_lambda

    assert scaled_lambda(64) == pytest.approx(1 / 64) and scaled_lambda(256) == pytest.approx(1 / 256)
    with pytest.raises(ValueError):
        scaled_lambda(0)


def test_default_lambda_keeps_the_redundancy_noise_floor_below_the_invariance_term_on_small_batches():
    # Prepare: independent (uncorrelated) views, the worst case for the redundancy term's floor
    from fedsim.losses.barlow import scaled_lambda

    gen = torch.Generator().manual_seed(0)
    d, n = 64, 8  # a client's short last batch
    z0, z1 = torch.randn(n, d, generator=gen), torch.randn(n, d, generator=gen)
    # Execute: the loss minus its invariance term
    loss_fn = BarlowTwinsLoss(scaled_lambda(d))
    floor = float(loss_fn(z0, z1)) - float(((torch.diagonal(_corr(z0, z1)) - 1) ** 2).sum())
    # Assert: ~ lambda * d(d-1)/n = (1/64) * 64 * 63 / 8 = 7.9, an eighth of the invariance term's d = 64
    assert 4.0 < floor < 16.0
    assert float(BarlowTwinsLoss(0.64)(z0, z1)) > 300  # the previous width-scaled lambda: noise dominates


def test_projector_is_three_linear_layers_with_batchnorm_after_the_first_two():
    from torch import nn

    from fedsim.losses.barlow import barlow_projector

    layers = list(barlow_projector(8, 32))
    kinds = [type(m) for m in layers]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.ReLU] * 2 + [nn.Linear]
    assert layers[0].in_features == 8 and all(m.out_features == 32 for m in layers if isinstance(m, nn.Linear))


def _corr(z0: torch.Tensor, z1: torch.Tensor) -> torch.Tensor:
    """The standardised cross-correlation, written out as the paper's Algorithm 1."""
    a = (z0 - z0.mean(0)) / z0.std(0, unbiased=False)
    b = (z1 - z1.mean(0)) / z1.std(0, unbiased=False)
    return a.T @ b / len(z0)

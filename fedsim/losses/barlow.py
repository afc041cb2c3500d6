"""Barlow Twins: redundancy reduction between the embeddings of two views.

Zbontar et al., "Barlow Twins: Self-Supervised Learning via Redundancy Reduction",
arXiv 2103.03230, Algorithm 1: the two views' embeddings are standardised along the batch,
their cross-correlation matrix ``C = z0ᵀ z1 / n`` (``c × c``) is pushed towards the identity:

    L = Σ_i (1 − C_ii)²  +  λ Σ_i Σ_{j ≠ i} C_ij²,

the invariance term making the views agree, the redundancy term decorrelating the feature
dimensions. FASSL (arXiv 2402.02889) uses it as its feature-matching objective on audio.
Layout after lightly's ``lightly/loss/barlow_twins_loss.py``.
"""

from __future__ import annotations

import torch
from torch import nn

def scaled_lambda(width: int) -> float:
    """λ for a ``width``-d embedding: ``1 / width`` (the Hilbert-Schmidt-independence reading of
    Barlow Twins, Tsai et al., arXiv 2104.13712).

    Why not the paper's 5e-3 rescaled to keep ``λ·width`` (= 41 at 8192-d, the previous default
    here): that rule holds the redundancy term's weight against the invariance term, but not
    against the *sampling noise* of the cross-correlation. For uncorrelated features each
    off-diagonal ``C_ij²`` is ~``1/n`` on a batch of ``n``, so the redundancy term has a floor of
    ``λ·width·(width − 1)/n`` that no encoder can remove; relative to the invariance term's
    ``width`` that is ``λ·(width − 1)/n``: 0.02 in the paper (n = 2048), 1.3 at 64-d on the
    clients' batches of 32 — and most federated batches are smaller (a client's last batch
    holds 2–31 clips). Measured on the audio task: the loss stayed at that floor (43.4 → 43.3
    over two rounds, scaled by 0.1) and kNN fell below the random init. ``1/width`` keeps the
    floor at ``(width − 1)/(width·n) < 1/n`` of the invariance term at any width.
    """
    if width < 1:
        raise ValueError(f"width must be at least 1 (got {width})")
    return 1.0 / width


def barlow_projector(in_dim: int, width: int) -> nn.Module:
    """The paper's projector (§2, "Implementation details"), at ``width`` instead of 8192:
    three linear layers, the first two followed by BatchNorm and ReLU."""
    return nn.Sequential(nn.Linear(in_dim, width, bias=False), nn.BatchNorm1d(width), nn.ReLU(inplace=True),
                         nn.Linear(width, width, bias=False), nn.BatchNorm1d(width), nn.ReLU(inplace=True),
                         nn.Linear(width, width, bias=False))


class BarlowTwinsLoss(nn.Module):
    """Barlow Twins loss of two views (arXiv 2103.03230).

    Parameters
    ----------
    lambda_offdiag
        λ, weight of the off-diagonal (redundancy) term; the paper uses 5e-3 with 8192-d
        embeddings. Must be non-negative.
    eps
        Added to the batch standard deviation before dividing.
    scale
        Multiplies the loss (solo-learn's ``scale_loss``, 0.1 for its CIFAR settings), i.e.
        divides the learning rate the loss sees: the sum over ``c`` dimensions of squared
        correlations has far larger gradients than NT-Xent, so at NT-Xent's learning rate it
        needs a small scale (the audio task: 0.01; measured after 3 rounds, λ = 1/64, seed 0:
        linear probe 0.48 at 0.01 vs 0.27 at 1.0, init 0.43).
    """

    def __init__(self, lambda_offdiag: float = 5e-3, eps: float = 1e-5, scale: float = 1.0) -> None:
        super().__init__()
        if not lambda_offdiag >= 0.0:
            raise ValueError(f"Barlow Twins lambda must be non-negative (got {lambda_offdiag})")
        if not scale > 0.0:
            raise ValueError(f"Barlow Twins scale must be positive (got {scale})")
        self.lambda_offdiag = float(lambda_offdiag)
        self.eps = eps
        self.scale = float(scale)

    def forward(self, out0: torch.Tensor, out1: torch.Tensor) -> torch.Tensor:
        """The loss of ``(n, c)`` embeddings; ``out0[i]`` and ``out1[i]`` are views of sample i."""
        if out0.shape != out1.shape or out0.dim() != 2 or out0.shape[0] < 2:
            raise ValueError(f"expected two (n, c) tensors of one shape with n >= 2, got "
                             f"{tuple(out0.shape)} and {tuple(out1.shape)}")
        n = out0.shape[0]
        # standardise along the batch: z: (n, c), zero mean and unit (biased) std per dimension
        z0 = (out0 - out0.mean(0)) / (out0.std(0, unbiased=False) + self.eps)
        z1 = (out1 - out1.mean(0)) / (out1.std(0, unbiased=False) + self.eps)
        c = z0.T @ z1 / n  # (c, c) cross-correlation
        on_diag = (torch.diagonal(c) - 1).pow(2).sum()
        off_diag = c.pow(2).sum() - torch.diagonal(c).pow(2).sum()
        return self.scale * (on_diag + self.lambda_offdiag * off_diag)

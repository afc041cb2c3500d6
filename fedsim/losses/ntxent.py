"""NT-Xent, the normalised temperature-scaled cross-entropy of SimCLR.

Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations",
arXiv 2002.05709, Algorithm 1: for a batch of ``n`` samples with two views each, the
``2n`` projections are L2-normalised; the loss of the positive pair ``(i, j)`` is

    l(i, j) = -log( exp(s_ij / τ) / Σ_{k ≠ i} exp(s_ik / τ) ),   s = cosine similarity,

and the batch loss is the mean of ``l(i, j)`` over all ``2n`` ordered positive pairs, the
other ``2(n - 1)`` views acting as negatives. Layout and checks after lightly's
``lightly/loss/ntx_ent_loss.py`` (without its memory bank).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class NTXentLoss(nn.Module):
    """NT-Xent over two views of one batch (SimCLR, arXiv 2002.05709).

    Parameters
    ----------
    temperature
        The softmax temperature τ; must be positive (SimCLR uses 0.1–1.0, fedsim 0.5).
    """

    def __init__(self, temperature: float = 0.5) -> None:
        super().__init__()
        if not temperature > 0.0 or temperature != temperature:
            raise ValueError(f"NT-Xent temperature must be positive (got {temperature})")
        self.temperature = float(temperature)

    def forward(self, out0: torch.Tensor, out1: torch.Tensor) -> torch.Tensor:
        """Mean NT-Xent of the ``2n`` positive pairs; ``out0[i]`` and ``out1[i]`` are views of sample i."""
        if out0.shape != out1.shape or out0.dim() != 2:
            raise ValueError(f"expected two (n, c) tensors of one shape, got {tuple(out0.shape)} "
                             f"and {tuple(out1.shape)}")
        n = out0.shape[0]
        # z: (2n, c), unit rows; sim: (2n, 2n) cosine similarities over τ
        z = F.normalize(torch.cat([out0, out1], dim=0), dim=1)
        sim = z @ z.T / self.temperature
        # a view is never its own negative: drop the diagonal from the softmax
        sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=sim.device), float("-inf"))
        # the positive of row i is i + n (first views) or i - n (second views)
        target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(sim.device)
        return F.cross_entropy(sim, target)

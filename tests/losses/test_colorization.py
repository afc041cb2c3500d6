"""The colourisation losses: chroma reconstruction, colourfulness and the rebalanced error,
against hand-computed values."""

from __future__ import annotations

import pytest
import torch

from fedsim.data.augmentations import grey
from fedsim.losses.colorization import chroma_to_rgb, colourfulness, reconstruction_loss


def test_chroma_to_rgb_inverts_the_colour_differences_and_keeps_the_luma():
    # Arrange: one pixel (R, G, B) = (0.8, 0.4, 0.2): Y = 0.299·0.8 + 0.587·0.4 + 0.114·0.2 = 0.4968
    rgb = torch.tensor([0.8, 0.4, 0.2]).reshape(1, 3, 1, 1, 1)
    y = torch.tensor(0.4968).reshape(1, 1, 1, 1, 1)
    chroma = torch.tensor([0.8 - 0.4968, 0.2 - 0.4968]).reshape(1, 2, 1, 1, 1)  # (R − Y, B − Y)
    # Act
    out = chroma_to_rgb(y, chroma)
    # Assert: G = Y − (0.299·0.3032 − 0.114·0.2968) / 0.587 = 0.4968 − 0.0968 = 0.4000
    assert out.flatten().tolist() == pytest.approx(rgb.flatten().tolist(), abs=1e-6)
    # torchvision's grey weighs R by 0.2989, not 0.299: 0.8 × 0.0001 below
    assert float(grey(out)) == pytest.approx(0.4968, abs=1e-4)


def test_zero_chroma_is_the_grey_input():
    y = torch.rand(2, 1, 3, 4, 4)
    assert torch.equal(chroma_to_rgb(y, torch.zeros(2, 2, 3, 4, 4)), y.expand(2, 3, 3, 4, 4))


def test_colourfulness_is_max_minus_min_of_the_channels():
    rgb = torch.tensor([[0.8, 0.4, 0.2], [0.5, 0.5, 0.5]]).T.reshape(1, 3, 1, 1, 2)
    assert colourfulness(rgb).flatten().tolist() == pytest.approx([0.6, 0.0])


def test_reconstruction_loss_mse_l1_and_the_rebalanced_weights():
    # Arrange: two pixels; the first target colourful (chroma 0.6), the second grey; errors
    # 0.1 on every channel of the first, 0.2 on every channel of the second
    target = torch.tensor([[0.8, 0.4, 0.2], [0.5, 0.5, 0.5]]).T.reshape(1, 3, 1, 1, 2)
    pred = target + torch.tensor([0.1, 0.2]).reshape(1, 1, 1, 1, 2)
    # Act / Assert: plain means
    assert float(reconstruction_loss(pred, target, kind="mse")) == pytest.approx((0.01 + 0.04) / 2)
    assert float(reconstruction_loss(pred, target, kind="l1")) == pytest.approx((0.1 + 0.2) / 2)
    # rebalance 5: weights 1 + 5·0.6 = 4 and 1, mean 2.5 -> (4·0.01 + 1·0.04) / 2 / 2.5 = 0.016
    assert float(reconstruction_loss(pred, target, kind="mse", rebalance=5.0)) == pytest.approx(0.016)

"""The colourisation decoder: the grey input when untrained, the grey input's luma always."""

from __future__ import annotations

import torch

from fedsim.data.augmentations import grey
from fedsim.objectives.colorize import ColorDecoder


def _inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(2, 8, 2, 2, 2, generator=g), 0.3 + 0.4 * torch.rand(2, 1, 4, 8, 8, generator=g)


def test_an_untrained_decoder_returns_the_grey_input_as_colour():
    maps, g = _inputs()
    out = ColorDecoder(8).eval()(maps, g)
    assert out.shape == (2, 3, 4, 8, 8)
    assert torch.equal(out, g.expand_as(out))


def test_the_decoder_predicts_chroma_only_so_its_output_keeps_the_grey_luma():
    # Arrange: a decoder whose chroma conv is no longer zero (small, so nothing is clamped:
    # the grey input lies in [0.3, 0.7])
    maps, g = _inputs()
    decoder = ColorDecoder(8).eval()
    torch.nn.init.normal_(decoder.fuse[-1].weight, std=0.01, generator=torch.Generator().manual_seed(1))
    # Act
    with torch.no_grad():
        out = decoder(maps, g)
    # Assert: coloured, yet its luma is the input (torchvision's grey weighs R by 0.2989, not 0.299)
    assert (out - g).abs().amax() > 1e-3
    assert torch.allclose(grey(out), g, atol=1e-4)

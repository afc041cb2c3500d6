"""The small 3-D CNN video encoders: shapes, torchvision blocks, factorised convolutions."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fedsim.models import build_backbone
from fedsim.models.video3d import r2plus1d_small, r3d_small

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("name", ["r3d_small", "r2plus1d_small"])
def test_video_encoders_map_clips_of_any_length_to_64_features(name):
    torch.manual_seed(0)
    model = build_backbone(name, in_channels=1, image_size=16)
    for frames in (4, 5):
        assert model(torch.randn(2, 1, frames, 16, 16)).shape == (2, 64)
    # the last stage's map: frame side halved by the stem and by stages 2 and 3, time by stages 2 and 3
    assert model.feature_map(torch.randn(2, 1, 8, 16, 16)).shape == (2, 64, 2, 2, 2)


def test_r2plus1d_factorises_every_block_conv_into_spatial_then_temporal():
    r3d, r21d = r3d_small(1), r2plus1d_small(1)
    kernels3d = {m.kernel_size for m in r3d.stages.modules() if isinstance(m, nn.Conv3d)}
    kernels21d = {m.kernel_size for m in r21d.stages.modules() if isinstance(m, nn.Conv3d)}
    assert kernels3d == {(3, 3, 3), (1, 1, 1)}
    assert kernels21d == {(1, 3, 3), (3, 1, 1), (1, 1, 1)}
    # Tran et al. choose the mid-channels so a (2+1)D block has about the 3-D block's parameters
    # (torchvision computes them from the block input for both convs: 12 % fewer here)
    p3d = sum(p.numel() for p in r3d.stages.parameters())
    p21d = sum(p.numel() for p in r21d.stages.parameters())
    assert 0.85 < p21d / p3d < 1.0

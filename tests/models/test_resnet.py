"""The small ResNet's pooling: global (default) or per band of rows (``row_bins``)."""

import pytest
import torch

from fedsim.models import build_backbone
from fedsim.models.resnet import SmallResNet


def test_default_is_global_average_pool() -> None:
    torch.manual_seed(0)
    model = SmallResNet(1).eval()
    x = torch.randn(3, 1, 16, 20)
    maps = model.stages(model.stem(x))  # (3, 64, 4, 5)
    assert model.out_dim == 64
    torch.testing.assert_close(model(x), maps.mean(dim=(2, 3)))


def test_row_bins_average_each_band_of_rows_over_all_columns() -> None:
    torch.manual_seed(0)
    model = SmallResNet(1, row_bins=2).eval()
    x = torch.randn(3, 1, 16, 20)
    maps = model.stages(model.stem(x))  # (3, 64, 4, 5): rows 0-1 and 2-3 are the two bands
    by_hand = torch.stack([maps[:, :, :2].mean(dim=(2, 3)), maps[:, :, 2:].mean(dim=(2, 3))], dim=2)
    assert model.out_dim == 128
    torch.testing.assert_close(model(x), by_hand.flatten(1))


def test_row_bins_keep_where_in_frequency_the_energy_is() -> None:
    """A spectrogram with a band high vs low: the global pool of a random net barely tells them
    apart, the per-band pool puts them far apart (relative to their norms)."""
    torch.manual_seed(0)
    low, high = torch.zeros(1, 1, 40, 41), torch.zeros(1, 1, 40, 41)
    low[..., 4:8, :], high[..., 32:36, :] = 1.0, 1.0

    @torch.no_grad()
    def spread(model: SmallResNet) -> float:
        a, b = model.eval()(torch.cat([low, high]))
        return float((a - b).norm() / (a.norm() + b.norm()))

    torch.manual_seed(0)
    pooled = spread(SmallResNet(1))
    torch.manual_seed(0)
    banded = spread(SmallResNet(1, row_bins=5))
    assert banded > 2 * pooled


def test_row_bins_through_model_params() -> None:
    model = build_backbone("resnet_small", in_channels=1, image_size=16, options={"row_bins": 4})
    assert model.out_dim == 256
    assert model(torch.randn(2, 1, 40, 41)).shape == (2, 256)
    with pytest.raises(ValueError, match="row_bins must be >= 0"):
        SmallResNet(1, row_bins=-1)

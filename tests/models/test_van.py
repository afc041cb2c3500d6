"""VAN with LSKA / LKA: kernel table, parameter growth, receptive field, equivalence, options."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from fedsim.cli import app
from fedsim.models import build_backbone
from fedsim.models.van import KERNELS, LKA, LSKA, VAN

pytestmark = pytest.mark.timeout(60)

C = 8  # channels of the gating units below


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_kernel_table_follows_the_decomposition_rule():
    # k0 = 2d − 1, kd = ⌊k/d⌋, and the cascade covers exactly k: (k0 − 1) + d·(kd − 1) + 1 = k
    for k, (k0, kd, d) in KERNELS.items():
        assert k0 == 2 * d - 1 and kd == k // d, k
        assert (k0 - 1) + d * (kd - 1) + 1 == k, k


@pytest.mark.parametrize(("k", "lska", "lka"), [
    # gating unit at C = 8: 1×1 conv C² + C; LSKA four 1-D dw convs 2C(k0 + kd) + 4C;
    # LKA two square dw convs C(k0² + kd²) + 2C
    (7, 64 + 8 + 2 * 8 * (3 + 3) + 32, 64 + 8 + 8 * (9 + 9) + 16),  # case: (3, 3, 2) -> 200 vs 232
    (11, 64 + 8 + 2 * 8 * (3 + 5) + 32, 64 + 8 + 8 * (9 + 25) + 16),  # case: (3, 5, 2) -> 232 vs 360
    (23, 64 + 8 + 2 * 8 * (5 + 7) + 32, 64 + 8 + 8 * (25 + 49) + 16),  # case: (5, 7, 3) -> 296 vs 680
    (35, 64 + 8 + 2 * 8 * (5 + 11) + 32, 64 + 8 + 8 * (25 + 121) + 16),  # case: (5, 11, 3) -> 360 vs 1256
])
def test_gating_unit_parameters_match_the_hand_count(k, lska, lka):
    assert (n_params(LSKA(C, k)), n_params(LKA(C, k))) == (lska, lka)
    assert (lska, lka) == {7: (200, 232), 11: (232, 360), 23: (296, 680), 35: (360, 1256)}[k]


def test_lska_grows_linearly_and_lka_quadratically_with_kernel_size():
    # Prepare: depthwise weights per channel, i.e. the parameters that depend on k
    # (the gating unit less its 1×1 conv and its biases, which do not depend on k)
    def per_channel(module: nn.Module) -> float:
        return sum(m.weight.numel() for m in module.modules() if isinstance(m, nn.Conv2d) and m.groups == C) / C

    ks = [7, 11, 23, 35]
    # Execute
    lska = [per_channel(LSKA(C, k)) for k in ks]
    lka = [per_channel(LKA(C, k)) for k in ks]
    # Assert: 2·k0 + 2·kd against k0² + kd², counted by hand from the table
    assert lska == [12, 16, 24, 32] and lka == [18, 34, 74, 146]
    # Linear: with d (and k0) fixed, LSKA adds exactly 2 weights per channel per unit of kd,
    # and never more than 2 per unit of k overall (≤ 2k for k ≥ 11) ...
    assert (lska[3] - lska[2]) / (11 - 7) == 2 and (lska[1] - lska[0]) / (5 - 3) == 2
    assert all(w <= 2 * k for w, k in zip(lska, ks)) and lska[3] / ks[3] < lska[0] / ks[0]
    # ... quadratic: LKA less kd² is constant at fixed d (k0² = 9 at d = 2, 25 at d = 3),
    # so its weights per unit of k keep rising: 18/7 < 34/11 < 74/23 < 146/35
    assert [w - (k // d) ** 2 for w, k, d in zip(lka, ks, [2, 2, 3, 3])] == [9, 9, 25, 25]
    ratios = [w / k for w, k in zip(lka, ks)]
    assert ratios == sorted(ratios) and len(set(ratios)) == 4


@pytest.mark.parametrize("gate", [LSKA, LKA])
@pytest.mark.parametrize("k", [7, 11, 23])
def test_receptive_field_is_exactly_k_by_k(gate, k):
    # Prepare: the centre output of the gating unit depends on a k×k window of its input
    torch.manual_seed(0)
    unit = gate(1, k)
    side = k + 8
    x = torch.randn(1, 1, side, side, requires_grad=True)
    # Execute
    unit(x)[0, 0, side // 2, side // 2].backward()
    # Assert
    rows, cols = torch.nonzero(x.grad[0, 0]).unbind(1)
    assert (int(rows.max() - rows.min()) + 1, int(cols.max() - cols.min()) + 1) == (k, k)
    assert len(rows) == k * k  # the window is filled: k0 ≥ d leaves no holes between the dilated taps


@pytest.mark.parametrize("k", [7, 35])
def test_lska_is_lka_with_outer_product_kernels(k):
    # Prepare: LKA's square kernels set to the outer products of LSKA's 1-D kernels
    torch.manual_seed(1)
    lska, lka = LSKA(C, k), LKA(C, k)
    with torch.no_grad():
        for conv in (lska.conv0h, lska.conv0v, lska.conv_spatial_h, lska.conv_spatial_v, lka.conv0, lka.conv_spatial):
            conv.bias.zero_()  # a bias between the two 1-D convs has no square-kernel equivalent
        lka.conv0.weight.copy_(lska.conv0v.weight * lska.conv0h.weight)  # (C,1,k0,1)·(C,1,1,k0) -> (C,1,k0,k0)
        lka.conv_spatial.weight.copy_(lska.conv_spatial_v.weight * lska.conv_spatial_h.weight)
        lka.conv1.load_state_dict(lska.conv1.state_dict())
    x = torch.randn(2, C, 20, 20)
    # Execute / Assert
    torch.testing.assert_close(lska(x), lka(x), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", ["van_lska", "van_lka"])
@pytest.mark.parametrize(("channels", "size", "options", "out_dim"), [
    (1, 16, {}, 64),  # case: defaults, the quickstart's 16 px digits
    (3, 32, {"kernel_size": 23}, 64),  # case: RGB 32 px (CIFAR), a larger kernel
    (1, 12, {"widths": [8, 24], "depths": [2, 1], "mlp_ratio": 2}, 24),  # case: two stages, list options
])
def test_registered_variants_build_and_backpropagate(name, channels, size, options, out_dim):
    # Prepare
    torch.manual_seed(0)
    model = build_backbone(name, in_channels=channels, image_size=size, options=options)
    x = torch.randn(3, channels, size, size)
    # Execute
    features = model(x)
    features.square().mean().backward()
    # Assert
    assert model.out_dim == out_dim and features.shape == (3, out_dim)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert len(model.stages) == len(options.get("depths", [1, 1, 1]))


def test_variants_differ_only_in_the_gating_unit():
    # Prepare / Execute: the same layout, so every parameter outside the gating units is shared by name
    lska, lka = VAN(attention="lska", kernel_size=23), VAN(attention="lka", kernel_size=23)
    outside = {n: p.shape for n, p in lska.named_parameters() if "spatial_gating_unit" not in n}
    # Assert: 3 blocks × C(k0² + kd² − 2k0 − 2kd − 2) more weights in LKA, C = 16, 32, 64
    assert outside == {n: p.shape for n, p in lka.named_parameters() if "spatial_gating_unit" not in n}
    assert n_params(lka) - n_params(lska) == (16 + 32 + 64) * ((25 + 49) - 2 * (5 + 7) - 2)


@pytest.mark.parametrize(("options", "words"), [
    ({"kernel_size": 21}, "kernel_size must be one of 7, 11, 23, 35, 41, 53 (got 21)"),  # case: VAN's k, not in the table
    ({"widths": [8, 16]}, "widths and depths must be equally long"),  # case: 2 widths, 3 depths
    ({"depths": [1, 0, 1]}, "positive integers"),  # case: an empty stage
    ({"mlp_ratio": 0}, "mlp_ratio must be positive"),  # case: no MLP
])
def test_bad_options_are_one_clear_value_error(options, words):
    with pytest.raises(ValueError, match="model.params for 'van_lka'") as err:
        build_backbone("van_lka", in_channels=1, image_size=16, options=options)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_cli_rejects_a_kernel_size_outside_the_table_before_start_up():
    result = CliRunner().invoke(app, ["run", "--model", "van_lska", "--set", "model.params.kernel_size=9", "--check"])
    assert result.exit_code == 2
    assert "model.params for 'van_lska': kernel_size must be one of" in result.output


def test_default_variants_are_about_as_small_as_resnet_small():
    # Prepare / Execute: parameter counts at the defaults (k = 7)
    counts = {name: n_params(build_backbone(name, in_channels=1, image_size=16))
              for name in ("van_lska", "van_lka", "resnet_small")}
    # Assert: LKA adds C(k0² + kd² − 2k0 − 2kd − 2) = 4C per block at k = 7; both stay within
    # 1.5× the CIFAR ResNet-8 the image task trains on CPU clients
    assert counts["van_lka"] - counts["van_lska"] == (16 + 32 + 64) * ((9 + 9) - 2 * (3 + 3) - 2)
    assert counts["van_lka"] < 1.5 * counts["resnet_small"]

"""AudioRepInceptionNeXt: shapes, the branch fold (eval-mode equivalence, parameter drop),
gradients to every branch, seeded init, registry metadata. AudioInceptionNeXt (the non-Rep
variant): shapes, its block against the official forward written out, gradients, seeded init."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fedsim.models import build_backbone
from fedsim.models.audio_inceptionnext import (AudioInceptionNeXt, AudioRepInceptionNeXt,
                                               InceptionBlock, ThreeWayDepthwise, final_map_size,
                                               reparameterize, stem_stride_for)
from fedsim.registry import MODELS

pytestmark = pytest.mark.timeout(60)

NAME = "audio_rep_inceptionnext"


def randomised(model: nn.Module, seed: int) -> nn.Module:
    """``model`` with random BN affine parameters and running statistics (not the init values,
    and no zero-initialised last BN), so that a wrong fold changes the outputs."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(0.5 + 0.5 * torch.rand(m.weight.shape, generator=gen))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=gen))
    return model


def spectrograms(n: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 1, h, w, generator=torch.Generator().manual_seed(seed))


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(("h", "w"), [
    (8, 8),  # the registered min_size
    (12, 12),  # the contract's image size
    (40, 24),  # non-square: 40 frames × 24 mel bins
])
def test_features_have_out_dim_for_any_input_side(h: int, w: int) -> None:
    # Prepare
    torch.manual_seed(0)
    model = AudioRepInceptionNeXt(1)
    # Execute
    features = model(spectrograms(3, h, w))
    # Assert
    assert features.shape == (3, model.out_dim) == (3, 128)


def test_stages_are_three_way_depthwise_along_each_axis() -> None:
    model = AudioRepInceptionNeXt(1, kernels=(7, 5, 3))
    block = model.stages[0][0]
    temporal = [branch[0] for branch in block.temporal.branches]
    frequency = [branch[0] for branch in block.frequency.branches]
    assert [c.kernel_size for c in temporal] == [(7, 1), (5, 1), (3, 1)]
    assert [c.kernel_size for c in frequency] == [(1, 7), (1, 5), (1, 3)]
    assert all(c.groups == c.in_channels == c.out_channels for c in temporal + frequency)
    assert all(isinstance(b.shortcut, nn.Sequential) for b in (model.stages[1][0], model.stages[2][0]))


@pytest.mark.parametrize("kernels", [
    (11, 5, 3),  # CPU default
    (21, 11, 3),  # the paper's kernels
])
def test_folded_model_equals_branches_in_eval_mode(kernels: tuple[int, ...]) -> None:
    # Prepare: BN statistics from training steps, then randomised on top
    torch.manual_seed(0)
    model = AudioRepInceptionNeXt(1, kernels=kernels)
    with torch.no_grad():
        for seed in range(2):  # train-mode passes move the running statistics
            model(spectrograms(8, 32, 32, seed=10 + seed))
    model = randomised(model, seed=1).eval()
    x = spectrograms(4, 32, 32, seed=2)
    # Execute
    folded = reparameterize(model)
    with torch.no_grad():
        want, got = model(x), folded(x)
    # Assert
    assert not model.folded and folded.folded and not folded.training
    assert want.abs().max() > 0.1  # the outputs are not trivially small
    assert (got - want).abs().max() < 1e-5


def test_fold_equivalence_is_sensitive_to_every_branch() -> None:
    # A fold that dropped or mis-centred one branch would fail the test above.
    torch.manual_seed(0)
    model = randomised(AudioRepInceptionNeXt(1), seed=1).eval()
    x = spectrograms(2, 32, 32)
    with torch.no_grad():
        before = model(x)
        model.stages[0][0].frequency.branches[2][1].running_mean.add_(0.5)  # the 1×3 branch
        after = model(x)
    assert (after - before).abs().max() > 1e-3


def test_fold_of_one_stage_by_hand() -> None:
    # 1 channel, kernels (3, 1): w3 = (1, 2, 3), w1 = (4); BN3: γ=2, β=1, μ=0.5, σ²=3, eps 1, so
    # scale 2/√4 = 1; BN1: identity (eps 0). Folded: (1, 2, 3) + (0, 4, 0) = (1, 6, 3),
    # bias (1 - 0.5·1) + 0 = 0.5.
    stage = ThreeWayDepthwise(1, (3, 1), axis=3)
    (conv3, bn3), (conv1, bn1) = stage.branches
    with torch.no_grad():
        conv3.weight.copy_(torch.tensor([1.0, 2.0, 3.0]).reshape(1, 1, 1, 3))
        conv1.weight.fill_(4.0)
        bn3.weight.fill_(2.0), bn3.bias.fill_(1.0), bn3.running_mean.fill_(0.5), bn3.running_var.fill_(3.0)
        bn3.eps, bn1.eps = 1.0, 0.0
    kernel, bias = stage.eval().folded_kernel_bias()
    torch.testing.assert_close(kernel, torch.tensor([1.0, 6.0, 3.0]).reshape(1, 1, 1, 3))
    torch.testing.assert_close(bias, torch.tensor([0.5]))


def test_fold_drops_parameters_by_the_expected_count() -> None:
    # Each stage of c channels: Σk·c conv + 3·2c BN parameters -> max(k)·c + c.
    model = AudioRepInceptionNeXt(1)
    stages = [m for m in model.modules() if isinstance(m, ThreeWayDepthwise)]
    dropped = sum(m.branches[0][1].num_features * (11 + 5 + 3 + 6 - 11 - 1) for m in stages)
    # Execute
    folded = reparameterize(model)
    # Assert
    assert len(stages) == 2 * (1 + 1 + 2 + 1)
    assert n_params(model) - n_params(folded) == dropped > 0


def test_reparameterize_in_place_is_idempotent() -> None:
    torch.manual_seed(0)
    model = randomised(AudioRepInceptionNeXt(1), seed=3).eval()
    x = spectrograms(2, 16, 16)
    with torch.no_grad():
        want = model(x)
        model.reparameterize().reparameterize()
        got = model(x)
    assert model.folded and (got - want).abs().max() < 1e-5


def test_gradient_reaches_every_branch() -> None:
    # Prepare: without the zero-initialised last BN, which blocks the branches at step 0
    torch.manual_seed(0)
    model = AudioRepInceptionNeXt(1, zero_init_last_bn=False)
    # Execute
    model(spectrograms(4, 16, 16)).square().mean().backward()
    # Assert
    for name, p in model.named_parameters():
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, name


def test_init_is_deterministic_under_a_seed() -> None:
    def built(seed: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(seed)
        return build_backbone(NAME, in_channels=1, image_size=16).state_dict()

    a, b, c = built(5), built(5), built(6)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_registry_declares_min_size_and_options() -> None:
    info = MODELS.info(NAME)
    assert info.input == "image" and info.min_size == 8 and not info.repopt
    assert build_backbone(NAME, in_channels=1, image_size=info.min_size).out_dim == 128
    with pytest.raises(ValueError, match="at least 8"):
        build_backbone(NAME, in_channels=1, image_size=7)
    wide = MODELS.get(NAME)(in_channels=2, widths=(8, 16), depths=(1, 1))
    assert wide(spectrograms(2, 16, 16).repeat(1, 2, 1, 1)).shape == (2, 16)


@pytest.mark.parametrize(("stem_stride", "expected"), [(4, (2, 3)), (2, (4, 6)), (1, (8, 11))])
def test_stem_stride_sets_the_last_stage_map_of_a_short_clip(stem_stride: int, expected: tuple[int, int]) -> None:
    # Prepare: a 64-mel view of 0.8 s (81 frames at hop 160), the audio task's default
    model = build_backbone(NAME, in_channels=1, image_size=64, options={"stem_stride": stem_stride})
    # Execute
    last = model.stages(model.stem(spectrograms(2, 64, 81)))
    # Assert: the hand-computed halvings (stem 2 + 3 stages, 1 + 3, 0 + 3) and the helper agree
    assert tuple(last.shape[2:]) == expected == final_map_size(64, 81, stem_stride=stem_stride)
    assert model(spectrograms(2, 64, 81)).shape == (2, 128)


def test_the_input_size_rule_keeps_at_least_four_pixels_on_the_short_side() -> None:
    assert stem_stride_for(128, 1001) == 4  # the paper's 10 s, 128-mel input: 4 x 32
    assert stem_stride_for(64, 81) == 2  # the audio task's default view: 4 x 6, not 2 x 3
    assert stem_stride_for(32, 51) == 1  # 32 mels: 4 x 7
    assert stem_stride_for(8, 8) == 1  # nothing keeps 4 px: the finest stem
    with pytest.raises(ValueError, match="1, 2 or 4"):
        AudioRepInceptionNeXt(1, stem_stride=3)


@pytest.mark.parametrize(("options", "message"), [
    ({"kernels": (11, 4, 3)}, "odd"),  # even kernel has no centre
    ({"widths": (16, 32), "depths": (1,)}, "one entry per stage"),
])
def test_bad_options_say_what_to_change(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AudioRepInceptionNeXt(1, **options)


# --- AudioInceptionNeXt (non-Rep, arXiv 2307.07265) ---------------------------------------

PLAIN = "audio_inceptionnext"


@pytest.mark.parametrize(("h", "w"), [
    (8, 8),  # the registered min_size
    (32, 51),  # 32 mel bins × 0.5 s at hop 160
    (40, 24),  # non-square
])
def test_plain_features_have_out_dim(h: int, w: int) -> None:
    torch.manual_seed(0)
    model = AudioInceptionNeXt(1)
    assert model(spectrograms(2, h, w)).shape == (2, model.out_dim) == (2, 128)


def test_plain_block_has_one_separable_path_per_kernel_and_nothing_to_fold() -> None:
    model = AudioInceptionNeXt(1, kernels=(7, 5, 3))
    paths = model.stages[0][0].mixer.paths
    shapes = [[m.kernel_size for m in path if isinstance(m, nn.Conv2d)] for path in paths]
    assert shapes == [[(7, 1), (1, 7)], [(5, 1), (1, 5)], [(3, 1), (1, 3)]]
    assert all(c.groups == c.in_channels for path in paths for c in path if isinstance(c, nn.Conv2d))
    assert not hasattr(model, "reparameterize")
    assert not any(isinstance(m, ThreeWayDepthwise) for m in model.modules())
    # same options, same parameter count as the unfolded Rep variant (six depthwise conv + BN per block)
    assert n_params(model) == n_params(AudioRepInceptionNeXt(1, kernels=(7, 5, 3)))


def official_block_forward(block: InceptionBlock, x: torch.Tensor) -> torch.Tensor:
    """The official non-Rep ``MSThreeWayDWBottleneckTransform.forward`` + ``AudioInceptionNeXtBlock``
    written out layer by layer (audioinceptionnext_helper.py, StevenLauHKHK/AudioInceptionNeXt)."""
    x_head = block.head[1](block.head[0](x))  # a_head, a_head_bn: no ReLU
    comb = 0
    for conv_t, bn_t, _, conv_f, bn_f, _ in block.mixer.paths:  # a / a_medium / a_small, then b's
        comb = comb + torch.relu(bn_f(conv_f(torch.relu(bn_t(conv_t(x_head))))))
    comb = block.expand[1](block.expand[0](comb))  # c, c_bn: no ReLU
    comb = block.reduce[1](block.reduce[0](comb))  # d, d_bn
    return torch.relu(block.shortcut(x) + comb)


@pytest.mark.parametrize(("stage", "in_side"), [
    (0, 16),  # identity shortcut
    (1, 16),  # stride-2 projection shortcut
])
def test_plain_block_matches_the_official_forward(stage: int, in_side: int) -> None:
    # Prepare
    torch.manual_seed(0)
    model = randomised(AudioInceptionNeXt(1, kernels=(7, 5, 3)), seed=4).eval()
    block = model.stages[stage][0]
    x = torch.randn(2, block.head[0].in_channels, in_side, in_side,
                    generator=torch.Generator().manual_seed(5))
    # Execute
    with torch.no_grad():
        got, want = block(x), official_block_forward(block, x)
    # Assert
    assert want.abs().max() > 0.1
    torch.testing.assert_close(got, want)


def test_plain_gradient_reaches_every_parameter() -> None:
    torch.manual_seed(0)
    model = AudioInceptionNeXt(1, zero_init_last_bn=False)
    model(spectrograms(4, 16, 16)).square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, name


def test_plain_zero_init_makes_every_block_its_shortcut() -> None:
    model = AudioInceptionNeXt(1)
    assert all(not b.reduce[1].weight.detach().any() for b in model.modules()
               if isinstance(b, InceptionBlock))


def test_plain_init_is_deterministic_under_a_seed_and_registered() -> None:
    def built(seed: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(seed)
        return build_backbone(PLAIN, in_channels=1, image_size=8).state_dict()

    a, b, c = built(5), built(5), built(6)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    info = MODELS.info(PLAIN)
    assert info.input == "image" and info.min_size == 8 and not info.repopt
    with pytest.raises(ValueError, match="odd"):
        MODELS.get(PLAIN)(in_channels=1, kernels=(4,))

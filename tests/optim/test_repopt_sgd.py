"""RepOpt-SGD: masks against hand-computed values, and the CSLA ⇔ plain step equivalence.

The equivalence is the arbiter of the mask formula (docs/reproductions/fedrepopt.md): SGD on the
branches of a CSLA block followed by merging equals RepOpt-SGD on the merged plain kernel.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from fedsim.models.repghost import CSLAGhostModule, PlainGhostModule, csla_ghost, plain_ghost
from fedsim.models.repopt_vgg import CSLAVGGBlock, PlainVGGBlock, VGGNet, init_plain_from_csla
from fedsim.models.resnet import resnet_small
from fedsim.optim import (BranchScales, RepOptSGD, build_optimizer, grad_mult_mask, grad_mults)
from fedsim.optim.repopt import identity_kernel
from fedsim.registry import UnknownNameError

pytestmark = pytest.mark.timeout(60)


def random_scales(out_ch: int, gen: torch.Generator, *, one_by_one: bool, identity: bool) -> BranchScales:
    def draw() -> torch.Tensor:
        return 0.3 + 1.2 * torch.rand(out_ch, generator=gen)
    return BranchScales(draw(), draw() if one_by_one else None, draw() if identity else None)


def train_steps(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, target: torch.Tensor,
                steps: int) -> None:
    for _ in range(steps):
        loss = ((model(x) - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def output_shape(model: nn.Module, x: torch.Tensor) -> torch.Size:
    """The output shape, from a copy (a train-mode forward would move BN running stats)."""
    return copy.deepcopy(model)(x).shape


def assert_states_close(plain: nn.Module, merged: nn.Module) -> None:
    want = merged.state_dict()
    for name, value in plain.state_dict().items():
        torch.testing.assert_close(value, want[name], atol=1e-5, rtol=1e-5, msg=name)


# ----- masks against hand-computed values ---------------------------------------------------

def test_mask_vgg_block_with_identity_by_hand() -> None:
    # s3 = (2, 3), s1 = (0.5, 1), identity branch, SGD power 2
    mask = grad_mult_mask((2, 2, 3, 3), torch.tensor([2.0, 3.0]), torch.tensor([0.5, 1.0]), identity=True)
    assert mask[0, 0, 0, 0] == 4.0 and mask[1, 0, 2, 1] == 9.0  # off-centre: s3²
    assert mask[0, 0, 1, 1] == 4.0 + 0.25 + 1.0  # diagonal centre: s3² + s1² + 1
    assert mask[0, 1, 1, 1] == 4.0 + 0.25  # off-diagonal centre: s3² + s1²
    assert mask[1, 0, 1, 1] == 9.0 + 1.0
    assert mask[1, 1, 1, 1] == 9.0 + 1.0 + 1.0


@pytest.mark.parametrize(("identity", "power", "diag_centre", "off_diag_centre"), [
    (False, 2, 4.25, 4.25),  # no identity branch: nothing extra on the diagonal
    (True, 1, 3.5, 2.5),  # AdamW-style power 1: s3 + s1 (+ 1 on the diagonal)
    (False, 1, 2.5, 2.5),
])
def test_mask_variants_by_hand(identity: bool, power: int, diag_centre: float, off_diag_centre: float) -> None:
    mask = grad_mult_mask((2, 2, 3, 3), torch.tensor([2.0, 3.0]), torch.tensor([0.5, 1.0]),
                          identity=identity, power=power)
    assert mask[0, 0, 1, 1] == diag_centre and mask[0, 1, 1, 1] == off_diag_centre
    assert mask[0, 0, 0, 2] == 2.0 ** power


def test_mask_depthwise_ghost_by_hand() -> None:
    # depthwise (2, 1, 3, 3), s = (2, 3): s² everywhere, + 1 at each channel's centre
    mask = grad_mult_mask((2, 1, 3, 3), torch.tensor([2.0, 3.0]), identity=True)
    expected = torch.tensor([4.0, 9.0]).view(2, 1, 1, 1).expand(2, 1, 3, 3).clone()
    expected[:, 0, 1, 1] += 1.0
    torch.testing.assert_close(mask, expected)


def test_identity_kernel_dense_and_depthwise() -> None:
    dense = identity_kernel((3, 3, 3, 3))
    x = torch.randn(2, 3, 5, 5)
    torch.testing.assert_close(nn.functional.conv2d(x, dense, padding=1), x)
    depthwise = identity_kernel((3, 1, 3, 3))
    torch.testing.assert_close(nn.functional.conv2d(x, depthwise, padding=1, groups=3), x)


def test_mask_rejects_bad_power_and_impossible_identity() -> None:
    with pytest.raises(ValueError, match="power"):
        grad_mult_mask((2, 2, 3, 3), torch.ones(2), identity=False, power=3)
    with pytest.raises(ValueError, match="identity"):
        grad_mult_mask((3, 2, 3, 3), torch.ones(3), identity=True)


# ----- one step on the branches, merged == one RepOpt step on the plain kernel ---------------

@pytest.mark.parametrize(("in_ch", "out_ch", "stride", "weight_decay", "momentum"), [
    (4, 4, 1, 0.0, 0.0),  # identity branch, no weight decay
    (4, 4, 1, 0.05, 0.0),  # identity branch, weight decay
    (4, 6, 1, 0.0, 0.0),  # no identity: channels change
    (4, 4, 2, 0.05, 0.0),  # no identity: stride 2
    (4, 4, 1, 0.05, 0.9),  # momentum is linear too
])
def test_vgg_block_step_equivalence(in_ch: int, out_ch: int, stride: int, weight_decay: float,
                                    momentum: float) -> None:
    # Prepare
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    identity = in_ch == out_ch and stride == 1
    csla = CSLAVGGBlock(in_ch, out_ch, stride,
                        scales=random_scales(out_ch, gen, one_by_one=True, identity=identity))
    plain = init_plain_from_csla(PlainVGGBlock(in_ch, out_ch, stride), csla)
    x = torch.randn(8, in_ch, 6, 6, generator=gen)
    target = torch.randn(output_shape(csla, x), generator=gen)
    # Execute
    train_steps(csla, torch.optim.SGD(csla.parameters(), lr=0.1, momentum=momentum,
                                      weight_decay=weight_decay), x, target, steps=3 if momentum else 1)
    train_steps(plain, RepOptSGD(plain.parameters(), grad_mults(plain), lr=0.1, momentum=momentum,
                                 weight_decay=weight_decay), x, target, steps=3 if momentum else 1)
    # Assert
    assert_states_close(plain, init_plain_from_csla(PlainVGGBlock(in_ch, out_ch, stride), csla))


@pytest.mark.parametrize(("identity_trainable", "plus_one"), [
    (True, True),  # the official CSLA block: scale_identity stays trainable -> +1 on the diagonal
    (False, False),  # a constant identity branch contributes no gradient -> no +1
])
def test_identity_term_comes_from_the_trainable_identity_weight(identity_trainable: bool,
                                                                 plus_one: bool) -> None:
    gen = torch.Generator().manual_seed(4)
    torch.manual_seed(4)
    csla = CSLAVGGBlock(4, 4, 1, scales=random_scales(4, gen, one_by_one=True, identity=True))
    csla.scale_identity.requires_grad_(identity_trainable)
    plain = init_plain_from_csla(PlainVGGBlock(4, 4, 1), csla)
    x, target = torch.randn(8, 4, 6, 6, generator=gen), torch.randn(8, 4, 6, 6, generator=gen)
    mask = grad_mult_mask(plain.conv.weight.shape, plain.scale_conv, plain.scale_1x1, identity=plus_one)
    train_steps(csla, torch.optim.SGD([p for p in csla.parameters() if p.requires_grad], lr=0.1),
                x, target, 1)
    train_steps(plain, RepOptSGD(plain.parameters(), {plain.conv.weight: mask}, lr=0.1), x, target, 1)
    torch.testing.assert_close(plain.conv.weight, csla.merged_kernel(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("relu", "weight_decay"), [(True, 0.0), (False, 0.05)])
def test_ghost_module_step_equivalence(relu: bool, weight_decay: float) -> None:
    # Prepare
    gen = torch.Generator().manual_seed(1)
    torch.manual_seed(1)
    csla = CSLAGhostModule(3, 5, relu, scales=random_scales(5, gen, one_by_one=False, identity=True))
    plain = init_plain_from_csla(PlainGhostModule(3, 5, relu), csla)
    x = torch.randn(8, 3, 6, 6, generator=gen)
    target = torch.randn(8, 5, 6, 6, generator=gen)
    # Execute
    train_steps(csla, torch.optim.SGD(csla.parameters(), lr=0.1, weight_decay=weight_decay), x, target, 1)
    train_steps(plain, build_optimizer("repopt-sgd", plain, lr=0.1, weight_decay=weight_decay), x, target, 1)
    # Assert
    assert_states_close(plain, init_plain_from_csla(PlainGhostModule(3, 5, relu), csla))


def test_whole_networks_step_equivalence() -> None:
    # a small VGG (blocks with and without identity) and the RepGhost layout, 2 SGD steps
    gen = torch.Generator().manual_seed(2)
    torch.manual_seed(2)
    vgg_block = lambda i, o, s, _: CSLAVGGBlock(  # noqa: E731
        i, o, s, scales=random_scales(o, gen, one_by_one=True, identity=i == o and s == 1))
    pairs = [(lambda: VGGNet(lambda i, o, s, _: PlainVGGBlock(i, o, s), 1, widths=(4, 6), depths=(2, 1)),
              VGGNet(vgg_block, 1, widths=(4, 6), depths=(2, 1))),
             (plain_ghost, csla_ghost(1, [random_scales(m.scale_conv.numel(), gen, one_by_one=False, identity=True)
                                          for m in csla_ghost().modules() if isinstance(m, CSLAGhostModule)]))]
    x = torch.randn(4, 1, 8, 8, generator=gen)
    for make_plain, csla in pairs:
        plain = init_plain_from_csla(make_plain(), csla)
        target = torch.randn(output_shape(csla, x), generator=gen)
        train_steps(csla, torch.optim.SGD(csla.parameters(), lr=0.05, weight_decay=1e-3), x, target, 2)
        train_steps(plain, build_optimizer("repopt-sgd", plain, lr=0.05, weight_decay=1e-3), x, target, 2)
        assert_states_close(plain, init_plain_from_csla(make_plain(), csla))


# ----- build_optimizer -------------------------------------------------------------------------

def test_build_optimizer_unknown_name_lists_choices() -> None:
    with pytest.raises(UnknownNameError, match="unknown optimizer 'adam'; choose one of: sgd, repopt-sgd"):
        build_optimizer("adam", nn.Linear(2, 2), lr=0.1)


def test_build_optimizer_sgd_and_repopt() -> None:
    plain = plain_ghost()
    assert type(build_optimizer("sgd", plain, lr=0.1)) is torch.optim.SGD
    opt = build_optimizer("repopt-sgd", plain, lr=0.1)
    assert isinstance(opt, RepOptSGD)
    assert len(opt.grad_mults) == sum(isinstance(m, PlainGhostModule) for m in plain.modules())


def test_repopt_sgd_needs_repopt_blocks() -> None:
    with pytest.raises(ValueError, match="repghost or repopt_vgg"):
        build_optimizer("repopt-sgd", resnet_small(), lr=0.1)

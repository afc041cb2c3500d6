"""RepOpt-VGG and RepGhost backbones: merging, the Hyper-Search flow, registry-wide smoke test."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fedsim.models.repghost import csla_ghost, plain_ghost
from fedsim.models.repopt_vgg import (CSLAVGGBlock, csla_vgg, init_plain_from_csla, plain_vgg,
                                      repopt_vgg, repvgg_csla)
from fedsim.config import load_config
from fedsim.data import digits
from fedsim.optim import BranchScales, ProxyData, extract_scales, grad_mults, hyper_search, search_scales
from fedsim.registry import MODELS
from fedsim.factory import task_for

pytestmark = pytest.mark.timeout(120)

OURS = ["repopt_vgg", "repvgg_csla", "repvgg_hs", "repghost", "repghost_csla", "repghost_hs"]


def randomised(csla: nn.Module, seed: int) -> nn.Module:
    """``csla`` with random scales, identity weights and BN statistics (not the init values)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in csla.state_dict().items():
            if name.endswith(("scale_conv", "scale_1x1", "scale_identity", "running_var")):
                tensor.copy_(0.3 + 1.2 * torch.rand(tensor.shape, generator=gen))
            elif name.endswith("running_mean"):
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.1)
    return csla


@pytest.mark.parametrize(("make_csla", "make_plain"), [
    (csla_vgg, plain_vgg),  # 3×3 + 1×1 + identity blocks -> one 3×3 kernel
    (csla_ghost, plain_ghost),  # scaled depthwise + identity -> one depthwise kernel
])
@pytest.mark.parametrize("train_mode", [False, True])
def test_merged_model_outputs_equal_csla_outputs(make_csla, make_plain, train_mode: bool) -> None:
    # Prepare
    torch.manual_seed(0)
    csla = randomised(make_csla(), seed=1).train(train_mode)
    plain = init_plain_from_csla(make_plain(), csla).train(train_mode)
    x = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    # Execute
    with torch.no_grad():
        want, got = csla(x), plain(x)
    # Assert
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_merged_kernel_by_hand() -> None:
    # 2 channels, s3 = (2, 3), s1 = (0.5, 1), identity d = (1.5, 0.5); W3 = 1, W1 = 1
    block = CSLAVGGBlock(2, 2, 1, scales=BranchScales(torch.tensor([2.0, 3.0]), torch.tensor([0.5, 1.0]),
                                                      torch.tensor([1.5, 0.5])))
    with torch.no_grad():
        block.conv.weight.fill_(1.0)
        block.conv_1x1.weight.fill_(1.0)
    kernel = block.merged_kernel()
    assert kernel[0, 0, 0, 0] == 2.0 and kernel[1, 1, 2, 2] == 3.0
    assert kernel[0, 0, 1, 1] == 2.0 + 0.5 + 1.5 and kernel[0, 1, 1, 1] == 2.5
    assert kernel[1, 1, 1, 1] == 3.0 + 1.0 + 0.5 and kernel[1, 0, 1, 1] == 4.0


def test_csla_scales_constant_and_hyper_search_scales_trainable() -> None:
    csla, hs = csla_vgg(), csla_vgg(trainable_scales=True)
    csla_params = {n for n, _ in csla.named_parameters()}
    assert not any(n.endswith(("scale_conv", "scale_1x1")) for n in csla_params)
    assert any(n.endswith("scale_identity") for n in csla_params)  # the identity branch's weight
    assert sum(n.endswith(("scale_conv", "scale_1x1")) for n, _ in hs.named_parameters()) == 12


def test_hyper_search_moves_scales_and_returns_one_per_block() -> None:
    # Prepare
    torch.manual_seed(0)
    model = csla_vgg(trainable_scales=True)
    before = extract_scales(model)
    gen = torch.Generator().manual_seed(3)
    batches = [(torch.randn(4, 1, 8, 8, generator=gen), torch.randint(10, (4,), generator=gen))
               for _ in range(2)]
    # Execute
    after = hyper_search(model, batches, steps=3, lr=0.5)
    # Assert
    assert len(after) == len(before) == sum(isinstance(m, CSLAVGGBlock) for m in model.modules())
    assert any(not torch.equal(a.conv, b.conv) for a, b in zip(after, before))


DIGITS_PROXY = ProxyData(key="digits:28", batches=lambda bs, seed: digits.proxy_batches(bs, seed, image_size=28))


def test_search_is_deterministic_and_leaves_global_rng_alone() -> None:
    state = torch.get_rng_state()
    initial = search_scales(lambda: csla_vgg(trainable_scales=True), steps=2, proxy=None, batch_size=8)
    first = search_scales(lambda: csla_vgg(trainable_scales=True), steps=2, proxy=DIGITS_PROXY, batch_size=8)
    second = search_scales(lambda: csla_vgg(trainable_scales=True), steps=2, proxy=DIGITS_PROXY, batch_size=8)
    assert torch.equal(torch.get_rng_state(), state)
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a.conv, b.conv) and torch.equal(a.one_by_one, b.one_by_one)
    # without proxy data the official initial scales stay; with it the search moves them
    assert any(not torch.equal(a.conv, b.conv) for a, b in zip(initial, first))


def test_the_image_task_searches_on_its_own_data() -> None:
    # Prepare: the image task's proxy is its own (digits) data at its image size
    task = task_for(load_config(None, {"model.name": "repopt_vgg", "task.params": {"image_size": 16}}))
    proxy = task.proxy_data()
    x, y = next(proxy.batches(8, 0))
    # Execute
    plain = task.build_model().backbone
    # Assert
    assert proxy.key == "digits:16" and x.shape == (8, 1, 16, 16) and y.shape == (8,)
    assert torch.equal(plain.state_dict()["stages.1.1.scale_conv"],
                      repopt_vgg(proxy=proxy).state_dict()["stages.1.1.scale_conv"])
    assert not torch.equal(plain.state_dict()["stages.1.1.scale_conv"],
                           repopt_vgg().state_dict()["stages.1.1.scale_conv"])


def test_plain_model_starts_as_merged_csla_and_carries_scales() -> None:
    # the registered factories: same torch seed -> plain == merge(CSLA), scales in state_dict
    torch.manual_seed(5)
    plain = repopt_vgg(search_steps=2)
    torch.manual_seed(5)
    csla = repvgg_csla(search_steps=2)
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(plain.eval()(x), csla.eval()(x), atol=1e-5, rtol=1e-5)
    scales = extract_scales(csla)
    state = plain.state_dict()
    torch.testing.assert_close(state["stages.1.1.scale_conv"], scales[3].conv)
    torch.testing.assert_close(state["stages.1.1.scale_1x1"], scales[3].one_by_one)


def test_every_client_derives_the_same_masks() -> None:
    # two "clients" building the model from different seeds get identical masks
    torch.manual_seed(1)
    a = grad_mults(repopt_vgg(search_steps=2))
    torch.manual_seed(2)
    b = grad_mults(repopt_vgg(search_steps=2))
    assert len(a) == len(b) == 6
    for mask_a, mask_b in zip(a.values(), b.values(), strict=True):
        assert torch.equal(mask_a, mask_b)


@pytest.mark.parametrize("name", OURS)
def test_registered_model_forward_backward(name: str) -> None:
    # Prepare
    torch.manual_seed(0)
    model = MODELS.get(name)(in_channels=1)
    x = torch.randn(4, 1, 28, 28)
    # Execute
    features = model(x)
    features.square().mean().backward()
    # Assert
    assert features.shape == (4, model.out_dim)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())

"""The shared view augmentations: image warps, sound crops, clip crops and camera jitter."""

from __future__ import annotations

import pytest
import torch

from fedsim.data.augmentations import augment, camera_jitter, centre_crop, random_crop, temporal_crop

pytestmark = pytest.mark.timeout(60)


def _images(n: int = 6, size: int = 12, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- images

def test_augment_is_deterministic_given_the_generator_seed_and_keeps_shape():
    # Prepare
    x = _images()
    # Execute
    one = augment(x, torch.Generator().manual_seed(3))
    two = augment(x, torch.Generator().manual_seed(3))
    # Assert
    assert one.shape == x.shape and one.dtype == x.dtype
    assert torch.equal(one, two)
    assert 0.0 <= float(one.min()) and float(one.max()) <= 1.0  # bilinear warp, blend, ink <= 1


@pytest.mark.parametrize("n, h, w", [
    (1, 12, 12),  # case: a single image
    (5, 16, 16),  # case: the batch of a client
])
def test_augment_keeps_the_shape(n, h, w):
    # Prepare
    x = torch.rand(n, 1, h, w, generator=torch.Generator().manual_seed(0))
    # Execute
    out = augment(x, torch.Generator().manual_seed(1))
    # Assert
    assert out.shape == (n, 1, h, w)
    assert torch.isfinite(out).all()


def test_augment_refuses_non_square_images():
    with pytest.raises(ValueError, match="square images, got 12x16"):
        augment(torch.rand(3, 1, 12, 16), torch.Generator().manual_seed(1))


def test_two_draws_give_two_different_views():
    # Prepare
    x, gen = _images(), torch.Generator().manual_seed(3)
    # Execute
    first, second = augment(x, gen), augment(x, gen)
    # Assert: every sample differs between the views and from the input
    assert all(not torch.allclose(a, b) for a, b in zip(first, second))
    assert not torch.allclose(first, x)


def test_augment_leaves_the_global_rng_alone():
    # Prepare
    before = torch.get_rng_state()
    # Execute
    augment(_images(), torch.Generator().manual_seed(0))
    # Assert
    assert torch.equal(torch.get_rng_state(), before)


def test_zero_strength_only_scales_the_ink():
    # Prepare
    x = _images(4)
    # Execute
    out = augment(x, torch.Generator().manual_seed(1), strength=0.0)
    # Assert: no geometry, no thickness -- each image is x times one factor in [0.6, 1]
    factor = (out * x).flatten(1).sum(1) / (x * x).flatten(1).sum(1)
    torch.testing.assert_close(out, x * factor.view(-1, 1, 1, 1), atol=1e-5, rtol=1e-5)
    assert ((0.6 <= factor) & (factor <= 1.0)).all()


# ---------------------------------------------------------------- sounds

def test_random_and_centre_crops_take_windows_of_the_clip():
    # Prepare: each clip is 0..9 plus 100 × its index, so a window shows where it came from
    wave = torch.arange(10.0).repeat(3, 1) + 100 * torch.arange(3.0)[:, None]
    # Execute
    crop = random_crop(wave, 4, torch.Generator().manual_seed(0))
    # Assert: consecutive samples of the right clip
    assert crop.shape == (3, 4)
    assert torch.equal(crop.diff(dim=1), torch.ones(3, 3))
    assert torch.equal((crop[:, 0] // 100), torch.arange(3.0))
    assert torch.equal(centre_crop(wave, 4)[0], torch.tensor([3.0, 4.0, 5.0, 6.0]))




# ---------------------------------------------------------------- video clips

def test_temporal_crop_and_camera_jitter_keep_a_clips_frames_in_order():
    # Prepare: clip i's frame t holds the value 10·i + t
    clips = (10 * torch.arange(3.0)[:, None] + torch.arange(6.0)[None, :])[:, None, :, None, None].expand(3, 1, 6, 2, 2)
    # Execute
    crop = temporal_crop(clips, 4, torch.Generator().manual_seed(0))
    jit = camera_jitter(torch.full((2, 1, 3, 4, 4), 0.5), torch.Generator().manual_seed(0))
    # Assert: 4 consecutive frames of the same clip, from a start in 0..2
    for i in range(3):
        start = float(crop[i, 0, 0, 0, 0]) - 10 * i
        assert start in (0.0, 1.0, 2.0)
        assert crop[i, 0, :, 0, 0].tolist() == [10 * i + start + k for k in range(4)]
    # a flat grey clip stays in [0, 1] and changes with gain/offset/noise, per clip
    assert 0.0 <= float(jit.min()) and float(jit.max()) <= 1.0
    assert not torch.allclose(jit[0].mean(), jit[1].mean())

"""Clip order, playback speed and colourisation losses checked on tiny hand-made clips."""

from __future__ import annotations

import math

import pytest
import torch

from fedsim.losses.clip_order import ClipOrderHead, permutations, shuffled_subclips
from fedsim.losses.colorization import psnr, temporal_consistency_loss
from fedsim.losses.playback_speed import speed_views

pytestmark = pytest.mark.timeout(30)


def frame_numbered(n: int, t: int) -> torch.Tensor:
    """Clips ``(n, 2, t, 2, 2)`` whose every pixel holds 100·clip + frame index."""
    values = 100 * torch.arange(n)[:, None] + torch.arange(t)[None, :]  # (n, t)
    return values[:, None, :, None, None].float().expand(n, 2, t, 2, 2).contiguous()


def test_permutations_are_all_orders_in_itertools_order():
    perms = permutations(3)
    assert perms.tolist() == [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]]
    assert len(permutations(4)) == 24


def test_shuffled_subclips_hold_the_sub_clip_their_permutation_names():
    # Prepare: 3 sub-clips of 2 frames 1 apart span 2+1+2+1+2 = 8 frames of a 10-frame clip
    clips = frame_numbered(6, 10)
    # Execute
    sub, label = shuffled_subclips(clips, k=3, frames=2, gap=1, generator=torch.Generator().manual_seed(0))
    # Assert: position p shows sub-clip perm[p], frames offset + 3·perm[p] + (0, 1)
    assert sub.shape == (6, 3, 2, 2, 2, 2)
    perms = permutations(3)
    for i in range(6):
        frames = sub[i, :, 0, :, 0, 0] - 100 * i  # (k, frames)
        offset = int(frames.min())  # the sub-clip 0 starts at the offset
        assert 0 <= offset <= 2
        expected = [[offset + 3 * int(s), offset + 3 * int(s) + 1] for s in perms[label[i]]]
        assert frames.tolist() == expected


def test_shuffled_subclips_labels_cover_the_permutations_and_refuse_short_clips():
    _, label = shuffled_subclips(frame_numbered(600, 8), k=3, frames=2, gap=1,
                                 generator=torch.Generator().manual_seed(1))
    assert set(label.tolist()) == set(range(6))
    with pytest.raises(ValueError, match="need 8 frames"):
        shuffled_subclips(frame_numbered(2, 7), k=3, frames=2, gap=1, generator=torch.Generator())


def test_clip_order_head_gives_one_logit_per_permutation():
    head = ClipOrderHead(5, k=3, pair_dim=4)
    assert head(torch.randn(2, 3, 5)).shape == (2, 6) and len(head.pairs) == 3


def test_speed_views_take_every_s_th_frame():
    clips = frame_numbered(50, 13)
    views, label = speed_views(clips, speeds=(1, 2, 3), frames=5, generator=torch.Generator().manual_seed(0))
    assert views.shape == (50, 2, 5, 2, 2) and set(label.tolist()) == {0, 1, 2}
    for i in range(50):
        frames = views[i, 0, :, 0, 0] - 100 * i
        stride = (1, 2, 3)[int(label[i])]
        assert torch.equal(frames.diff(), torch.full((4,), float(stride)))
        assert 0 <= frames[0] and frames[-1] <= 12
    with pytest.raises(ValueError, match="need 13 frames"):
        speed_views(frame_numbered(1, 12), speeds=(1, 3), frames=5, generator=torch.Generator())


def test_temporal_consistency_is_zero_on_a_static_clip_and_positive_on_a_flickering_one():
    # Prepare: a static grey clip; a colour prediction that is constant, and one that flickers
    grey = torch.full((1, 1, 4, 2, 2), 0.5)
    static = torch.full((1, 3, 4, 2, 2), 0.3)
    flicker = static.clone()
    flicker[:, :, 1::2] = 0.7  # frames 1 and 3 jump by 0.4
    # Execute / Assert
    assert float(temporal_consistency_loss(static, grey)) == 0.0
    # short: 3 neighbouring pairs, each |Δ| = 0.4, mask 1 -> 0.4;
    # long: frames 2, 3 against frame 0: |Δ| = 0, 0.4 -> 0.2
    assert float(temporal_consistency_loss(flicker, grey)) == pytest.approx(0.6)
    assert float(temporal_consistency_loss(flicker, grey, long_term=False)) == pytest.approx(0.4)


def test_temporal_consistency_forgives_change_where_the_grey_input_changed():
    # a frame whose grey input changed by 0.2 gets mask exp(-50 · 0.04) = exp(-2)
    grey = torch.tensor([0.5, 0.7]).view(1, 1, 2, 1, 1)
    pred = torch.tensor([0.0, 1.0]).view(1, 1, 2, 1, 1)
    assert float(temporal_consistency_loss(pred, grey, long_term=False)) == pytest.approx(math.exp(-2), rel=1e-5)


def test_psnr_matches_its_definition():
    target = torch.zeros(2, 3, 2, 2, 2)
    pred = target.clone()
    pred[0] += 0.1  # MSE 0.01 -> 20 dB
    pred[1] += 0.5  # MSE 0.25 -> 6.0206 dB
    assert psnr(pred, target).tolist() == pytest.approx([20.0, 10 * math.log10(4)], rel=1e-5)

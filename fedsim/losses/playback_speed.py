"""Playback-speed prediction: which of a few speeds a clip is played at.

Benaim et al., "SpeedNet: Learning the Speediness in Videos", arXiv 2004.06130, and the
playback-rate pretext of Yao et al., "Video Playback Rate Perception", arXiv 2006.11476: a
clip is sampled with a frame stride ``s`` from a set of speeds (1 = normal, 2 = twice as
fast, ...) and the encoder plus a linear head classifies ``s``. Here a view is ``frames``
frames taken every ``s`` frames from a random start.
"""

from __future__ import annotations

import torch


def speed_views(clips: torch.Tensor, *, speeds: tuple[int, ...], frames: int,
                generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One view per clip of ``clips`` ``(n, c, t, h, w)`` at a random speed of ``speeds``.

    View ``v`` holds frames ``o, o + s, ..., o + (frames − 1)·s`` of its clip for a random
    start ``o``. Returns the views ``(n, c, frames, h, w)`` and labels ``(n,)`` indexing
    ``speeds``.
    """
    n, t = clips.shape[0], clips.shape[2]
    if not speeds or min(speeds) < 1:
        raise ValueError(f"speeds must be positive frame strides (got {speeds})")
    need = (frames - 1) * max(speeds) + 1
    if need > t:
        raise ValueError(f"playback speed: {frames} frames at speed {max(speeds)} need {need} frames, "
                         f"the clips have {t}")
    label = torch.randint(0, len(speeds), (n,), generator=generator)
    stride = torch.as_tensor(speeds)[label]  # (n,)
    span = (frames - 1) * stride + 1
    offset = (torch.rand(n, generator=generator) * (t - span + 1)).long()  # uniform in [0, t - span]
    idx = offset[:, None] + stride[:, None] * torch.arange(frames)  # (n, frames)
    views = clips[torch.arange(n)[:, None], :, idx]  # (n, frames, c, h, w)
    return views.permute(0, 2, 1, 3, 4).contiguous(), label

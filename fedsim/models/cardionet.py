"""CardioNet-lite: a two-branch late-fusion heart-rate network (after CardioLive, arXiv 2502.00702).

Each branch reads one stream on the common 25 Hz timeline (see
:mod:`fedsim.data.cardio_timeline`) and scores a grid of BPM values:

* ``video``: the pooled skin colour ``(n, 3, T)``; ``audio``: heart-sound log-mel bands
  ``(n, 16, T)``;
* temporal convolutions (Conv1d + BN + ReLU, 'same' padding, dilations 1, 2, 4) mix the
  input channels into ``width`` learned traces (``(n, width, T)``);
* a fixed Hann-windowed DFT evaluated at the BPM grid turns each trace into its power
  spectrum ``(n, width, K)`` (log-compressed): the spectral features;
* convolutions along the frequency axis, then a linear map across it (so a harmonic can
  vote for its fundamental: S1 and S2 put energy at twice the heart rate), give logits over
  the grid ``(n, K)``.

Late fusion adds the branches' logits with learned per-branch weights; the estimate is the
soft-argmax ``Σ softmax(logits)·bpm``. ``modalities`` ``"av" | "video" | "audio"`` builds
both branches or one (the ablations). The encoder is the branches (state-dict prefixes
``video.`` and ``audio.``); ``fusion.`` is the head.

The paper's CardioNet is larger (2D convs on video and spectrograms); this is the CPU-sized
form that keeps its shape: per-stream temporal + spectral features, fused late.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from fedsim.registry import register_model

BRANCH_INPUTS = {"video": 3, "audio": 16}


class SpectralBranch(nn.Module):
    """Temporal convs -> power spectrum at the BPM grid -> frequency-axis layers -> logits ``(n, K)``."""

    def __init__(self, in_channels: int, *, width: int, steps: int, rate: float, bpm: torch.Tensor) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for dilation in (1, 2, 4):
            layers += [nn.Conv1d(c, width, 5, padding=2 * dilation, dilation=dilation, bias=False),
                       nn.BatchNorm1d(width), nn.ReLU(inplace=True)]
            c = width
        self.temporal = nn.Sequential(*layers)
        t = torch.arange(steps, dtype=torch.float32) / rate
        window = torch.hann_window(steps, periodic=False)
        angle = 2 * math.pi * torch.outer(t, bpm / 60.0)  # (T, K)
        self.register_buffer("dft_cos", window[:, None] * torch.cos(angle), persistent=False)
        self.register_buffer("dft_sin", window[:, None] * torch.sin(angle), persistent=False)
        k = len(bpm)
        self.spectral = nn.Sequential(nn.Conv1d(width, width, 5, padding=2), nn.BatchNorm1d(width),
                                      nn.ReLU(inplace=True), nn.Conv1d(width, 1, 1))
        self.across = nn.Linear(k, k)
        nn.init.zeros_(self.across.weight)  # starts as the identity map (residual below)
        nn.init.zeros_(self.across.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.temporal(x)  # (n, width, T)
        h = h - h.mean(-1, keepdim=True)
        power = (h @ self.dft_cos) ** 2 + (h @ self.dft_sin) ** 2  # (n, width, K)
        power = torch.log1p(power / power.mean(-1, keepdim=True).clamp_min(1e-6))
        logits = self.spectral(power).squeeze(1)  # (n, K)
        return logits + self.across(logits)


class CardioNetLite(nn.Module):
    """Late fusion of per-stream spectral branches; ``forward(batch)`` returns logits over ``bpm_grid``.

    Parameters
    ----------
    modalities
        ``"av"`` (both branches), ``"video"`` or ``"audio"``.
    steps, rate
        Timeline samples per window and their rate (Hz).
    width
        Learned traces per branch.
    bpm_grid
        The BPM values scored (e.g. 40..170 in 1-BPM steps).
    """

    def __init__(self, *, modalities: str = "av", steps: int, rate: float, width: int = 16,
                 bpm_grid: torch.Tensor) -> None:
        super().__init__()
        if modalities not in ("av", "video", "audio"):
            raise ValueError(f"modalities {modalities!r}; choose one of: av, video, audio")
        self.streams = ("video", "audio") if modalities == "av" else (modalities,)
        self.register_buffer("bpm_grid", bpm_grid.float(), persistent=False)
        for s in self.streams:
            self.add_module(s, SpectralBranch(BRANCH_INPUTS[s], width=width, steps=steps, rate=rate,
                                              bpm=self.bpm_grid))
        self.fusion = nn.Parameter(torch.ones(len(self.streams)))  # one weight per branch

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = [getattr(self, s)(batch[s]) for s in self.streams]  # each (n, K)
        return sum(w * z for w, z in zip(self.fusion, logits))

    def estimate(self, logits: torch.Tensor) -> torch.Tensor:
        """Soft-argmax BPM ``(n,)`` of fused logits ``(n, K)``."""
        return logits.softmax(-1) @ self.bpm_grid


@register_model("cardionet_lite", input="av")
def cardionet_lite(in_channels: int = 1, *, modalities: str = "av", steps: int, rate: float, width: int = 16,
                   bpm_grid: torch.Tensor) -> CardioNetLite:
    """CardioNet-lite: per-stream spectral branches over a BPM grid, late fusion (task cardio).

    Its inputs are the cardio task's timeline streams (``input="av"``), so only that task
    builds it; ``in_channels`` is the registry's common argument and unused.
    """
    return CardioNetLite(modalities=modalities, steps=steps, rate=rate, width=width, bpm_grid=bpm_grid)

"""Photo views for image folders: SimCLR's crop-and-colour augmentations, per sample.

The image task's default views (:func:`fedsim.data.augmentations.augment`) vary what the
bundled digit writers vary — slant, stroke, ink on a black page. A folder of photos (or of
anything shot on varied backgrounds) varies in framing and colour instead, so with
``task.params.augmentations: photo`` the task draws :func:`photo_augment`: the augmentations
SimCLR (Chen et al., arXiv 2002.05709, appendix A) found to matter, a random resized crop with
a horizontal flip and a colour distortion (brightness, contrast, saturation, hue jitter with
probability 0.8, grey with probability 0.2). Written on ``F.affine_grid`` and tensor
arithmetic instead of ``torchvision.transforms.v2`` because v2 draws one parameter set per
call from the global RNG; here every parameter comes from ``generator``, per sample, at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from fedsim.data.augmentations import LUMA


@dataclass(frozen=True)
class PhotoRanges:
    """The draws of :func:`photo_augment` (SimCLR's CIFAR settings, colour strength 0.5)."""

    min_area: float = 0.25  # random resized crop: area share U(min_area, 1) ...
    max_log_aspect: float = math.log(4 / 3)  # ... aspect exp(U(-a, a))
    flip: float = 0.5  # probability of a horizontal flip
    jitter: float = 0.8  # probability of the colour jitter
    brightness: float = 0.4  # factors U(1 - b, 1 + b), as torchvision's ColorJitter
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1  # turns of the hue circle, U(-h, h)
    grey: float = 0.2  # probability of a grey view


def _crop_theta(n: int, generator: torch.Generator, strength: float, r: PhotoRanges) -> torch.Tensor:
    """``(n, 2, 3)`` sampling matrices: a random crop of the canvas, optionally mirrored."""
    area = 1 - torch.rand(n, generator=generator) * (1 - r.min_area) * min(strength, 1.0)
    log_aspect = (torch.rand(n, generator=generator) * 2 - 1) * r.max_log_aspect * strength
    sx = (area.sqrt() * torch.exp(log_aspect / 2)).clamp(max=1)
    sy = (area.sqrt() * torch.exp(-log_aspect / 2)).clamp(max=1)
    tx = (torch.rand(n, generator=generator) * 2 - 1) * (1 - sx)
    ty = (torch.rand(n, generator=generator) * 2 - 1) * (1 - sy)
    sign = torch.where(torch.rand(n, generator=generator) < r.flip, -1.0, 1.0)
    zero = torch.zeros(n)
    return torch.stack([torch.stack([sx * sign, zero, tx], -1), torch.stack([zero, sy, ty], -1)], -2)


def _grey(x: torch.Tensor) -> torch.Tensor:
    """Luminance ``(n, 1, h, w)`` of RGB ``x`` (ITU-R 601), or ``x`` itself if one channel."""
    if x.shape[1] == 1:
        return x
    return LUMA[0] * x[:, :1] + LUMA[1] * x[:, 1:2] + LUMA[2] * x[:, 2:3]


def _rotate_hue(x: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    """Rotate the chroma of RGB ``x`` by ``turns`` of the circle, in YIQ space (luma kept)."""
    yiq = torch.tensor([LUMA, [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    angle = turns * 2 * math.pi
    cos, sin = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(cos), torch.zeros_like(cos)
    rot = torch.stack([torch.stack([one, zero, zero], -1), torch.stack([zero, cos, -sin], -1),
                       torch.stack([zero, sin, cos], -1)], -2)  # (n, 3, 3)
    m = torch.linalg.inv(yiq) @ rot @ yiq
    return torch.einsum("nij,njhw->nihw", m, x)


def _jitter(x: torch.Tensor, generator: torch.Generator, strength: float, r: PhotoRanges) -> torch.Tensor:
    n, c = x.shape[:2]

    def factor(width: float) -> torch.Tensor:
        return (1 + (torch.rand(n, generator=generator) * 2 - 1) * width * strength).view(n, 1, 1, 1)

    brightness, contrast, saturation = factor(r.brightness), factor(r.contrast), factor(r.saturation)
    turns = (torch.rand(n, generator=generator) * 2 - 1) * r.hue * strength
    out = x * brightness
    mean_luma = _grey(out).mean((2, 3), keepdim=True)
    out = (out - mean_luma) * contrast + mean_luma
    if c == 3:
        luma = _grey(out)
        out = (out - luma) * saturation + luma
        out = _rotate_hue(out, turns)
    return out.clamp(0, 1)


def photo_augment(x: torch.Tensor, generator: torch.Generator, strength: float = 1.0,
                  ranges: PhotoRanges = PhotoRanges()) -> torch.Tensor:
    """One random view of every image of ``x`` ``(n, c, s, s)`` in [0, 1]: a random resized crop
    (area, aspect, position; mirrored with probability ``ranges.flip``) resampled to ``s``
    px, then with probability ``ranges.jitter`` a colour jitter and with probability
    ``ranges.grey`` a grey image. ``strength`` scales the crop and jitter ranges."""
    n, c, h, w = x.shape
    r = ranges
    grid = F.affine_grid(_crop_theta(n, generator, strength, r), [n, c, h, w], align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    jittered = _jitter(out, generator, strength, r)
    on = (torch.rand(n, generator=generator) < r.jitter).view(n, 1, 1, 1)
    out = torch.where(on, jittered, out)
    grey = (torch.rand(n, generator=generator) < r.grey).view(n, 1, 1, 1)
    return torch.where(grey, _grey(out).expand_as(out), out)


def spectrogram_crop(spec: torch.Tensor, generator: torch.Generator,
                     scale: tuple[float, float] = (0.6, 1.5)) -> torch.Tensor:
    """A random resized crop of every log-mel ``(n, 1, n_mels, frames)``, back to its size:
    BYOL-A's augmentation for recordings (Niizumi et al., arXiv 2103.06695, section 3.3).

    Per sample and per axis a crop of U(``lo``, ``hi``) times the axis (above 1 reaches past
    the edges, which repeat) at a random position: on the time axis a tempo change, on the
    mel axis a shift and stretch of the spectrum, which a change of pitch or voice makes."""
    n = spec.shape[0]
    lo, hi = scale

    def axis() -> tuple[torch.Tensor, torch.Tensor]:
        size = lo + torch.rand(n, generator=generator) * (hi - lo)
        return size, (torch.rand(n, generator=generator) * 2 - 1) * (1 - size).abs()

    (st, tt), (sf, tf) = axis(), axis()
    zero = torch.zeros(n)
    theta = torch.stack([torch.stack([st, zero, tt], -1), torch.stack([zero, sf, tf], -1)], -2)
    grid = F.affine_grid(theta, list(spec.shape), align_corners=False)
    return F.grid_sample(spec, grid, mode="bilinear", padding_mode="border", align_corners=False)

"""The bundled image population: scikit-learn's handwritten digits re-drawn by per-client writers.

``sklearn.datasets.load_digits`` ships 1,797 real 8×8 digit images with the library (no
download). They are split once, seeded and stratified, into a *client pool* and a labelled
*held-out* set that no client ever sees. Client ``c`` holds a label-skewed subset of the pool
(:mod:`fedsim.data.partition`), resampled to its own size and rendered at ``image_size`` px
in its own *writer style* — slant (shear), rotation, scale, aspect, position, stroke
thickness, an elastic wobble and ink intensity — drawn from a generator seeded by
``(seed, client id)``: the feature skew of FEMNIST's natural writers. The held-out set is
rendered with a fresh random style per sample, so style is a real nuisance at evaluation and
only an encoder invariant to it scores well (see docs/tasks/image.md).

Everything is a pure function of its arguments; nothing touches global RNG state.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from fedsim.data.partition import client_base_indices

NUM_CLASSES = 10
EVAL_FRACTION = 1 / 3  # share of the base images held out for evaluation
_STREAM_CLIENT, _STREAM_EVAL, _STREAM_SPLIT = 1, 2, 3


@dataclass(frozen=True)
class StyleScale:
    """Spread of the writer-style distribution; ``strength`` multiplies every geometric term."""

    strength: float = 1.0
    rotation_deg: float = 15.0  # std of the writer's rotation
    shear: float = 0.3  # std of the writer's slant (x += shear * y)
    log_scale: float = 0.12  # std of log size
    log_aspect: float = 0.12  # std of log width/height
    translate: float = 0.12  # max shift, in half-canvas units
    elastic: float = 0.06  # std of the coarse displacement field, in half-canvas units
    jitter: float = 0.3  # per-sample variation within a writer, relative to the above
    box: float = 20 / 28  # the digit's box on the canvas (MNIST: 20 px in 28 px)


def _rng(seed: int, stream: int, key: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed, stream, key])


@lru_cache(maxsize=1)
def load_base() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 base images as float32 ``(n, 8, 8)`` in [0, 1] and int64 labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return (digits.images / 16.0).astype(np.float32), digits.target.astype(np.int64)


@lru_cache(maxsize=8)
def split_indices(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified split of the base images into (client pool, eval bank, eval query) indices."""
    _, labels = load_base()
    rng = _rng(seed, _STREAM_SPLIT)
    pool, bank, query = [], [], []
    for cls in range(NUM_CLASSES):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        n_eval = int(round(len(idx) * EVAL_FRACTION))
        bank.append(idx[: n_eval // 2])
        query.append(idx[n_eval // 2 : n_eval])
        pool.append(idx[n_eval:])
    return tuple(np.sort(np.concatenate(p)) for p in (pool, bank, query))  # type: ignore[return-value]


def draw_styles(rng: np.random.Generator, n: int, scale: StyleScale, *,
                writer: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Draw ``n`` per-sample styles: around ``writer`` (small jitter) or fresh (``writer=None``).

    Returns arrays of shape ``(n,)`` (``(n, 2, 3, 3)`` for the elastic field's coarse grid).
    """
    s = scale.strength * (scale.jitter if writer is not None else 1.0)
    base = writer or {
        "rotation": np.zeros(1), "shear": np.zeros(1), "log_scale": np.zeros(1),
        "log_aspect": np.zeros(1), "tx": np.zeros(1), "ty": np.zeros(1),
        "elastic": np.zeros((1, 2, 3, 3)),
        "threshold": rng.uniform(0.2, 0.6, size=n), "ink": rng.uniform(0.6, 1.0, size=n),
    }
    style = {
        "rotation": base["rotation"] + rng.normal(0, math.radians(scale.rotation_deg) * s, n),
        "shear": base["shear"] + rng.normal(0, scale.shear * s, n),
        "log_scale": base["log_scale"] + rng.normal(0, scale.log_scale * s, n),
        "log_aspect": base["log_aspect"] + rng.normal(0, scale.log_aspect * s, n),
        "tx": base["tx"] + rng.uniform(-1, 1, n) * scale.translate * s,
        "ty": base["ty"] + rng.uniform(-1, 1, n) * scale.translate * s,
        "elastic": base["elastic"] + rng.normal(0, scale.elastic * s, (n, 2, 3, 3)),
        "threshold": np.broadcast_to(base["threshold"], (n,)).copy(),
        "ink": np.broadcast_to(base["ink"], (n,)).copy(),
    }
    return style


def draw_writer(rng: np.random.Generator, scale: StyleScale) -> dict[str, np.ndarray]:
    """One writer's style: every per-sample style of one client jitters around it."""
    writer = draw_styles(rng, 1, scale)
    writer["threshold"] = rng.uniform(0.2, 0.6, size=1)
    writer["ink"] = rng.uniform(0.6, 1.0, size=1)
    return writer


def affine_theta(rotation: torch.Tensor, shear: torch.Tensor, log_scale: torch.Tensor,
                 log_aspect: torch.Tensor, tx: torch.Tensor, ty: torch.Tensor,
                 source_zoom: float = 1.0) -> torch.Tensor:
    """Per-sample ``(n, 2, 3)`` matrices for ``F.affine_grid`` that *draw* the source warped.

    The forward warp is ``u_out = R(rotation) · Shear(shear) · diag(sx, sy) · u + t``; the
    sampling grid needs its inverse, times ``source_zoom`` (canvas / digit box).
    """
    cos, sin = torch.cos(rotation), torch.sin(rotation)
    sx = torch.exp(log_scale + log_aspect / 2)
    sy = torch.exp(log_scale - log_aspect / 2)
    # forward M = R @ Sh @ diag(sx, sy), with Sh = [[1, shear], [0, 1]]
    m00, m01 = cos * sx, (cos * shear - sin) * sy
    m10, m11 = sin * sx, (sin * shear + cos) * sy
    det = m00 * m11 - m01 * m10
    inv = torch.stack([torch.stack([m11, -m01], -1), torch.stack([-m10, m00], -1)], -2) / det[:, None, None]
    inv = inv * source_zoom
    shift = -(inv @ torch.stack([tx, ty], -1)[..., None])
    return torch.cat([inv, shift], -1)


def elastic_field(coarse: torch.Tensor, size: int) -> torch.Tensor:
    """Smooth displacement ``(n, size, size, 2)`` bicubically upsampled from ``(n, 2, g, g)``."""
    field = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=True)
    return field.permute(0, 2, 3, 1)


def warp(images: torch.Tensor, theta: torch.Tensor, displacement: torch.Tensor | None,
         size: int, *, mode: str = "bilinear") -> torch.Tensor:
    """Resample ``(n, 1, h, w)`` images through per-sample affine + displacement to ``size`` px."""
    grid = F.affine_grid(theta, [images.shape[0], 1, size, size], align_corners=False)
    if displacement is not None:
        grid = grid + displacement
    return F.grid_sample(images, grid, mode=mode, padding_mode="zeros", align_corners=False)


def stroke(field: torch.Tensor, threshold: torch.Tensor, ink: torch.Tensor,
           sharpness: float = 0.08) -> torch.Tensor:
    """Turn a smooth intensity field into strokes: a lower threshold draws thicker lines."""
    t = threshold.view(-1, 1, 1, 1)
    off = torch.sigmoid(-t / sharpness)
    out = (torch.sigmoid((field - t) / sharpness) - off) / (1 - off)
    return out.clamp_(0, 1) * ink.view(-1, 1, 1, 1)


def render(base: np.ndarray, style: dict[str, np.ndarray], size: int, box: float) -> torch.Tensor:
    """Draw 8×8 base images ``(n, 8, 8)`` in per-sample styles as ``(n, 1, size, size)`` float32."""
    t = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in style.items()}
    theta = affine_theta(t["rotation"], t["shear"], t["log_scale"], t["log_aspect"], t["tx"], t["ty"],
                         source_zoom=1 / box)
    field = warp(torch.as_tensor(base)[:, None], theta, elastic_field(t["elastic"], size), size,
                 mode="bicubic")
    return stroke(field, t["threshold"], t["ink"])


def client_seed_key(client_id: int) -> int:
    """A non-negative 63-bit key for the client's generator stream."""
    return int(client_id) & 0x7FFF_FFFF_FFFF_FFFF


def client_sample(client_id: int, *, seed: int, num_clients: int, partitioning: object,
                  size: int, min_samples: int, max_samples: int,
                  scale: StyleScale) -> tuple[torch.Tensor, torch.Tensor]:
    """Client ``client_id``'s rendered images ``(n, 1, size, size)`` and their labels ``(n,)``."""
    images, labels = load_base()
    pool, _, _ = split_indices(seed)
    local = pool[client_base_indices(labels[pool], client_id, num_clients, partitioning, seed)]
    rng = _rng(seed, _STREAM_CLIENT, client_seed_key(client_id))
    n = int(rng.integers(min_samples, max_samples + 1))
    chosen = rng.choice(local, size=n, replace=n > len(local))
    writer = draw_writer(rng, scale)
    x = render(images[chosen], draw_styles(rng, n, scale, writer=writer), size, scale.box)
    return x, torch.as_tensor(labels[chosen])


def eval_sample(*, seed: int, size: int, scale: StyleScale) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The held-out ``(bank_x, bank_y, query_x, query_y)``, each sample in a fresh random style."""
    images, labels = load_base()
    _, bank, query = split_indices(seed)
    out = []
    for part, idx in enumerate((bank, query)):
        rng = _rng(seed, _STREAM_EVAL, part)
        out += [render(images[idx], draw_styles(rng, len(idx), scale), size, scale.box), torch.as_tensor(labels[idx])]
    return tuple(out)  # type: ignore[return-value]


PROXY_BOX = 20 / 28  # side of the digit in the proxy images, as MNIST's 20 px box in 28 px


def proxy_batches(batch_size: int, generator_seed: int, *, image_size: int,
                  split_seed: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless labelled batches of the client pool (split ``split_seed``), upscaled, for
    RepOpt Hyper-Search (:class:`fedsim.optim.repopt.ProxyData`).

    The 8×8 images are resized to a 20/28 box centred on the canvas (MNIST's layout), without
    writer styles: a fixed proxy split, as the paper searches on CIFAR-100 for Tiny-ImageNet.
    """
    images, labels = load_base()
    pool = torch.as_tensor(split_indices(split_seed)[0])
    box = max(1, round(image_size * PROXY_BOX))
    x = F.interpolate(torch.as_tensor(images)[pool][:, None], size=(box, box), mode="bilinear",
                      align_corners=False)
    before = (image_size - box) // 2
    x = F.pad(x, (before, image_size - box - before) * 2)
    y = torch.as_tensor(labels)[pool]
    gen = torch.Generator().manual_seed(generator_seed)
    while True:
        idx = torch.randint(len(y), (batch_size,), generator=gen)
        yield x[idx].contiguous(), y[idx]

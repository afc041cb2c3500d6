"""The bundled video population: seeded moving-digit clips filmed by per-client cameras.

Each clip shows a *main* digit and ``1..MAX_DISTRACTORS`` smaller distractor digits (all
drawn from scikit-learn's real 8×8 digits, :mod:`fedsim.data.digits`) flying over a
coloured background, each on its own straight trajectory that bounces off the frame's
edges, at its own speed. Colours are drawn in HSV: the main digit's hue lies around a hue of
its class (``class_hue_spread`` wide; the way grass tends to be green, which is what makes
colourisation a semantic pretext, Zhang et al. arXiv 1603.08511), distractors and
backgrounds take any hue. The label of a clip is the main digit's class (used only for
evaluation).

Client ``c`` holds a label-skewed subset of the digits' client pool
(:func:`fedsim.data.partition.client_base_indices`), resampled to its own size and filmed by
its own camera — a **frame rate** (time between frames, so the same motion looks slower or
faster), a **brightness** gain and offset and a sensor **noise** level — each clip jittering
around it (the feature skew of real devices). Held-out clips come from the digits no client
sees, each filmed by a fresh random camera.

Clips are float32 ``(n, 3, frames, size, size)`` in [0, 1]. Everything is a pure function of
its arguments; nothing touches global RNG state.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from fedsim.data import digits
from fedsim.data.partition import client_base_indices

NUM_CLASSES = digits.NUM_CLASSES
MAX_DISTRACTORS = 2
_STREAM_CLIENT, _STREAM_CAMERA, _STREAM_EVAL = 21, 22, 23
CAMERA_FIELDS = ("frame_interval", "gain", "offset", "noise")


@dataclass(frozen=True)
class CameraScale:
    """Ranges of the per-client camera conditions; ``strength`` scales every nuisance (0: ideal)."""

    strength: float = 1.0
    frame_interval: tuple[float, float] = (0.6, 1.6)  # time units between frames (1 = nominal fps)
    gain: tuple[float, float] = (0.6, 1.3)
    offset: tuple[float, float] = (-0.1, 0.1)
    noise: tuple[float, float] = (0.0, 0.06)  # std of Gaussian sensor noise
    jitter: float = 0.15  # per-clip variation around a client's camera, as a share of each range

    def values(self, u: np.ndarray) -> dict[str, np.ndarray]:
        """Physical values ``{field: (n,)}`` of uniforms ``u`` ``(n, 4)``, ``strength`` applied."""
        s = self.strength
        col = {name: u[:, k] for k, name in enumerate(CAMERA_FIELDS)}

        def lerp(v: np.ndarray, lo_hi: tuple[float, float], ideal: float) -> np.ndarray:
            return ideal + s * (lo_hi[0] + v * (lo_hi[1] - lo_hi[0]) - ideal)

        return {"frame_interval": lerp(col["frame_interval"], self.frame_interval, 1.0),
                "gain": lerp(col["gain"], self.gain, 1.0), "offset": lerp(col["offset"], self.offset, 0.0),
                "noise": lerp(col["noise"], self.noise, 0.0)}


@dataclass(frozen=True)
class SceneScale:
    """How clips vary: object sizes and speeds (px per time unit at ``size`` 32), colour spread."""

    main_box: tuple[float, float] = (0.45, 0.6)  # side of the main digit, share of the frame
    distractor_box: tuple[float, float] = (0.25, 0.35)
    speed: tuple[float, float] = (0.6, 1.8)  # px per time unit at 32 px (scaled with size)
    class_hue_spread: float = 0.05  # the main digit's hue: class hue ± this (0..1 hue circle)
    distractors: int = MAX_DISTRACTORS  # distractor slots in use (0..MAX_DISTRACTORS)
    background_value: tuple[float, float] = (0.15, 0.5)  # brightness of the background
    shading: float = 0.15  # largest brightness tilt across the frame


def hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``(n,)`` hue, saturation, value in [0, 1] -> ``(n, 3)`` RGB (the standard hexcone formula;
    torchvision has it only as a private helper on images)."""
    k = (torch.tensor([5.0, 3.0, 1.0]) + 6 * h[:, None]) % 6
    return v[:, None] - v[:, None] * s[:, None] * (torch.minimum(k, 4 - k).clamp(0, 1))


def bounce(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """Positions ``x`` reflected into ``[lo, hi]`` (a ball bouncing between two walls)."""
    span = (hi - lo).clamp_min(1e-6)
    y = torch.remainder(x - lo, 2 * span)
    return lo + torch.where(y > span, 2 * span - y, y)


def _draw_objects(rng: np.random.Generator, n: int, labels: np.ndarray, scene: SceneScale,
                  pool: np.ndarray) -> list[dict[str, np.ndarray]]:
    """Per object slot (main first), ``n`` draws: base image id, box, start, velocity, colour."""
    slots = []
    for slot in range(1 + MAX_DISTRACTORS):
        main = slot == 0
        box = rng.uniform(*(scene.main_box if main else scene.distractor_box), size=n)
        hue = (labels / NUM_CLASSES + rng.uniform(-1, 1, n) * scene.class_hue_spread) % 1.0 if main \
            else rng.random(n)
        angle = rng.uniform(0, 2 * np.pi, n)
        speed = rng.uniform(*scene.speed, size=n)
        slots.append({"base": rng.choice(pool, size=n), "box": box, "start": rng.random((n, 2)),
                      "velocity": speed[:, None] * np.stack([np.cos(angle), np.sin(angle)], 1),
                      "hsv": np.stack([hue, rng.uniform(0.6, 1.0, n), rng.uniform(0.7, 1.0, n)], 1),
                      "present": np.ones(n) if main else (rng.random(n) < (0.9 if slot == 1 else 0.5)) * (slot <= scene.distractors)})
    return slots


def render(base_ids: np.ndarray, rng: np.random.Generator, camera_u: np.ndarray, *, frames: int, size: int,
           scene: SceneScale, camera: CameraScale, pool: np.ndarray) -> torch.Tensor:
    """Clips ``(n, 3, frames, size, size)`` whose main digits are the base images ``base_ids``.

    ``rng`` draws the scene (distractors from ``pool``, trajectories, colours, background) and
    the noise; ``camera_u`` ``(n, 4)`` are the camera uniforms of every clip.
    """
    images, labels = digits.load_base()
    n = len(base_ids)
    slots = _draw_objects(rng, n, labels[base_ids], scene, pool)
    slots[0]["base"] = np.asarray(base_ids)
    cam = camera.values(camera_u)
    t = torch.arange(frames, dtype=torch.float32)[None, :] * torch.as_tensor(cam["frame_interval"],
                                                                            dtype=torch.float32)[:, None]
    bg_hsv = torch.as_tensor(np.stack([rng.random(n), rng.uniform(0.2, 0.8, n), rng.uniform(*scene.background_value, size=n)], 1),
                             dtype=torch.float32)
    bg = hsv_to_rgb(*bg_hsv.T)[:, :, None, None, None]  # (n, 3, 1, 1, 1)
    ramp = torch.linspace(-1, 1, size)
    tilt = torch.as_tensor(rng.uniform(-scene.shading, scene.shading, (n, 2)), dtype=torch.float32)
    shade = 1 + tilt[:, 0, None, None] * ramp[None, :, None] + tilt[:, 1, None, None] * ramp[None, None, :]
    video = (bg * shade[:, None, None]).expand(n, 3, frames, size, size).clone()
    src = F.interpolate(torch.as_tensor(images)[:, None], size=(16, 16), mode="bilinear", align_corners=False)
    for obj in reversed(slots):  # distractors first, the main digit on top
        alpha = _object_alpha(obj, src, t, size) * torch.as_tensor(obj["present"], dtype=torch.float32)[:, None,
                                                                                                         None, None]
        colour = hsv_to_rgb(*torch.as_tensor(obj["hsv"], dtype=torch.float32).T)[:, :, None, None, None]
        video = video * (1 - alpha[:, None]) + colour * alpha[:, None]
    gain = torch.as_tensor(cam["gain"], dtype=torch.float32)[:, None, None, None, None]
    offset = torch.as_tensor(cam["offset"], dtype=torch.float32)[:, None, None, None, None]
    noise_std = torch.as_tensor(cam["noise"], dtype=torch.float32)[:, None, None, None, None]
    gen = torch.Generator().manual_seed(int(rng.integers(2**63)))
    noise = torch.randn(video.shape, generator=gen) * noise_std
    return (video * gain + offset + noise).clamp_(0, 1).contiguous()


def _object_alpha(obj: dict[str, np.ndarray], src: torch.Tensor, t: torch.Tensor, size: int) -> torch.Tensor:
    """Coverage ``(n, frames, size, size)`` of one object slot along its bouncing trajectory."""
    n, frames = t.shape
    box = torch.as_tensor(obj["box"], dtype=torch.float32)[:, None]  # share of the frame
    half = box  # half-side in normalised [-1, 1] units is box (side 2·box / 2)
    lo, hi = -1 + half, 1 - half
    start = lo[:, :, None] + torch.as_tensor(obj["start"], dtype=torch.float32)[:, None, :] * (hi - lo)[:, :, None]
    velocity = torch.as_tensor(obj["velocity"], dtype=torch.float32)[:, None, :] * (2 / 32)
    centre = bounce(start + velocity * t[:, :, None], lo[:, :, None], hi[:, :, None])  # (n, frames, 2)
    scale = 1 / box.expand(n, frames).reshape(-1)
    c = centre.reshape(-1, 2)
    zero = torch.zeros_like(scale)
    theta = torch.stack([torch.stack([scale, zero, -c[:, 0] * scale], 1),
                         torch.stack([zero, scale, -c[:, 1] * scale], 1)], 1)  # (n·frames, 2, 3)
    grid = F.affine_grid(theta, [n * frames, 1, size, size], align_corners=False)
    glyph = src[torch.as_tensor(obj["base"]).repeat_interleave(frames)]
    alpha = F.grid_sample(glyph, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return alpha.reshape(n, frames, size, size)


def _rng(seed: int, stream: int, key: int = 0) -> np.random.Generator:
    return np.random.default_rng([int(seed), stream, int(key) & 0x7FFF_FFFF_FFFF_FFFF])


def client_camera(client_id: int, *, seed: int) -> np.ndarray:
    """Client ``client_id``'s camera: uniforms ``(4,)`` (:data:`CAMERA_FIELDS`)."""
    return _rng(seed, _STREAM_CAMERA, client_id).random(len(CAMERA_FIELDS))


def client_clips(client_id: int, *, seed: int, num_clients: int, partitioning: object, frames: int, size: int,
                 min_clips: int, max_clips: int, scene: SceneScale = SceneScale(),
                 camera: CameraScale = CameraScale()) -> tuple[torch.Tensor, torch.Tensor]:
    """Client ``client_id``'s clips ``(n, 3, frames, size, size)`` and main-digit labels ``(n,)``."""
    if not 1 <= min_clips <= max_clips:
        raise ValueError(f"need 1 <= min_clips <= max_clips (got {min_clips}, {max_clips})")
    _, labels = digits.load_base()
    pool = digits.split_indices(seed)[0]
    local = pool[client_base_indices(labels[pool], client_id, num_clients, partitioning, seed)]
    rng = _rng(seed, _STREAM_CLIENT, client_id)
    n = int(rng.integers(min_clips, max_clips + 1))
    chosen = rng.choice(local, size=n, replace=n > len(local))
    u = client_camera(client_id, seed=seed)[None, :] + camera.jitter * rng.uniform(-1, 1, (n, len(CAMERA_FIELDS)))
    u = np.abs(u)
    u = np.where(u >= 1.0, np.clip(2.0 - u, 0.0, 1.0 - 1e-9), u)  # reflected into [0, 1)
    x = render(chosen, rng, u, frames=frames, size=size, scene=scene, camera=camera, pool=pool)
    return x, torch.as_tensor(labels[chosen])


def eval_clips(*, seed: int, frames: int, size: int, per_split: int, scene: SceneScale = SceneScale(),
               camera: CameraScale = CameraScale()) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Held-out ``(bank_x, bank_y, query_x, query_y)``: at most ``per_split`` clips each, main
    digits from the digits no client sees, each clip through a fresh random camera."""
    _, labels = digits.load_base()
    _, bank, query = digits.split_indices(seed)
    out: list[torch.Tensor] = []
    for part, ids in enumerate((bank, query)):
        rng = _rng(seed, _STREAM_EVAL, part)
        ids = np.sort(rng.permutation(ids)[:per_split])
        u = rng.random((len(ids), len(CAMERA_FIELDS)))
        out += [render(ids, rng, u, frames=frames, size=size, scene=scene, camera=camera, pool=ids),
                torch.as_tensor(labels[ids])]
    return tuple(out)  # type: ignore[return-value]

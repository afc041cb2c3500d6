"""The bundled audio population: seeded synthetic sounds recorded by per-client devices.

A fixed *virtual base set* holds ``BASE_PER_CLASS`` clips of each of the
:data:`CLASS_NAMES`; base clip ``i`` is class ``i // BASE_PER_CLASS`` with its own synthesis
parameters (pitch, rate, depth, timing, ...) drawn from ``default_rng([seed, stream])`` — no
waveform is stored, a clip is synthesised when a client asks for it. Rows
``0 .. POOL_PER_CLASS - 1`` of each class are the *client pool*; the next
``EVAL_PER_CLASS`` the held-out bank and the last ``EVAL_PER_CLASS`` the held-out query set,
which no client ever draws on (the rows are iid, so a fixed row split is a random split).

Client ``c`` holds a label-skewed subset of the pool (:mod:`fedsim.data.partition`),
resampled to its own size and heard through its own recording device
(:mod:`fedsim.data.sound_conditions`: gain, noise floor, microphone response, reverberation,
clipping), each clip jittering around it — the feature skew of real devices. Held-out clips
are each recorded in a fresh random condition, so the device is a real nuisance at
evaluation.

Classes (every one varies within its class; timing is relative to the clip length: a sound
lasts a class-dependent share of the clip, starts at a random time and has random attack and
release ramps):

=============  ===========================================================================
tone           a sine, 250–2000 Hz
chirp_up       exponential sweep up by ×2–×4 from 250–1000 Hz over the sound
chirp_down     the same, down, ending at 250–1000 Hz
vowel_a/i/u    glottal harmonic stack, f0 90–250 Hz gliding ±10 %, shaped by the vowel's
               three formants (Peterson & Barney means, each ±8 %)
noise_band     Gaussian noise in a band of 0.3–1.5 octaves centred at 400–5000 Hz
click_train    damped-sine clicks (1–4 kHz, 1–4 ms decay) at a regular 4–10 Hz
click_gallop   the same clicks in pairs 50–90 ms apart, the second softer, pairs at 1.8–3.5 Hz
tremolo        a 250–2000 Hz sine, amplitude-modulated at 3–12 Hz, depth 0.6–1
vibrato        a 250–2000 Hz sine, frequency-modulated at 4–8 Hz by ±3–8 %
dyad           two sines, the lower 200–1200 Hz, the upper ×1.25–1.6 of it
=============  ===========================================================================

Everything is a pure function of its arguments; nothing touches global RNG state.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from fedsim.data import sound_synth
from fedsim.data.partition import client_base_indices
from fedsim.data.sound_conditions import (CONDITION_FIELDS, ConditionScale, condition_values, draw_device,
                                          jitter_conditions, record)

__all__ = ["BASE_PER_CLASS", "CLASS_NAMES", "CONDITION_FIELDS", "ConditionScale", "EVAL_PER_CLASS",
           "NUM_CLASSES", "POOL_PER_CLASS", "SAMPLE_RATE", "base_labels", "clean_clips", "client_clips",
           "client_device", "client_items", "condition_values", "eval_clips", "split_indices"]

SAMPLE_RATE = sound_synth.SAMPLE_RATE
CLASS_NAMES = sound_synth.CLASS_NAMES
NUM_CLASSES = len(CLASS_NAMES)
POOL_PER_CLASS = 200  # base clips per class that clients draw on
EVAL_PER_CLASS = 100  # held-out clips per class in each of the bank and the query set (at most)
BASE_PER_CLASS = POOL_PER_CLASS + 2 * EVAL_PER_CLASS
MIN_CLIP_SECONDS = 0.1
_STREAM_BASE, _STREAM_CLIENT, _STREAM_DEVICE, _STREAM_EVAL = 11, 12, 13, 14


def _rng(seed: int, stream: int, key: int = 0) -> np.random.Generator:
    return np.random.default_rng([int(seed), stream, int(key)])


def _client_key(client_id: int) -> int:
    return int(client_id) & 0x7FFF_FFFF_FFFF_FFFF


def clip_samples(clip_seconds: float) -> int:
    """Samples in a clip of ``clip_seconds`` at :data:`SAMPLE_RATE`."""
    if not clip_seconds >= MIN_CLIP_SECONDS:
        raise ValueError(f"clip_seconds must be at least {MIN_CLIP_SECONDS} (got {clip_seconds})")
    return int(round(clip_seconds * SAMPLE_RATE))


@lru_cache(maxsize=1)
def base_labels() -> np.ndarray:
    """Labels ``(NUM_CLASSES * BASE_PER_CLASS,)`` int64 of the virtual base set (read-only)."""
    labels = np.repeat(np.arange(NUM_CLASSES, dtype=np.int64), BASE_PER_CLASS)
    labels.flags.writeable = False
    return labels


@lru_cache(maxsize=1)
def split_indices() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Base ids of the (client pool, eval bank, eval query): fixed rows of every class."""
    start = np.arange(NUM_CLASSES)[:, None] * BASE_PER_CLASS
    rows = np.arange(BASE_PER_CLASS)
    parts = (rows[:POOL_PER_CLASS], rows[POOL_PER_CLASS:POOL_PER_CLASS + EVAL_PER_CLASS],
             rows[POOL_PER_CLASS + EVAL_PER_CLASS:])
    out = tuple((start + p[None, :]).reshape(-1) for p in parts)
    for a in out:
        a.flags.writeable = False
    return out  # type: ignore[return-value]


@lru_cache(maxsize=8)
def base_parameters(seed: int) -> np.ndarray:
    """Every base clip's synthesis uniforms ``(n_base, sound_synth.NUM_PARAMS)`` for ``seed``."""
    params = _rng(seed, _STREAM_BASE).random((NUM_CLASSES * BASE_PER_CLASS, sound_synth.NUM_PARAMS))
    params.flags.writeable = False
    return params


def clean_clips(base_ids: np.ndarray, *, seed: int, clip_samples: int, variation: float = 1.0) -> torch.Tensor:
    """Base clips ``base_ids`` synthesised clean: float32 ``(n, clip_samples)``, peak 1.

    ``variation`` in [0, 1] scales the within-class spread of pitch, rate and depth (not timing).
    """
    ids = np.asarray(base_ids, dtype=np.int64).reshape(-1)
    return sound_synth.synthesise(base_labels()[ids], base_parameters(seed)[ids], clip_samples,
                                  noise_keys=[(int(seed), int(i)) for i in ids], variation=variation)


def client_items(client_id: int, *, seed: int, num_clients: int, partitioning: object,
                 min_clips: int, max_clips: int, classes: tuple[int, ...] | None = None) -> np.ndarray:
    """Base ids of client ``client_id``'s clips (with repeats when its shard is small);
    ``classes`` restricts the pool to those class ids (default: all)."""
    if not 1 <= min_clips <= max_clips:
        raise ValueError(f"need 1 <= min_clips <= max_clips (got {min_clips}, {max_clips})")
    pool = split_indices()[0]
    if classes is not None:
        pool = pool[np.isin(base_labels()[pool], classes)]
    local = pool[client_base_indices(base_labels()[pool], client_id, num_clients, partitioning, seed)]
    rng = _rng(seed, _STREAM_CLIENT, _client_key(client_id))
    n = int(rng.integers(min_clips, max_clips + 1))
    return rng.choice(local, size=n, replace=n > len(local))


def client_device(client_id: int, *, seed: int) -> np.ndarray:
    """Client ``client_id``'s recording device: uniforms ``(len(CONDITION_FIELDS),)``.

    ``condition_values(client_device(c, seed=s), scale)`` gives its physical values.
    """
    return draw_device(_rng(seed, _STREAM_DEVICE, _client_key(client_id)))


def client_clips(client_id: int, *, seed: int, num_clients: int, partitioning: object,
                 clip_seconds: float = 1.0, min_clips: int, max_clips: int,
                 conditions: ConditionScale, variation: float = 1.0,
                 classes: tuple[int, ...] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Client ``client_id``'s recorded clips ``(n, L)`` float32 in [-1, 1] and labels ``(n,)`` int64.

    ``L = round(clip_seconds * SAMPLE_RATE)``; ``n`` is drawn in ``[min_clips, max_clips]``;
    ``variation`` as in :func:`clean_clips`; ``classes`` as in :func:`client_items`.
    """
    length = clip_samples(clip_seconds)
    ids = client_items(client_id, seed=seed, num_clients=num_clients, partitioning=partitioning,
                       min_clips=min_clips, max_clips=max_clips, classes=classes)
    rng = _rng(seed, _STREAM_DEVICE, _client_key(client_id))
    device = draw_device(rng)  # the same draw as client_device
    u = jitter_conditions(rng, device, len(ids), conditions.jitter)
    generator = torch.Generator().manual_seed(int(rng.integers(2**63)))
    x = record(clean_clips(ids, seed=seed, clip_samples=length, variation=variation), u, conditions,
               sample_rate=SAMPLE_RATE, generator=generator)
    return x, torch.as_tensor(base_labels()[ids])


def eval_clips(*, seed: int, clip_seconds: float = 1.0, per_class: int = 40,
               conditions: ConditionScale,
               variation: float = 1.0,
               classes: tuple[int, ...] | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Held-out ``(bank_w, bank_y, query_w, query_y)``: ``per_class`` clips of every class
    (of ``classes`` only, if given) in each set, from base rows no client draws on, each in a
    fresh random recording condition (``variation`` as in :func:`clean_clips`)."""
    if not 1 <= per_class <= EVAL_PER_CLASS:
        raise ValueError(f"per_class must be in 1..{EVAL_PER_CLASS} (got {per_class})")
    length = clip_samples(clip_seconds)
    rows = list(range(NUM_CLASSES) if classes is None else classes)
    out: list[torch.Tensor] = []
    for part, ids in enumerate(split_indices()[1:]):
        ids = ids.reshape(NUM_CLASSES, EVAL_PER_CLASS)[rows, :per_class].reshape(-1)
        rng = _rng(seed, _STREAM_EVAL, part)
        u = rng.random((len(ids), len(CONDITION_FIELDS)))
        generator = torch.Generator().manual_seed(int(rng.integers(2**63)))
        out += [record(clean_clips(ids, seed=seed, clip_samples=length, variation=variation), u, conditions,
                       sample_rate=SAMPLE_RATE, generator=generator), torch.as_tensor(base_labels()[ids])]
    return tuple(out)  # type: ignore[return-value]


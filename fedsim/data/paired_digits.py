"""The audio-image population: digit images and digit sounds with one label set, never paired.

Images are the bundled digits of :mod:`fedsim.data.digits` (scikit-learn's digits drawn by
per-client writers). Sounds are the generated population of :mod:`fedsim.data.sounds`,
restricted to ten of its twelve classes, one keyed to each digit: digit ``k`` and sound
class :data:`DIGIT_SOUNDS` ``[k]`` share label ``k`` (the two dropped, ``tone`` and
``vibrato``, are the ones a log-mel view most confuses with ``tremolo``). The keying is
arbitrary — nothing in a sound resembles its digit — which is the point: a held-out
"pair" (digit ``k`` image, class ``k`` sound) exists for evaluation only, and no client ever
sees one (FSSUAVL, arXiv 2504.09516: unpaired modalities).

Each client holds images only, sounds only, or both (independent draws, unpaired), drawn
from ``(seed, client id)`` with the probabilities of the task's ``modality_mix``
(:func:`client_modality`). Everything is a pure function of its arguments.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from fedsim.data import sounds

MODALITIES = ("image", "audio")
HOLDINGS = ("image", "audio", "both")
"""What a client may hold: one modality, or both (unpaired)."""
NUM_CLASSES = 10
DIGIT_SOUNDS = ("chirp_up", "chirp_down", "vowel_a", "vowel_i", "vowel_u", "noise_band",
                "click_train", "click_gallop", "tremolo", "dyad")
"""The sound class of digit ``k`` is ``DIGIT_SOUNDS[k]``."""
SOUND_CLASS_IDS = tuple(sounds.CLASS_NAMES.index(name) for name in DIGIT_SOUNDS)
_STREAM_MODALITY = 31


def _digit_of_sound() -> torch.Tensor:
    lookup = torch.full((sounds.NUM_CLASSES,), -1, dtype=torch.int64)
    lookup[list(SOUND_CLASS_IDS)] = torch.arange(NUM_CLASSES)
    return lookup


DIGIT_OF_SOUND = _digit_of_sound()
"""Sound-generator class id -> digit label (-1 for the two unused classes)."""


def mix_probabilities(mix: Mapping[str, float]) -> np.ndarray:
    """``modality_mix`` as probabilities over :data:`HOLDINGS` (missing keys are 0; normalised)."""
    unknown = set(mix) - set(HOLDINGS)
    if unknown:
        raise ValueError(f"modality_mix: unknown holding(s) {sorted(unknown)}; choose from: {', '.join(HOLDINGS)}")
    weights = np.array([float(mix.get(h, 0.0)) for h in HOLDINGS])
    if (weights < 0).any() or not np.isfinite(weights).all() or weights.sum() <= 0:
        raise ValueError(f"modality_mix needs non-negative weights with a positive sum (got {dict(mix)})")
    return weights / weights.sum()


def client_modality(client_id: int, *, seed: int, mix: Mapping[str, float]) -> str:
    """What client ``client_id`` holds (``"image"``, ``"audio"`` or ``"both"``): one draw from
    ``mix`` by a generator seeded with ``(seed, client id)``."""
    u = np.random.default_rng([int(seed), _STREAM_MODALITY, int(client_id) & 0x7FFF_FFFF_FFFF_FFFF]).random()
    cumulative = np.cumsum(mix_probabilities(mix))
    return HOLDINGS[min(int(np.searchsorted(cumulative, u, side="right")), len(HOLDINGS) - 1)]


def client_sounds(client_id: int, *, seed: int, num_clients: int, partitioning: object, clip_seconds: float,
                  min_clips: int, max_clips: int,
                  conditions: sounds.ConditionScale) -> tuple[torch.Tensor, torch.Tensor]:
    """Client ``client_id``'s recorded clips ``(n, L)`` of the ten digit sounds and their digit labels."""
    wave, sound_y = sounds.client_clips(client_id, seed=seed, num_clients=num_clients, partitioning=partitioning,
                                        clip_seconds=clip_seconds, min_clips=min_clips, max_clips=max_clips,
                                        conditions=conditions, classes=SOUND_CLASS_IDS)
    return wave, DIGIT_OF_SOUND[sound_y]


def eval_sounds(*, seed: int, clip_seconds: float, per_class: int,
                conditions: sounds.ConditionScale) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Held-out ``(bank_w, bank_y, query_w, query_y)`` of the ten digit sounds, digit labels."""
    bank_w, bank_y, query_w, query_y = sounds.eval_clips(seed=seed, clip_seconds=clip_seconds, per_class=per_class,
                                                         conditions=conditions, classes=SOUND_CLASS_IDS)
    return bank_w, DIGIT_OF_SOUND[bank_y], query_w, DIGIT_OF_SOUND[query_y]

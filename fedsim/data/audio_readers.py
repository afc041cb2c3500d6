"""Reading the files of a local audio folder: class folders of WAV files, ESC-50's CSV, clips.

The layer under :mod:`fedsim.data.audio_folders`: it lists class folders of WAV files, parses
``meta/esc50.csv``, probes WAV headers, and reads clips with ``soundfile`` (torchaudio's own
loader needs TorchCodec, which does not install beside the pinned torch). It knows nothing of
splits or natural ids.

Clip rule (:func:`read_clips`): the file is mixed to mono (mean of its channels), resampled
to ``sample_rate`` with ``torchaudio.functional.resample`` when its rate differs, then
**centre-cropped** to ``clip_samples`` when longer, or **zero-padded on both sides** (the
odd sample at the end) when shorter, so the clip's middle is the file's middle. Only the
middle of a long file is read from disk (plus a margin for the resampling filter).
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from fedsim.data.image_readers import MAX_AUDIO_FRAMES, DataFolderError, check_pixels, shown

WAV_SUFFIX = ".wav"  # compared case-insensitively
OTHER_AUDIO_SUFFIXES = (".mp3", ".flac", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".wma", ".aif", ".aiff")
IGNORED_FOLDERS = ("_background_noise_",)  # Speech Commands' long noise recordings
ESC50_COLUMNS = ("filename", "fold", "target", "category")
_RESAMPLE_MARGIN = 32  # extra input samples read on each side for the resampling filter
MAX_SAMPLE_RATE = 768_000  # Hz; a higher rate in a header would make the clip window huge


def is_wav_name(name: str) -> bool:
    """Whether ``name`` is a visible file with a ``.wav`` suffix (any case)."""
    return not name.startswith(".") and name.lower().endswith(WAV_SUFFIX)


def list_wav_classes(folder: Path) -> dict[str, list[str]]:
    """``{class: sorted WAV paths relative to folder}`` of the visible class folders of ``folder``.

    Class folders are walked recursively without following nested links. Files that are not
    audio (README, lists, CSVs, images) are ignored, and a folder of such files only is not a
    class; hidden entries and ``_background_noise_`` are skipped.

    Raises
    ------
    DataFolderError
        An audio file that is not WAV (``.mp3``, ``.flac``, ...), or an empty class folder.
    """
    out: dict[str, list[str]] = {}
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.name.startswith(".") or entry.name in IGNORED_FOLDERS or not entry.is_dir():
            continue
        found, anything = [], False
        for dirpath, dirnames, filenames in os.walk(entry.path):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            rel = os.path.relpath(dirpath, folder).replace(os.sep, "/")
            for name in filenames:
                if name.startswith("."):
                    continue
                anything = True
                if name.lower().endswith(OTHER_AUDIO_SUFFIXES):
                    raise DataFolderError(f"audio file {Path(dirpath) / name} is not WAV; convert it to "
                                          "WAV (e.g. ffmpeg -i IN OUT.wav) or remove it")
                if is_wav_name(name):
                    found.append(f"{rel}/{name}")
        if not anything:
            raise DataFolderError(f"class folder {entry.path} is empty; add WAV files to it or remove it")
        if found:
            out[entry.name] = sorted(found)
    return out


def read_list(path: Path) -> set[str]:
    """The relative POSIX paths listed one per line in ``path`` (Speech Commands' ``testing_list.txt``)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFolderError(f"list {path} cannot be read ({type(exc).__name__}); fix or remove it") from exc
    return {line.strip().replace("\\", "/") for line in text.splitlines() if line.strip()}


class Esc50Rows(NamedTuple):
    """The rows of ``meta/esc50.csv``, in file order."""

    filenames: list[str]
    folds: np.ndarray  # int64
    targets: np.ndarray  # int64
    categories: dict[int, str]  # target -> category


def read_esc50_csv(path: Path) -> Esc50Rows:
    """Parse ESC-50's metadata (columns ``filename, fold, target, category``, others ignored).

    Raises
    ------
    DataFolderError
        Unreadable file, missing columns, no rows, a non-integer fold or target, a filename that
        is not a ``.wav`` name, a repeated filename, or one target with two categories.
    """
    fix = "restore meta/esc50.csv from the ESC-50 release"
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in ESC50_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise DataFolderError(f"ESC-50 metadata {path} lacks column(s) {', '.join(missing)}; "
                                      f"expected {', '.join(ESC50_COLUMNS)}; {fix}")
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataFolderError(f"ESC-50 metadata {path} cannot be read ({type(exc).__name__}: {exc}); {fix}") from exc
    if not rows:
        raise DataFolderError(f"ESC-50 metadata {path} has no rows; {fix}")
    filenames, folds, targets, categories = [], [], [], {}
    for line, row in enumerate(rows, start=2):
        name, category = (row.get("filename") or "").strip(), (row.get("category") or "").strip()
        try:
            fold, target = int(row.get("fold") or ""), int(row.get("target") or "")
        except ValueError:
            raise DataFolderError(f"ESC-50 metadata {path} line {line}: fold and target must be integers "
                                  f"(got {row.get('fold')!r}, {row.get('target')!r}); {fix}") from None
        if not is_wav_name(name) or "/" in name or target < 0 or not category:
            raise DataFolderError(f"ESC-50 metadata {path} line {line}: expected a .wav filename, a target "
                                  f">= 0 and a category (got {name!r}, {target}, {category!r}); {fix}")
        if categories.setdefault(target, category) != category:
            raise DataFolderError(f"ESC-50 metadata {path} line {line}: target {target} is both "
                                  f"{categories[target]!r} and {category!r}; {fix}")
        filenames.append(name)
        folds.append(fold)
        targets.append(target)
    if len(set(filenames)) < len(filenames):
        raise DataFolderError(f"ESC-50 metadata {path} lists a filename twice; {fix}")
    return Esc50Rows(filenames, np.asarray(folds, dtype=np.int64), np.asarray(targets, dtype=np.int64),
                     categories)


def probe_wav(path: str | os.PathLike) -> tuple[int, int, int]:
    """``(frames, sample_rate, channels)`` from a WAV header; DataFolderError naming the file,
    also for a file longer than ``MAX_AUDIO_FRAMES`` or faster than ``MAX_SAMPLE_RATE``."""
    try:
        info = sf.info(path if isinstance(path, str) else os.fsdecode(path))
    except Exception as exc:  # libsndfile reports a bad file in several ways
        raise DataFolderError(f"audio file {shown(path)} cannot be read ({type(exc).__name__}: {exc}); "
                              "re-encode it as WAV or remove it") from exc
    if info.frames <= 0 or info.samplerate <= 0:
        raise DataFolderError(f"audio file {shown(path)} has no samples; re-encode it or remove it")
    check_pixels(path, int(info.frames) * max(1, int(info.channels)), MAX_AUDIO_FRAMES,
                 f"{info.frames} frames x {info.channels} channels")
    if info.samplerate > MAX_SAMPLE_RATE:
        raise DataFolderError(f"audio file {shown(path)} claims {info.samplerate} Hz (more than "
                              f"{MAX_SAMPLE_RATE}); re-encode it or remove it")
    return int(info.frames), int(info.samplerate), int(info.channels)


def _read_window(path: str, clip_samples: int, sample_rate: int) -> tuple[int, np.ndarray]:
    """``(file rate, mono float32 samples)`` of the middle of ``path`` that the clip needs."""
    frames, rate, _ = probe_wav(path)
    need = math.ceil(clip_samples * rate / sample_rate)
    if rate != sample_rate:
        need += 2 * _RESAMPLE_MARGIN * math.ceil(rate / sample_rate)
    start = max(0, (frames - need) // 2)
    try:
        data, _ = sf.read(path, start=start, stop=min(frames, start + need), dtype="float32", always_2d=True)
    except Exception as exc:
        raise DataFolderError(f"audio file {path} cannot be read ({type(exc).__name__}: {exc}); "
                              "re-encode it as WAV or remove it") from exc
    if data.shape[0] == 0:
        raise DataFolderError(f"audio file {path} has no samples; re-encode it or remove it")
    return rate, data.mean(axis=1, dtype=np.float32)


def centre(wave: torch.Tensor, clip_samples: int) -> torch.Tensor:
    """Centre-crop ``(..., L)`` to ``clip_samples``, or zero-pad both sides (odd sample at the end)."""
    length = wave.shape[-1]
    if length >= clip_samples:
        start = (length - clip_samples) // 2
        return wave[..., start:start + clip_samples]
    before = (clip_samples - length) // 2
    return torch.nn.functional.pad(wave, (before, clip_samples - length - before))


def read_clips(paths: list[str], *, clip_samples: int, sample_rate: int) -> torch.Tensor:
    """Files ``paths`` as mono float32 ``(n, clip_samples)`` clips at ``sample_rate`` (module doc).

    Windows of the same rate and length are resampled together (one filter per batch).
    """
    if clip_samples < 1 or sample_rate < 1:
        raise ValueError(f"clip_samples and sample_rate must be positive (got {clip_samples}, {sample_rate})")
    out = torch.zeros(len(paths), clip_samples)
    groups: dict[tuple[int, int], list[tuple[int, np.ndarray]]] = {}
    for i, path in enumerate(paths):
        rate, wave = _read_window(path, clip_samples, sample_rate)
        groups.setdefault((rate, len(wave)), []).append((i, wave))
    for (rate, _), members in groups.items():
        waves = torch.from_numpy(np.stack([w for _, w in members]))
        if rate != sample_rate:
            waves = AF.resample(waves, rate, sample_rate)
        out[torch.as_tensor([i for i, _ in members])] = centre(waves, clip_samples).float()
    return out

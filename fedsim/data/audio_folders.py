"""Real audio folders for ``--data-dir``: recognise the layout, index it, read clips lazily.

:func:`scan_audio_folder` turns a local folder into an :class:`AudioIndex` — names, labels,
the held-out split and natural ids, no samples — with the attribute names of
:class:`fedsim.data.folders.ImageIndex`, so the same client logic (and
:func:`fedsim.data.folders.natural_id_groups`) works on it; :func:`load_clips` reads only
the items a client asks for. Layouts, tried in this order:

``esc-50``
    ``meta/esc50.csv`` (columns ``filename, fold, target, category``) beside ``audio/*.wav``,
    in the folder or in its ``ESC-50-master`` subfolder. Classes are the categories ordered
    by target; the clips of fold ``heldout_fold`` (default 5) are held out. Every listed file
    must exist; WAV files the CSV does not list are ignored.
``speech-commands``
    ``<word>/*.wav`` with ``_background_noise_/`` or ``testing_list.txt`` at the top, or with
    every training file named ``<speaker>_nohash_<n>.wav``. ``_background_noise_`` is not a
    class. The files listed in ``testing_list.txt`` are held out (``validation_list.txt`` is
    training data).
``audio-folder``
    any other tree of class folders of WAV files, ``<class>/**/*.wav`` directly or
    ``train/<class>/...`` beside an optional ``test/<class>/...`` as for image folders.

In class folders, files that are not audio (README, lists, images) are ignored and a folder
of such files only is not a class; an audio file that is not WAV and an empty class folder
are errors. Classes are sorted by name into label ids.

Held-out evaluation: ESC-50's fold, the ``testing_list.txt`` or ``test/`` split when present,
otherwise a seeded stratified split: ``round(eval_fraction * n_c)`` items of each class ``c``
(at least one, never the class's last item), drawn by ``default_rng([seed, SALT, c])`` as for
image folders. Held-out items are never in ``train_ids``; :meth:`AudioIndex.describe` lists them.

Natural ids: with Speech Commands names (``<speaker>_nohash_<n>.wav`` for every training file)
the speaker; otherwise the stem up to the first ``_`` or ``-`` under the image-folder rule
(every training file has one, two ids have two or more files, one id spans two classes).
ESC-50 has none (its ``src_file`` is a source recording, not a device or a person).

The scan reads names (and up to :data:`AUDIO_PROBES` WAV headers spread over the items, to
refuse a folder of broken files early); :meth:`AudioIndex.check_files`, run before a run
starts, reads every WAV header (and refuses files longer than ``MAX_AUDIO_FRAMES``). A WAV
whose header reads but whose samples do not is reported by :func:`load_clips`, naming the
file, and fails the client that holds it. Clip rule: :mod:`fedsim.data.audio_readers`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedsim.data.audio_readers import list_wav_classes, probe_wav, read_clips, read_esc50_csv, read_list
from fedsim.data.image_readers import DataFolderError
from fedsim.data.splits import FolderIndex, number_ids, stratified_split, writer_ids

__all__ = ["AUDIO_PROBES", "AudioIndex", "DataFolderError", "load_clips", "scan_audio_folder"]

AUDIO_PROBES = 16  # WAV headers read by the scan
_SPEAKER = re.compile(r"^(.+)_nohash_\d+\.wav$", re.IGNORECASE)


@dataclass(frozen=True, eq=False)
class AudioIndex(FolderIndex):
    """What is in an audio folder, without its samples. Every array is indexed by item id.

    Attributes
    ----------
    kind
        ``"esc-50"``, ``"speech-commands"`` or ``"audio-folder"``.
    root
        Absolute folder the paths in ``files`` are relative to.
    classes
        Class names; label ``k`` is ``classes[k]``.
    labels
        int64 ``(n,)``: the label of every item (training and held-out).
    files
        POSIX paths relative to ``root``, one WAV file per item.
    train_ids, eval_ids
        Sorted, disjoint item ids: what clients may draw on, and the held-out evaluation set.
    held_out
        ``"fold-split"`` (ESC-50), ``"test-split"`` (``testing_list.txt`` or ``test/``) or
        ``"seeded-split"``.
    natural_ids
        int64 ``(n,)`` or None: the natural (speaker/user) id of each item, an index into
        ``natural_id_names`` (the sorted ids of the training items); -1 for a held-out item
        whose id no training item has.
    folds
        int64 ``(n,)`` ESC-50 folds, or None; ``heldout_fold`` is the held-out one.
    """

    kind: str
    root: str
    classes: tuple[str, ...]
    labels: np.ndarray
    files: tuple[str, ...]
    train_ids: np.ndarray
    eval_ids: np.ndarray
    held_out: str
    seed: int
    eval_fraction: float
    natural_ids: np.ndarray | None = None
    natural_id_names: tuple[str, ...] = ()
    folds: np.ndarray | None = None
    heldout_fold: int | None = None

    def item_name(self, item_id: int) -> str:
        """The file of an item, relative to ``root``."""
        return self.files[int(item_id)]

    def check_files(self) -> None:
        """Every WAV header (length bound: :data:`MAX_AUDIO_FRAMES`)."""
        for name in self.files:
            probe_wav(os.path.join(self.root, name))

    def describe(self) -> dict[str, Any]:
        """A JSON-able record of the data for the run directory, held-out items included."""
        rules = {"fold-split": f"fold {self.heldout_fold} of meta/esc50.csv",
                 "test-split": "the folder's own test split (testing_list.txt or test/)",
                 "seeded-split": self.seeded_split_rule()}
        return {"kind": self.kind, "root": self.root, "num_classes": self.num_classes,
                "classes": list(self.classes), "num_train": int(len(self.train_ids)),
                "num_eval": int(len(self.eval_ids)), "held_out": self.held_out,
                "natural_ids": len(self.natural_id_names) or None, "held_out_rule": rules[self.held_out],
                "held_out_files": [self.files[i] for i in self.eval_ids]}


def scan_audio_folder(path: str | os.PathLike, *, seed: int, eval_fraction: float = 0.2,
                      heldout_fold: int = 5) -> AudioIndex:
    """Recognise the layout of ``path`` and index it (see the module docstring).

    Parameters
    ----------
    path
        The folder given as ``--data-dir``.
    seed
        Seeds the held-out split when the folder has no split of its own.
    eval_fraction
        Share of each class held out by that split, ``0 < eval_fraction < 1``.
    heldout_fold
        The ESC-50 fold held out for evaluation.

    Raises
    ------
    DataFolderError
        Missing folder, a file, no WAV files, an audio file that is not WAV, an empty class
        folder, fewer than 2 classes, a malformed ``esc50.csv``, an unreadable probed WAV; one
        line naming the path.
    """
    if not 0.0 < eval_fraction < 1.0:
        raise ValueError(f"eval_fraction must be between 0 and 1 (got {eval_fraction})")
    root = Path(path).expanduser()
    if not root.exists():
        raise DataFolderError(f"data folder {root} does not exist; pass an existing folder as --data-dir")
    if not root.is_dir():
        raise DataFolderError(f"data folder {root} is a file, not a folder; pass the folder that "
                              "holds the class folders of WAV files or ESC-50's audio/ and meta/")
    root = root.resolve()
    for folder in (root, root / "ESC-50-master"):
        if (folder / "meta" / "esc50.csv").is_file():
            index = _scan_esc50(folder, seed=seed, eval_fraction=eval_fraction, heldout_fold=heldout_fold)
            break
    else:
        index = _scan_class_tree(root, seed=seed, eval_fraction=eval_fraction)
    _probe(index)
    return index


def load_clips(index: AudioIndex, item_ids: np.ndarray | list[int], *, clip_samples: int,
               sample_rate: int = 16_000) -> torch.Tensor:
    """Clips of ``item_ids``: mono float32 ``(n, clip_samples)`` at ``sample_rate``.

    Reads only those files; mixes to mono, resamples, then centre-crops or zero-pads both
    sides (:mod:`fedsim.data.audio_readers`).

    Raises
    ------
    DataFolderError
        A file cannot be read or has no samples; the message names the file.
    """
    ids = np.asarray(item_ids, dtype=np.int64).reshape(-1)
    return read_clips([os.path.join(index.root, index.files[i]) for i in ids],
                      clip_samples=clip_samples, sample_rate=sample_rate)


# ---- layouts -----------------------------------------------------------------------------------

def _scan_esc50(folder: Path, *, seed: int, eval_fraction: float, heldout_fold: int) -> AudioIndex:
    csv_path = folder / "meta" / "esc50.csv"
    rows = read_esc50_csv(csv_path)
    if not (folder / "audio").is_dir():
        raise DataFolderError(f"ESC-50 folder {folder} has meta/esc50.csv but no audio/ folder; "
                              "put the WAV files in audio/")
    for name in rows.filenames:
        if not (folder / "audio" / name).is_file():
            raise DataFolderError(f"ESC-50 metadata {csv_path} lists {folder / 'audio' / name}, which is "
                                  "missing; restore the file or remove its row")
    targets = np.unique(rows.targets)
    labels = np.searchsorted(targets, rows.targets).astype(np.int64)
    held = rows.folds == heldout_fold
    if not held.any() or held.all():
        raise DataFolderError(f"ESC-50 folder {folder} has folds {sorted(set(rows.folds.tolist()))}; "
                              f"held-out fold {heldout_fold} must be one of them, and not the only one")
    _check_classes(folder, [rows.categories[t] for t in np.unique(rows.targets[~held])])
    return AudioIndex(kind="esc-50", root=str(folder), classes=tuple(rows.categories[t] for t in targets),
                      labels=labels, files=tuple(f"audio/{n}" for n in rows.filenames),
                      train_ids=np.flatnonzero(~held), eval_ids=np.flatnonzero(held), held_out="fold-split",
                      seed=seed, eval_fraction=eval_fraction, folds=rows.folds, heldout_fold=heldout_fold)


def _scan_class_tree(root: Path, *, seed: int, eval_fraction: float) -> AudioIndex:
    split = (root / "train").is_dir()
    train_root = root / "train" if split else root
    train = list_wav_classes(train_root)
    classes = sorted(train)
    _check_classes(train_root, classes)
    class_id = {c: k for k, c in enumerate(classes)}
    test = list_wav_classes(root / "test") if split and (root / "test").is_dir() else {}
    for c in sorted(test):
        if c not in class_id:
            raise DataFolderError(f"test class '{c}' in {root / 'test'} is not in {train_root}; "
                                  f"add {train_root / c} or remove {root / 'test' / c}")
    prefix = "train/" if split else ""
    files = [prefix + f for c in classes for f in train[c]]
    labels_list = [class_id[c] for c in classes for _ in train[c]]
    n_train = len(files)
    files += ["test/" + f for c in sorted(test) for f in test[c]]
    labels = np.asarray(labels_list + [class_id[c] for c in sorted(test) for _ in test[c]], dtype=np.int64)
    testing_list = root / "testing_list.txt"
    speech = (root / "_background_noise_").is_dir() or testing_list.is_file() or all(
        _SPEAKER.match(f.rsplit("/", 1)[-1]) for f in files[:n_train])
    if test:
        train_ids, eval_ids, held_out = np.arange(n_train), np.arange(n_train, len(files)), "test-split"
    elif testing_list.is_file() and not split:
        train_ids, eval_ids = _listed_split(root, testing_list, files, labels, classes)
        held_out = "test-split"
    else:
        train_ids, eval_ids = stratified_split(root, labels, seed, eval_fraction, items="WAV files")
        held_out = "seeded-split"
    natural, names = _natural_ids(files, labels, train_ids)
    return AudioIndex(kind="speech-commands" if speech else "audio-folder", root=str(root),
                      classes=tuple(classes), labels=labels, files=tuple(files), train_ids=train_ids,
                      eval_ids=eval_ids, held_out=held_out, seed=seed, eval_fraction=eval_fraction,
                      natural_ids=natural, natural_id_names=names)


def _check_classes(folder: Path, classes: list[str]) -> None:
    if not classes:
        raise DataFolderError(f"data folder {folder} has no WAV files in class folders (and no "
                              "meta/esc50.csv); put the .wav files in one folder per class")
    if len(classes) < 2:
        raise DataFolderError(f"data folder {folder} has 1 class with training clips ('{classes[0]}'); "
                              "add a folder of WAV files for at least one more class")


def _listed_split(root: Path, listing: Path, files: list[str], labels: np.ndarray,
                  classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    listed = read_list(listing)
    held = np.asarray([f in listed for f in files], dtype=bool)
    if not held.any():
        raise DataFolderError(f"{listing} lists none of the WAV files under {root}; list held-out files "
                              "as <word>/<file>.wav, or remove it to hold out a seeded split")
    _check_classes(root, [classes[k] for k in np.unique(labels[~held])])
    return np.flatnonzero(~held), np.flatnonzero(held)


def _natural_ids(files: list[str], labels: np.ndarray,
                 train_ids: np.ndarray) -> tuple[np.ndarray | None, tuple[str, ...]]:
    """Speech Commands speakers when every training file is ``<speaker>_nohash_<n>.wav``,
    otherwise the folders' writer-id rule (:mod:`fedsim.data.splits`)."""
    speakers = [_SPEAKER.match(f.rsplit("/", 1)[-1]) for f in files]
    if all(speakers[i] is not None for i in train_ids):
        raw = np.asarray([m.group(1) if m else "" for m in speakers], dtype=object)
        return number_ids(raw, train_ids)
    return writer_ids(files, labels, train_ids)


def _probe(index: AudioIndex) -> None:
    """Read up to AUDIO_PROBES WAV headers spread evenly over the items."""
    n = len(index.files)
    for i in np.unique(np.linspace(0, n - 1, min(AUDIO_PROBES, n)).round().astype(int)):
        probe_wav(os.path.join(index.root, index.files[i]))

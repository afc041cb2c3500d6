"""Rules shared by every folder reader: the seeded held-out split and natural ids.

One rule for every modality, so an image folder and an audio folder with the same layout and
seed hold out the same items.

* **Seeded split** (a folder without its own test split): ``round(eval_fraction * n_c)`` items
  of each class ``c`` — at least one, and never the class's last item — drawn by
  ``numpy.random.default_rng([seed, SPLIT_SALT, c])``.
* **Natural ids** from file names: the stem up to the first ``_`` or ``-``
  (``f0123_07.png`` -> ``f0123``). A folder has natural ids when every training file has a
  non-empty id, at least two ids have two or more training files, and at least one id
  occurs in two classes (a writer writes several characters; a prefix that only repeats the
  class, ``cat_001.png``, is not a writer).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from fedsim.data.image_readers import DataFolderError

SPLIT_SALT = 0xE7A1  # keeps the held-out draw apart from other uses of the run seed
NATURAL_ID = re.compile(r"^([^_-]+)[_-]")


class FolderIndex:
    """What the folder indexes (image, audio, video) share; mixed into their frozen dataclasses,
    which declare ``classes``, ``labels``, ``seed`` and ``eval_fraction``."""

    classes: tuple[str, ...]
    labels: np.ndarray
    seed: int
    eval_fraction: float

    def __post_init__(self) -> None:
        for value in vars(self).values():  # shared by every client of the process: read-only
            if isinstance(value, np.ndarray):
                value.flags.writeable = False

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.labels)

    def check_files(self) -> None:
        """Read every item's header (cheap: no samples decoded) and raise
        :class:`DataFolderError` naming the first bad or too-large file; the pre-check
        before a run starts calls it (:meth:`fedsim.data.folder_clients.FolderClients.describe`)."""

    def seeded_split_rule(self) -> str:
        """The held-out rule of :func:`stratified_split`, in words, for ``data.json``."""
        return (f"stratified: round({self.eval_fraction} * n) of each class, "
                f"at least 1, drawn with seed {self.seed}")


def stratified_split(folder: Path, labels: np.ndarray, seed: int, eval_fraction: float, *,
                     items: str = "files") -> tuple[np.ndarray, np.ndarray]:
    """Seeded per-class hold-out: ``(train_ids, eval_ids)``, both sorted; ``items`` names what
    the folder holds in the error message."""
    held = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        k = min(max(1, round(eval_fraction * len(members))), len(members) - 1)
        rng = np.random.default_rng([int(seed), SPLIT_SALT, int(c)])
        held.append(rng.choice(members, size=k, replace=False))
    eval_ids = np.sort(np.concatenate(held)) if held else np.zeros(0, dtype=np.int64)
    if len(eval_ids) == 0:
        raise DataFolderError(f"data folder {folder} has too few {items} to hold out an evaluation "
                              f"set; add {items} (2 or more per class) or a test split")
    return np.setdiff1d(np.arange(len(labels)), eval_ids), eval_ids


def number_ids(raw: np.ndarray, train_ids: np.ndarray) -> tuple[np.ndarray, tuple[str, ...]]:
    """Ids as indexes into the sorted ids of the training items (-1: a held-out item whose id
    no training item has), and those sorted names."""
    names = np.unique(raw[train_ids].astype(str))
    lookup = {n: k for k, n in enumerate(names)}
    return np.asarray([lookup.get(r, -1) for r in raw], dtype=np.int64), tuple(str(n) for n in names)


def writer_ids(files: list[str], labels: np.ndarray,
               train_ids: np.ndarray) -> tuple[np.ndarray | None, tuple[str, ...]]:
    """Natural ids by the file-name rule above, or ``(None, ())`` when the folder has none."""
    matches = [NATURAL_ID.match(f.rsplit("/", 1)[-1]) for f in files]
    if not all(matches[i] is not None for i in train_ids):
        return None, ()
    raw = np.asarray([m.group(1) if m else "" for m in matches], dtype=object)
    ids, names = number_ids(raw, train_ids)
    train = ids[train_ids]
    pairs = np.unique(np.stack([train, labels[train_ids]]), axis=1)  # distinct (id, class)
    if (np.bincount(train) >= 2).sum() < 2 or len(pairs[0]) == len(names):  # no id spans two classes
        return None, ()
    return ids, names

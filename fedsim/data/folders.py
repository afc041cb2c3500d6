"""Real image folders for ``--data-dir``: recognise the layout, index it, read pixels lazily.

:func:`scan_image_folder` turns a local folder into an :class:`ImageIndex` — names, labels,
the held-out split and natural ids, no pixels — small and picklable, so every process holds
one index whatever the number of registered clients; :func:`load_images` reads only the
items a client asks for. Layouts, tried in this order:

``cifar-10``
    ``data_batch_<k>`` (+ ``test_batch``, ``batches.meta``) in the folder or in its
    ``cifar-10-batches-py`` subfolder.
``cifar-100``
    the files ``train`` (+ ``test``, ``meta``) in the folder or in ``cifar-100-python``.
``image-folder``
    ``train/<class>/**/*.png|jpg|jpeg`` beside an optional ``test/<class>/...``, or
    ``<class>/**/*.png|jpg|jpeg`` directly. Suffixes are case-insensitive; hidden files and
    folders and other files are ignored; a folder without images is not a class. Classes are
    sorted by name into label ids; ``test/`` uses the ids of ``train/``.

Held-out evaluation: the ``test/`` folder or CIFAR test batch when present, otherwise a
seeded stratified split: ``round(eval_fraction * n_c)`` items of each class ``c`` (at least
one, and never the class's last item), drawn by ``numpy.random.default_rng([seed, SALT, c])``.
Held-out items are never in ``train_ids``; :meth:`ImageIndex.describe` lists them.

Natural ids: the id of a file is its stem up to the first ``_`` or ``-``
(``f0123_07.png`` -> ``f0123``, ``u7-3.png`` -> ``u7``). The folder has natural ids when
every training file has a non-empty id, at least two ids have two or more training files,
and at least one id occurs in two classes (a writer writes several characters; a prefix that
only repeats the class, ``cat_001.png``, is not a writer). Otherwise ``natural_ids`` is None.

Channels: ``index.channels`` is 3 for CIFAR, and for an image folder 3 if any of up to
:data:`CHANNEL_PROBES` files spread evenly over the sorted items has pixels that differ
across R, G, B, else 1 (a grey scan saved as RGB counts as grey). The task may still ask
:func:`load_images` for either.

The scan reads names only (and the probed files); :meth:`ImageIndex.check_files`, run before
a run starts, reads every image's header (format and size: no image over
:data:`MAX_IMAGE_PIXELS` is ever decoded). A file whose header reads but whose pixels do not is
reported by :func:`load_images`, naming the file, and fails the client that holds it. Resizing: shorter side to ``image_size``, then a center
crop (:mod:`fedsim.data.image_readers`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedsim.data.image_readers import (CHANNEL_PROBES, MAX_IMAGE_PIXELS, DataFolderError, cifar_pixels,
                                       find_cifar, image_header, list_class_files, load_image_files,
                                       probe_channels, read_cifar_batch, read_cifar_folder)
from fedsim.data.splits import FolderIndex, stratified_split, writer_ids

__all__ = ["CHANNEL_PROBES", "MAX_IMAGE_PIXELS", "DataFolderError", "ImageIndex", "load_images", "natural_id_groups",
           "scan_image_folder"]



@dataclass(frozen=True, eq=False)
class ImageIndex(FolderIndex):
    """What is in a data folder, without its pixels. Every array is indexed by item id.

    Attributes
    ----------
    kind
        ``"image-folder"``, ``"cifar-10"`` or ``"cifar-100"``.
    root
        Absolute folder the paths in ``files`` are relative to.
    classes
        Class names; label ``k`` is ``classes[k]``.
    labels
        int64 ``(n,)``: the label of every item (training and held-out).
    files
        POSIX paths relative to ``root``: one per item for an image folder; the batch files
        for CIFAR.
    item_file, item_row
        int64 ``(n,)``: item ``i`` is ``files[item_file[i]]`` (row ``item_row[i]`` of that
        CIFAR batch; -1 for an image file).
    train_ids, eval_ids
        Sorted, disjoint item ids: what clients may draw on, and the held-out evaluation set.
    held_out
        ``"test-split"`` (the folder's own test split) or ``"seeded-split"``.
    channels
        3 if the folder holds colour images, else 1 (see the module docstring).
    natural_ids
        int64 ``(n,)`` or None: the natural (writer/user) id of each item, an index into
        ``natural_id_names`` (the sorted ids of the training items); -1 for a held-out item
        whose id no training item has.
    """

    kind: str
    root: str
    classes: tuple[str, ...]
    labels: np.ndarray
    files: tuple[str, ...]
    item_file: np.ndarray
    item_row: np.ndarray
    train_ids: np.ndarray
    eval_ids: np.ndarray
    held_out: str
    seed: int
    eval_fraction: float
    channels: int
    natural_ids: np.ndarray | None = None
    natural_id_names: tuple[str, ...] = ()

    def item_name(self, item_id: int) -> str:
        """The file of an item, relative to ``root`` (``test_batch#17`` for a CIFAR row)."""
        name = self.files[int(self.item_file[item_id])]
        row = int(self.item_row[item_id])
        return name if row < 0 else f"{name}#{row}"

    def check_files(self) -> None:
        """Every image's header (size bound: :data:`MAX_IMAGE_PIXELS`); CIFAR batches were
        read whole by the scan."""
        if self.kind == "image-folder":
            for name in self.files:
                image_header(os.path.join(self.root, name))

    def describe(self) -> dict[str, Any]:
        """A JSON-able record of the data for the run directory, held-out items included."""
        out: dict[str, Any] = {
            "kind": self.kind, "root": self.root, "num_classes": self.num_classes,
            "classes": list(self.classes), "channels": self.channels,
            "num_train": int(len(self.train_ids)), "num_eval": int(len(self.eval_ids)),
            "held_out": self.held_out, "natural_ids": len(self.natural_id_names) or None,
        }
        if self.held_out == "seeded-split":
            out["held_out_rule"] = self.seeded_split_rule()
        else:
            out["held_out_rule"] = "the folder's own test split"
        if self.kind == "image-folder":
            out["held_out_files"] = [self.files[i] for i in self.item_file[self.eval_ids]]
        else:
            rows: dict[str, list[int]] = {}
            for i in self.eval_ids:
                rows.setdefault(self.files[self.item_file[i]], []).append(int(self.item_row[i]))
            out["held_out_rows"] = rows
        return out


def scan_image_folder(path: str | os.PathLike, *, seed: int, eval_fraction: float = 0.2) -> ImageIndex:
    """Recognise the layout of ``path`` and index it (see the module docstring).

    Parameters
    ----------
    path
        The folder given as ``--data-dir``.
    seed
        Seeds the held-out split when the folder has no test split of its own.
    eval_fraction
        Share of each class held out by that split, ``0 < eval_fraction < 1``.

    Raises
    ------
    DataFolderError
        Missing folder, a file, no images, fewer than 2 classes, a test class unknown to
        train, an unreadable CIFAR batch or probed image; one line naming the path.
    """
    if not 0.0 < eval_fraction < 1.0:
        raise ValueError(f"eval_fraction must be between 0 and 1 (got {eval_fraction})")
    root = Path(path).expanduser()
    if not root.exists():
        raise DataFolderError(f"data folder {root} does not exist; pass an existing folder as --data-dir")
    if not root.is_dir():
        raise DataFolderError(f"data folder {root} is a file, not a folder; pass the folder that "
                              "holds the class folders or the CIFAR batches")
    root = root.resolve()
    cifar = find_cifar(root)
    if cifar is not None:
        return _scan_cifar(*cifar, seed=seed, eval_fraction=eval_fraction)
    return _scan_image_tree(root, seed=seed, eval_fraction=eval_fraction)


def load_images(index: ImageIndex, item_ids: np.ndarray | list[int], *, image_size: int,
                channels: int) -> torch.Tensor:
    """Pixels of ``item_ids``: float32 ``(n, channels, image_size, image_size)`` in [0, 1].

    Reads only those files (a CIFAR batch is read once per process and cached). ``channels``
    is 1 (grey) or 3 (RGB) whatever the files hold.

    Raises
    ------
    DataFolderError
        An image cannot be decoded; the message names the file.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3 (got {channels})")
    if image_size < 1:
        raise ValueError(f"image_size must be positive (got {image_size})")
    ids = np.asarray(item_ids, dtype=np.int64).reshape(-1)
    if index.kind == "image-folder":
        paths = [os.path.join(index.root, index.files[i]) for i in index.item_file[ids]]
        return load_image_files(paths, image_size=image_size, channels=channels)
    out = torch.empty(len(ids), channels, image_size, image_size)
    files = index.item_file[ids]
    for f in np.unique(files):
        at = np.flatnonzero(files == f)
        pixels, _ = read_cifar_batch(os.path.join(index.root, index.files[f]))
        out[torch.from_numpy(at)] = cifar_pixels(pixels, index.item_row[ids[at]],
                                                 image_size=image_size, channels=channels)
    return out


def natural_id_groups(index: ImageIndex) -> list[np.ndarray]:
    """Training item ids grouped by natural id: group ``k`` is ``natural_id_names[k]``'s items.

    The same partitions as flwr-datasets' ``NaturalIdPartitioner`` (which numbers the sorted
    unique ids, as ``natural_ids`` does) without building a ``datasets.Dataset`` and filtering
    it once per client: one stable argsort, O(n) memory, computed by the task once per process.
    """
    if index.natural_ids is None:
        raise DataFolderError(f"data folder {index.root} has no natural ids in its file names "
                              "(<writer>_<n>.png); choose another partitioning")
    train = index.train_ids
    ids = index.natural_ids[train]
    order = np.argsort(ids, kind="stable")
    bounds = np.searchsorted(ids[order], np.arange(1, len(index.natural_id_names)))
    return [np.sort(g) for g in np.split(train[order], bounds)]


# ---- layouts -----------------------------------------------------------------------------------

def _scan_cifar(kind: str, folder: Path, *, seed: int, eval_fraction: float) -> ImageIndex:
    cifar = read_cifar_folder(kind, folder)
    in_train = cifar.item_file < cifar.num_train_files
    _check_classes(folder, [cifar.names[k] for k in np.unique(cifar.labels[in_train])])
    if cifar.num_train_files < len(cifar.files):
        train_ids, eval_ids, held_out = np.flatnonzero(in_train), np.flatnonzero(~in_train), "test-split"
    else:
        train_ids, eval_ids = stratified_split(folder, cifar.labels, seed, eval_fraction, items="images")
        held_out = "seeded-split"
    return ImageIndex(kind=kind, root=str(folder), classes=tuple(cifar.names), labels=cifar.labels,
                      files=cifar.files, item_file=cifar.item_file, item_row=cifar.item_row,
                      train_ids=train_ids, eval_ids=eval_ids, held_out=held_out, seed=seed,
                      eval_fraction=eval_fraction, channels=3)


def _scan_image_tree(root: Path, *, seed: int, eval_fraction: float) -> ImageIndex:
    split = (root / "train").is_dir()
    if not split and (root / "test").is_dir():
        raise DataFolderError(f"data folder {root} has test/ but no train/; put the training "
                              "images in train/<class>/ beside test/<class>/")
    train_root = root / "train" if split else root
    train = list_class_files(train_root)
    classes = sorted(train)
    _check_classes(train_root, classes)
    class_id = {c: k for k, c in enumerate(classes)}
    test = list_class_files(root / "test") if split and (root / "test").is_dir() else {}
    for c in sorted(test):
        if c not in class_id:
            raise DataFolderError(f"test class '{c}' in {root / 'test'} is not in {train_root}; "
                                  f"add {train_root / c} or remove {root / 'test' / c}")
    if split and (root / "test").is_dir() and not test:
        raise DataFolderError(f"test folder {root / 'test'} has no images in class folders; "
                              "add test/<class>/*.png or remove it to hold out a seeded split")
    prefix = "train/" if split else ""
    files = [prefix + f for c in classes for f in train[c]]
    labels = [class_id[c] for c in classes for _ in train[c]]
    n_train = len(files)
    files += ["test/" + f for c in sorted(test) for f in test[c]]
    labels += [class_id[c] for c in sorted(test) for _ in test[c]]
    labels_arr = np.asarray(labels, dtype=np.int64)
    if test:
        train_ids, eval_ids = np.arange(n_train), np.arange(n_train, len(files))
        held_out = "test-split"
    else:
        train_ids, eval_ids = stratified_split(root, labels_arr, seed, eval_fraction, items="images")
        held_out = "seeded-split"
    natural, natural_names = writer_ids(files, labels_arr, train_ids)
    return ImageIndex(kind="image-folder", root=str(root), classes=tuple(classes), labels=labels_arr,
                      files=tuple(files), item_file=np.arange(len(files)),
                      item_row=np.full(len(files), -1, dtype=np.int64), train_ids=train_ids,
                      eval_ids=eval_ids, held_out=held_out, seed=seed, eval_fraction=eval_fraction,
                      channels=probe_channels(root, files), natural_ids=natural,
                      natural_id_names=natural_names)


def _check_classes(folder: Path, classes: list[str]) -> None:
    if not classes:
        raise DataFolderError(f"data folder {folder} has no images (.png, .jpg, .jpeg in class "
                              "folders) and no CIFAR batches; put the images in one folder per class")
    if len(classes) < 2:
        raise DataFolderError(f"data folder {folder} has 1 class ('{classes[0]}'); "
                              "add a folder of images for at least one more class")

"""Reading the files of a local data folder: image files and CIFAR python batches.

The layer under :mod:`fedsim.data.folders`: it lists class folders, decodes an image file
with Pillow (PNG) or torchvision's reader (JPEG), brings any image to a square ``image_size``, tells grey from
colour, and reads CIFAR-10/100 python batches. It knows nothing of splits or natural ids.

Resize rule: an image is resized with antialiasing so that its *shorter* side is
``image_size``, then center-cropped to ``image_size × image_size`` (the usual evaluation
transform); a square image is simply resized. Nothing is stretched and nothing is padded;
the edges of a long side are dropped.

CIFAR batches are unpickled with ``encoding="bytes"`` by an unpickler that only builds numpy
arrays (a pickle from a downloaded folder cannot run code), and the decoded arrays are cached
once per process (``functools.lru_cache`` keyed by path, size and mtime): however many
clients a process serves, it holds one copy of each batch.
"""

from __future__ import annotations

import os
import pickle
import warnings
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torchvision.io import ImageReadMode, decode_image, read_file
from torchvision.transforms.v2 import functional as F

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")  # compared case-insensitively
CIFAR_SIDE = 32
CHANNEL_PROBES = 16  # files decoded by probe_channels
# Bounds on what one file may make a reader allocate, checked from its header before decoding
# (a 388 KB PNG can claim 20000 x 20000 pixels: 1.2 GB decoded, 10 GB after float conversion).
MAX_IMAGE_PIXELS = 8192 * 8192  # width x height of one image or video frame
MAX_VIDEO_PIXELS = 2 ** 28  # frames x width x height of one video (~0.8 GB as RGB bytes)
MAX_AUDIO_FRAMES = 2 ** 27  # samples (frames x channels) of one audio file (~47 min of 48 kHz mono)
_COLOUR_SPREAD = 2.0  # mean over pixels of max-min across R, G, B (0..255) above which an image is colour

# torchvision 0.29 deprecates its image codecs in favour of TorchCodec, which has no wheel that
# installs beside the pinned torch here; its reader is what we use (it warns once per process
# and worker, which buried the progress output). This module is the one place to switch.
warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities",
                        category=DeprecationWarning)


class DataFolderError(ValueError):
    """A data folder that cannot be read; the message is one line naming the path."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))  # one line, whatever the cause said


def is_image_name(name: str) -> bool:
    """Whether ``name`` is a visible file with an image suffix (``.png``, ``.jpg``, ``.jpeg``)."""
    return not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES)


def shown(path: str | os.PathLike | bytes) -> str:
    """``path`` for a message: ``os.fsdecode`` keeps an undecodable name's bytes (as surrogate
    escapes, which :func:`fedsim.config.one_line` prints as ``\\xNN``)."""
    return os.fsdecode(path)


def image_header(path: str | os.PathLike) -> tuple[int, int]:
    """``(width, height)`` of an image file from its header (Pillow reads no pixels), refused
    past :data:`MAX_IMAGE_PIXELS` before anything is decoded.

    Raises
    ------
    DataFolderError
        The header cannot be read, or claims more pixels than the bound; names the file.
    """
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
    except Image.DecompressionBombError as exc:  # Pillow's own bound (above ours): too large as well
        pixels = int("".join(c for c in str(exc).split("pixels")[0] if c.isdigit()) or 0)
        check_pixels(path, max(pixels, MAX_IMAGE_PIXELS + 1), MAX_IMAGE_PIXELS, f"{pixels:,} pixels")
        raise  # not reached
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataFolderError(f"image {shown(path)} cannot be decoded ({type(exc).__name__}: {exc}); "
                              "remove or replace the file") from None
    check_pixels(path, width * height, MAX_IMAGE_PIXELS, f"{width}x{height} = {width * height:,} pixels")
    return width, height


def check_pixels(path: str | os.PathLike, count: int, limit: int, what: str) -> None:
    """Refuse a file whose header claims more than ``limit`` (pixels or samples)."""
    if count > limit:
        raise DataFolderError(f"{shown(path)} is too large to decode ({what}, more than {limit:,}); "
                              "shrink or remove the file")


def decode_file(path: str | os.PathLike, channels: int) -> torch.Tensor:
    """One image file as float32 ``(channels, h, w)`` in [0, 1]; 8- or 16-bit, any mode.
    Its header is checked against :data:`MAX_IMAGE_PIXELS` first.

    Raises
    ------
    DataFolderError
        The file cannot be read or decoded, or is too large.
    """
    image_header(path)
    if Path(os.fsdecode(path)).suffix.lower() == ".png":
        return _decode_png(path, channels)
    mode = ImageReadMode.GRAY if channels == 1 else ImageReadMode.RGB
    try:
        image = decode_image(read_file(os.fsdecode(path)), mode=mode)
    except (RuntimeError, ValueError, OSError) as exc:
        raise DataFolderError(f"image {shown(path)} cannot be decoded ({exc}); "
                              "remove or replace the file") from exc
    return F.to_dtype(image, torch.float32, scale=True)


def _decode_png(path: str | os.PathLike, channels: int) -> torch.Tensor:
    """A PNG decoded by Pillow: torchvision 0.29's PNG reader ends the process (SIGSEGV) on a
    libpng error such as a truncated or scrambled IDAT, which Pillow raises as an exception.
    16-bit grey keeps its 16 bits; other modes go through Pillow's L/RGB conversion."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
            if image.mode.startswith("I"):  # 16-bit grey ("I;16", "I;16B") or 32-bit integer
                grey = torch.from_numpy(np.asarray(image, dtype=np.float32) / 65535.0).clamp_(0.0, 1.0)
                return grey.expand(channels, *grey.shape).contiguous()
            pixels = np.asarray(image.convert("L" if channels == 1 else "RGB"))
    except Exception as exc:  # Pillow raises OSError, SyntaxError, zlib.error, ValueError, ...
        raise DataFolderError(f"image {shown(path)} cannot be decoded ({type(exc).__name__}: {exc}); "
                              "remove or replace the file") from None
    tensor = torch.from_numpy(pixels.copy())
    tensor = tensor[None] if tensor.ndim == 2 else tensor.permute(2, 0, 1)
    return F.to_dtype(tensor, torch.float32, scale=True)  # bit for bit as the JPEG path


def to_square(images: torch.Tensor, image_size: int) -> torch.Tensor:
    """Resize ``(..., c, h, w)`` so the shorter side is ``image_size``, then center-crop to a square."""
    h, w = images.shape[-2:]
    if h == w == image_size:
        return images
    if h == w:
        out = F.resize(images, [image_size, image_size], antialias=True)
    else:
        out = F.center_crop(F.resize(images, [image_size], antialias=True), [image_size, image_size])
    return out.clamp_(0.0, 1.0)


def load_image_files(paths: list[str], *, image_size: int, channels: int) -> torch.Tensor:
    """Decode and square the files ``paths``: float32 ``(n, channels, image_size, image_size)``."""
    out = torch.empty(len(paths), channels, image_size, image_size)
    for i, path in enumerate(paths):
        out[i] = to_square(decode_file(path, channels), image_size)
    return out


def is_colour_file(path: str | os.PathLike) -> bool:
    """Whether the file's pixels differ across R, G, B (a grey picture saved as RGB is grey)."""
    rgb = decode_file(path, 3) * 255.0
    spread = rgb.amax(dim=0) - rgb.amin(dim=0)  # (h, w)
    return float(spread.mean()) > _COLOUR_SPREAD


def probe_channels(root: Path, files: list[str]) -> int:
    """3 if any of up to ``CHANNEL_PROBES`` files evenly spread over ``files`` is colour, else 1."""
    picks = np.unique(np.linspace(0, len(files) - 1, min(CHANNEL_PROBES, len(files))).round().astype(int))
    return 3 if any(is_colour_file(root / files[i]) for i in picks) else 1


def list_class_files(folder: Path) -> dict[str, list[str]]:
    """``{class: sorted image paths relative to folder}``; visible class folders with images only."""
    out: dict[str, list[str]] = {}
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        found = []
        for dirpath, dirnames, filenames in os.walk(entry.path):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            rel = os.path.relpath(dirpath, folder).replace(os.sep, "/")
            found += [f"{rel}/{f}" for f in filenames if is_image_name(f)]
        if found:
            out[entry.name] = sorted(found)
    return out


def cifar_pixels(array: np.ndarray, rows: np.ndarray, *, image_size: int,
                 channels: int) -> torch.Tensor:
    """Rows of a cached CIFAR array ``(N, 3, 32, 32)`` uint8 as float32 ``(n, channels, s, s)``."""
    images = torch.from_numpy(np.ascontiguousarray(array[rows])).float().div_(255.0)
    if channels == 1:
        images = F.rgb_to_grayscale(images, num_output_channels=1)
    return to_square(images, image_size)


# ---- CIFAR python batches -------------------------------------------------------------------

_NUMPY_GLOBALS = {
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    *((f"numpy.{core}.multiarray", name) for core in ("core", "_core") for name in ("_reconstruct", "scalar")),
    *((f"numpy.{core}.numeric", "_frombuffer") for core in ("core", "_core")),
}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, strings, numbers and numpy arrays; refuses any other object."""

    def find_class(self, module: str, name: str):  # noqa: ANN201 (pickle's signature)
        if (module, name) not in _NUMPY_GLOBALS:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name}")
        if module.startswith("numpy.core."):  # pickles written by numpy 1.x
            module = "numpy._core." + module.removeprefix("numpy.core.")
        return super().find_class(module, name)


def _field(batch: dict, *names: str) -> object:
    """The first of ``names`` present in ``batch``, under a bytes or a str key; None if none."""
    for name in names:
        for key in (name.encode(), name):
            if key in batch:
                return batch[key]
    return None


def _unpickle(path: str) -> dict:
    try:
        with open(path, "rb") as fh:
            batch = _ArrayUnpickler(fh, encoding="bytes").load()
    except Exception as exc:  # a corrupt pickle raises almost anything
        raise DataFolderError(f"CIFAR batch {path} does not unpickle ({type(exc).__name__}: {exc}); "
                              "re-download the CIFAR python version") from exc
    if not isinstance(batch, dict):
        raise DataFolderError(f"CIFAR batch {path} holds a {type(batch).__name__}, not a dict; "
                              "re-download the CIFAR python version")
    return batch


@lru_cache(maxsize=16)
def _cifar_batch_cached(path: str, size: int, mtime_ns: int) -> tuple[np.ndarray, np.ndarray]:
    del size, mtime_ns  # part of the cache key only: a rewritten file is read again
    batch = _unpickle(path)
    data, labels = _field(batch, "data"), _field(batch, "labels", "fine_labels")
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != 3 * CIFAR_SIDE ** 2:
        shape = getattr(data, "shape", None)
        raise DataFolderError(f"CIFAR batch {path} has data of shape {shape}, expected (N, 3072) "
                              "uint8; re-download the CIFAR python version")
    try:
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise DataFolderError(f"CIFAR batch {path} has non-integer labels; "
                              "re-download the CIFAR python version") from exc
    if len(labels) != len(data) or (labels < 0).any():
        raise DataFolderError(f"CIFAR batch {path} has {len(labels)} labels for {len(data)} images "
                              "or negative labels; re-download the CIFAR python version")
    pixels = np.ascontiguousarray(data.astype(np.uint8, copy=False).reshape(-1, 3, CIFAR_SIDE, CIFAR_SIDE))
    pixels.flags.writeable = False
    labels.flags.writeable = False
    return pixels, labels


def read_cifar_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Pixels ``(N, 3, 32, 32)`` uint8 and labels ``(N,)`` int64 of one batch (cached per process).

    The batch is a pickled dict with ``b"data"`` ``(N, 3072)`` uint8 in CHW order and
    ``b"labels"`` (CIFAR-10) or ``b"fine_labels"`` (CIFAR-100). The arrays are read-only.
    """
    path = str(Path(path).resolve())
    stat = os.stat(path)
    return _cifar_batch_cached(path, stat.st_size, stat.st_mtime_ns)


def read_cifar_names(path: str | os.PathLike) -> list[str] | None:
    """Class names from ``batches.meta`` (``label_names``) or ``meta`` (``fine_label_names``)."""
    names = _field(_unpickle(str(path)), "label_names", "fine_label_names")
    if not isinstance(names, list | tuple):
        return None
    return [n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in names]


class CifarFolder(NamedTuple):
    """The batches of a CIFAR folder: training files first, then the test file if any."""

    files: tuple[str, ...]
    num_train_files: int
    labels: np.ndarray  # int64 (n,), all batches concatenated
    item_file: np.ndarray  # int64 (n,), index into files
    item_row: np.ndarray  # int64 (n,), row within that batch
    names: list[str]


def find_cifar(root: Path) -> tuple[str, Path] | None:
    """``("cifar-10" | "cifar-100", folder)`` if ``root`` or its CIFAR subfolder holds batches."""
    for folder in (root, root / "cifar-10-batches-py", root / "cifar-100-python"):
        if (folder / "data_batch_1").is_file():
            return "cifar-10", folder
        if (folder / "train").is_file():
            return "cifar-100", folder
    return None


def read_cifar_folder(kind: str, folder: Path) -> CifarFolder:
    """Labels and names of every batch (``data_batch_<k>``, ``test_batch`` or ``train``, ``test``)."""
    if kind == "cifar-10":
        train = sorted((p.name for p in folder.glob("data_batch_*") if p.name[11:].isdigit()),
                       key=lambda n: int(n[11:]))
        test, meta = "test_batch", "batches.meta"
    else:
        train, test, meta = ["train"], "test", "meta"
    files = tuple(train + [test] if (folder / test).is_file() else train)
    parts = [read_cifar_batch(folder / f)[1] for f in files]
    labels = np.concatenate(parts)
    names = read_cifar_names(folder / meta) if (folder / meta).is_file() else None
    if names is None:
        names = [str(k) for k in range(int(labels.max(initial=-1)) + 1)]
    if len(labels) and labels.max() >= len(names):
        raise DataFolderError(f"CIFAR folder {folder} has label {labels.max()} but {meta} names "
                              f"{len(names)} classes; re-download the CIFAR python version")
    return CifarFolder(files=files, num_train_files=len(train), labels=labels,
                       item_file=np.repeat(np.arange(len(files)), [len(p) for p in parts]),
                       item_row=np.concatenate([np.arange(len(p)) for p in parts]), names=names)

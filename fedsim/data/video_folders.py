"""Real video folders for ``--data-dir``: a UCF-101-style tree, indexed, clips read lazily.

:func:`scan_video_folder` turns a local folder into a :class:`VideoIndex` — names, labels,
the held-out split and natural ids, no frames — with the attribute names of
:class:`fedsim.data.folders.ImageIndex`, so :class:`fedsim.data.folder_clients.FolderClients`
hands items to clients; :func:`load_clips` decodes only the items a client asks for.
Layouts (every class folder must hold one kind):

``video-files``
    ``<class>/*.avi|mp4|mkv|mov|webm`` (UCF-101, HMDB-51), decoded with PyAV.
``frame-folders``
    ``<class>/<clip>/*.jpg|jpeg|png``: one folder of frames per clip, in name order
    (extracted UCF-101 / Kinetics), decoded with torchvision.

Classes are the sorted folder names. Natural ids: UCF-101 names ``v_<Class>_g<GG>_c<CC>``
give the group ``GG`` (clips of one group come from one long source video); otherwise the
stem up to the first ``_`` or ``-`` under the image-folder rule (:mod:`fedsim.data.splits`).
Held-out evaluation: UCF-101's split 1 (groups 1–7, ``testlist01.txt``) when every item has
a UCF-101 name and both sides are non-empty, otherwise the seeded stratified split shared
with image and audio folders.

A clip is ``frames`` consecutive frames from the middle of the video (the last frame
repeated when the video is shorter), each scaled so its shorter side is ``size`` and
centre-cropped to a square: float32 ``(3, frames, size, size)`` in [0, 1].
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms.v2.functional import center_crop, resize

from fedsim.data.image_readers import (MAX_IMAGE_PIXELS, MAX_VIDEO_PIXELS, DataFolderError, check_pixels,
                                       image_header, shown)
from fedsim.data.splits import FolderIndex, number_ids, stratified_split, writer_ids

__all__ = ["DataFolderError", "VIDEO_EXTENSIONS", "VideoIndex", "load_clips", "scan_video_folder"]

VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".mov", ".webm")
FRAME_EXTENSIONS = (".jpg", ".jpeg", ".png")
VIDEO_PROBES = 8  # videos opened by the scan
UCF_NAME = re.compile(r"^v_(.+)_g(\d+)_c(\d+)$")
UCF_TEST_GROUPS = range(1, 8)  # split 1 of UCF-101 (testlist01.txt): groups 1-7


@dataclass(frozen=True, eq=False)
class VideoIndex(FolderIndex):
    """What is in a video folder, without its frames; every array is indexed by item id
    (see :class:`fedsim.data.audio_folders.AudioIndex` for the shared attributes)."""

    kind: str
    root: str
    classes: tuple[str, ...]
    labels: np.ndarray
    files: tuple[str, ...]  # a video file or a frame folder per item, relative to root
    train_ids: np.ndarray
    eval_ids: np.ndarray
    held_out: str
    seed: int
    eval_fraction: float
    natural_ids: np.ndarray | None = None
    natural_id_names: tuple[str, ...] = ()

    def check_files(self) -> None:
        """Every video's header (frame size and frames x size bounds); for frame folders, the
        first frame of each clip (every frame is checked again before it is decoded)."""
        for name in self.files:
            path = Path(self.root) / name
            if self.kind == "video-files":
                video_header(path)
            else:
                first = min((p for p in path.iterdir() if p.suffix.lower() in FRAME_EXTENSIONS), default=None)
                if first is None:
                    raise DataFolderError(f"frame folder {shown(path)} holds no {', '.join(FRAME_EXTENSIONS)} images")
                image_header(first)

    def describe(self) -> dict[str, Any]:
        """A JSON-able record of the data for the run directory."""
        rules = {"ucf101-split1": "UCF-101 split 1: groups 1-7 held out",
                 "seeded-split": self.seeded_split_rule()}
        return {"kind": self.kind, "root": self.root, "num_classes": self.num_classes,
                "classes": list(self.classes), "num_train": int(len(self.train_ids)),
                "num_eval": int(len(self.eval_ids)), "held_out": self.held_out,
                "held_out_rule": rules[self.held_out], "natural_ids": len(self.natural_id_names) or None}


def _class_items(folder: Path) -> tuple[str, list[str]]:
    """The kind of one class folder and its items (relative to the class folder), sorted."""
    videos = sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
    clips = sorted(p.name for p in folder.iterdir() if p.is_dir()
                   and any(f.suffix.lower() in FRAME_EXTENSIONS for f in p.iterdir()))
    if videos and clips:
        raise DataFolderError(f"class folder {folder} holds both videos and frame folders; keep one kind")
    return ("video-files", videos) if videos else ("frame-folders", clips)


def scan_video_folder(path: str | os.PathLike, *, seed: int, eval_fraction: float = 0.2) -> VideoIndex:
    """Index ``path`` (see the module docstring).

    Raises
    ------
    DataFolderError
        Missing folder, a file, no class folders of videos or frame folders, an empty class
        folder, fewer than 2 classes, mixed kinds, an unreadable probed video; one line
        naming the path.
    """
    root = Path(path).expanduser()
    if not root.exists():
        raise DataFolderError(f"data folder {root} does not exist; pass an existing folder as --data-dir")
    if not root.is_dir():
        raise DataFolderError(f"data folder {root} is a file, not a folder; pass the folder of class folders "
                              "of videos (<class>/*.avi) or of frame folders (<class>/<clip>/*.jpg)")
    root = root.resolve()
    kinds, classes, files, labels = set(), [], [], []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        kind, items = _class_items(folder)
        if not items:
            raise DataFolderError(f"class folder {folder} holds no videos ({', '.join(VIDEO_EXTENSIONS)}) "
                                  f"and no frame folders of {', '.join(FRAME_EXTENSIONS)} images")
        kinds.add(kind)
        files += [f"{folder.name}/{item}" for item in items]
        labels += [len(classes)] * len(items)
        classes.append(folder.name)
    if len(classes) < 2:
        raise DataFolderError(f"data folder {root} needs at least 2 class folders of videos "
                              f"(<class>/*.avi) or frame folders (<class>/<clip>/*.jpg); found {len(classes)}")
    if len(kinds) > 1:
        raise DataFolderError(f"data folder {root} mixes class folders of videos and of frame folders; keep one kind")
    y = np.asarray(labels, dtype=np.int64)
    index = _split(root, kinds.pop(), tuple(classes), y, tuple(files), seed=seed, eval_fraction=eval_fraction)
    if index.kind == "video-files":
        for i in np.linspace(0, len(files) - 1, min(VIDEO_PROBES, len(files))).round().astype(int):
            _decode_video(root / files[i], frames=1, size=8)
    return index


def _split(root: Path, kind: str, classes: tuple[str, ...], labels: np.ndarray, files: tuple[str, ...], *,
           seed: int, eval_fraction: float) -> VideoIndex:
    stems = [Path(f).stem if kind == "video-files" else Path(f).name for f in files]
    ucf = [UCF_NAME.match(s) for s in stems]
    if all(ucf):
        groups = np.asarray([int(m.group(2)) for m in ucf])  # type: ignore[union-attr]
        test = np.isin(groups, UCF_TEST_GROUPS)
        if test.any() and not test.all():
            train_ids, eval_ids = np.flatnonzero(~test), np.flatnonzero(test)
            ids, names = number_ids(np.asarray([f"g{g:02d}" for g in groups], dtype=object), train_ids)
            return VideoIndex(kind, str(root), classes, labels, files, train_ids, eval_ids, "ucf101-split1",
                              seed, eval_fraction, ids, names)
    train_ids, eval_ids = stratified_split(root, labels, seed, eval_fraction, items="clips")
    ids, names = writer_ids(list(stems), labels, train_ids)
    return VideoIndex(kind, str(root), classes, labels, files, train_ids, eval_ids, "seeded-split", seed,
                      eval_fraction, ids, names)


def _window(total: int, frames: int) -> np.ndarray:
    """Indices of ``frames`` consecutive frames from the middle of ``total`` (the last repeated)."""
    start = max(0, (total - frames) // 2)
    return np.minimum(np.arange(start, start + frames), total - 1)


def _square(x: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 frames ``(t, 3, h, w)`` -> float32 ``(3, t, size, size)``: shorter side to ``size``, centre crop."""
    x = center_crop(resize(x, [size], antialias=True), [size, size])
    return (x.float() / 255).transpose(0, 1).contiguous()


def video_header(path: Path) -> tuple[int, int, int]:
    """``(frames, width, height)`` of a video's first stream from its container (PyAV; nothing
    decoded; frames estimated from the duration when the container does not count them),
    refused past :data:`MAX_IMAGE_PIXELS` per frame or :data:`MAX_VIDEO_PIXELS` in all."""
    import math

    import av

    try:
        with av.open(os.fsdecode(path)) as container:
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            frames = int(stream.frames or 0)
            if not frames:
                seconds = (float(stream.duration * stream.time_base) if stream.duration and stream.time_base
                           else (container.duration or 0) / av.time_base)
                frames = math.ceil(seconds * float(stream.average_rate or stream.guessed_rate or 0))
    except (av.error.FFmpegError, IndexError, ValueError, TypeError, ZeroDivisionError) as err:
        raise DataFolderError(f"cannot read video {shown(path)}: {err}") from None
    check_pixels(path, width * height, MAX_IMAGE_PIXELS, f"frames of {width}x{height} pixels")
    check_pixels(path, frames * width * height, MAX_VIDEO_PIXELS, f"{frames} frames of {width}x{height} pixels")
    return frames, width, height


def _decode_video(path: Path, *, frames: int, size: int) -> torch.Tensor:
    import av

    video_header(path)
    decoded, pixels = [], 0
    try:
        with av.open(str(path)) as container:
            for frame in container.decode(video=0):  # the header may understate the frames
                pixels += frame.width * frame.height
                check_pixels(path, pixels, MAX_VIDEO_PIXELS, f"more than {len(decoded)} frames")
                decoded.append(frame.to_ndarray(format="rgb24"))
    except (av.error.FFmpegError, IndexError, ValueError) as err:
        raise DataFolderError(f"cannot read video {shown(path)}: {err}") from None
    if not decoded:
        raise DataFolderError(f"video {path} has no frames")
    chosen = np.stack([decoded[i] for i in _window(len(decoded), frames)])  # (t, h, w, 3)
    return _square(torch.from_numpy(chosen).permute(0, 3, 1, 2), size)


def _decode_frames(folder: Path, *, frames: int, size: int) -> torch.Tensor:
    names = sorted(p for p in folder.iterdir() if p.suffix.lower() in FRAME_EXTENSIONS)
    if not names:
        raise DataFolderError(f"frame folder {folder} holds no {', '.join(FRAME_EXTENSIONS)} images")
    try:
        picked = [names[i] for i in _window(len(names), frames)]
        for name in picked:
            image_header(name)
        chosen = [decode_image(str(name), mode=ImageReadMode.RGB) for name in picked]
    except RuntimeError as err:
        raise DataFolderError(f"cannot read a frame of {folder}: {err}") from None
    return _square(torch.stack(chosen), size)


def load_clips(index: VideoIndex, item_ids: np.ndarray | list[int], *, frames: int, size: int) -> torch.Tensor:
    """Clips of ``item_ids``: float32 ``(n, 3, frames, size, size)`` in [0, 1]; reads only those items.

    Raises
    ------
    DataFolderError
        A video or frame cannot be read; the message names it.
    """
    decode = _decode_video if index.kind == "video-files" else _decode_frames
    ids = np.asarray(item_ids, dtype=np.int64).reshape(-1)
    return torch.stack([decode(Path(index.root) / index.files[i], frames=frames, size=size) for i in ids])

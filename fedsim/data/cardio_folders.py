"""Real cardio recordings from a local folder: one folder per subject, read lazily.

Layout (``--data-dir ROOT``)::

    ROOT/<subject>/<any>.mp4|.avi|.mkv|.mov|.webm   the face video (exactly one)
    ROOT/<subject>/<any>.wav                        the audio recorded with it (exactly one)
    ROOT/<subject>/<any>.csv                        reference BPM over time: columns time (s), bpm

The audio is taken to start with the first video frame (the two files of one recording);
frame times come from the container's timestamps (PyAV), so variable frame rates are fine.
Subjects are the natural ids: a seeded ``eval_fraction`` of them (at least one, never all)
is held out, and the rest are dealt to the clients round-robin after a seeded shuffle, so a
client reads only its own subjects' files, when it is first asked for them. A missing or
malformed folder or file raises :class:`DataFolderError` (one line naming the path).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from fedsim.data.cardio_timeline import Recording, skin_trace
from fedsim.data.audio_readers import probe_wav
from fedsim.data.image_readers import DataFolderError, shown

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm")
POOL_WIDTH = 64  # frames are scaled to this width before pooling (a mean barely changes)
SPLIT_SALT = 0xCA3


def read_video_trace(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Pooled skin colour ``(T, 3)`` and frame times ``(T,)`` (s, from 0) of a video, decoded with PyAV."""
    import av

    from fedsim.data.video_folders import video_header

    video_header(path)
    traces, times, chunk = [], [], []
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            for frame in container.decode(stream):
                width = min(POOL_WIDTH, frame.width)
                height = max(1, round(frame.height * width / frame.width))
                chunk.append(frame.reformat(width=width, height=height, format="rgb24").to_ndarray())
                times.append(float(frame.time) if frame.time is not None else len(times) / float(stream.average_rate))
                if len(chunk) == 64:
                    traces.append(skin_trace(np.stack(chunk)))
                    chunk = []
    except (av.error.FFmpegError, IndexError) as err:
        raise DataFolderError(f"cannot read video {shown(path)}: {err}") from None
    if chunk:
        traces.append(skin_trace(np.stack(chunk)))
    if len(times) < 2 or np.any(np.diff(times) <= 0):
        raise DataFolderError(f"video {path} has fewer than two frames or unordered timestamps")
    t = np.asarray(times)
    return np.concatenate(traces), t - t[0]


def read_bpm_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(times, bpm)`` from a CSV with columns ``time`` (or ``time_s``) and ``bpm``."""
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
        cols = {c.strip().lower(): c for c in (rows[0].keys() if rows else [])}
        tcol = cols.get("time", cols.get("time_s"))
        if tcol is None or "bpm" not in cols:
            raise ValueError("needs columns time (s) and bpm")
        t = np.asarray([float(r[tcol]) for r in rows])
        bpm = np.asarray([float(r[cols["bpm"]]) for r in rows])
    except (OSError, ValueError, TypeError, csv.Error) as err:
        raise DataFolderError(f"cannot read reference BPM {shown(path)}: {err}") from None
    if len(t) < 1 or not np.all(np.isfinite(bpm)) or np.any(np.diff(t) <= 0) or np.any(bpm <= 0):
        raise DataFolderError(f"reference BPM {path}: need increasing times and positive finite bpm values")
    return t, bpm


def read_recording(files: dict[str, Path]) -> Recording:
    """One subject's :class:`Recording` from its video, WAV and CSV files."""
    trace, times = read_video_trace(files["video"])
    probe_wav(files["audio"])  # length bound before the whole file is read
    try:
        audio, rate = sf.read(str(files["audio"]), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as err:
        raise DataFolderError(f"cannot read audio {files['audio']}: {err}") from None
    bpm_t, bpm = read_bpm_csv(files["bpm"])
    return Recording(trace=trace, frame_times=times, audio=audio.mean(1), audio_rate=int(rate), audio_start=0.0,
                     bpm_times=bpm_t, bpm=bpm)


def _subject_files(folder: Path) -> dict[str, Path]:
    found = {"video": [p for p in folder.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES],
             "audio": [p for p in folder.iterdir() if p.suffix.lower() == ".wav"],
             "bpm": [p for p in folder.iterdir() if p.suffix.lower() == ".csv"]}
    for kind, what in (("video", "video file"), ("audio", ".wav file"), ("bpm", ".csv of reference BPM")):
        if len(found[kind]) != 1:
            raise DataFolderError(f"subject folder {folder} needs exactly one {what}, found {len(found[kind])}")
    return {k: v[0] for k, v in found.items()}


class CardioFolder:
    """The subjects of a cardio folder, split into held-out subjects and clients' subjects."""

    def __init__(self, root: str, *, seed: int, num_clients: int, eval_fraction: float) -> None:
        self.root, self.seed, self.num_clients, self.eval_fraction = Path(root), seed, num_clients, eval_fraction
        self._split: tuple[list[Path], list[Path]] | None = None

    def split(self) -> tuple[list[Path], list[Path]]:
        """``(training subjects, held-out subjects)``, scanned once."""
        if self._split is None:
            if not self.root.is_dir():
                raise DataFolderError(f"data folder {self.root} does not exist or is not a folder")
            subjects = sorted(p for p in self.root.iterdir() if p.is_dir())
            if len(subjects) < 2:
                raise DataFolderError(f"data folder {self.root} has {len(subjects)} subject folders; need 2 or more "
                                      "(one folder per subject with a video, a .wav and a .csv of reference BPM)")
            for s in subjects:
                _subject_files(s)
            order = np.random.default_rng([self.seed, SPLIT_SALT]).permutation(len(subjects))
            k = min(max(1, round(self.eval_fraction * len(subjects))), len(subjects) - 1)
            held, train = [subjects[i] for i in sorted(order[:k])], [subjects[i] for i in order[k:]]
            if len(train) < self.num_clients:
                raise DataFolderError(f"data folder {self.root} has {len(train)} training subjects, fewer than the "
                                      f"{self.num_clients} clients; use --clients {len(train)} or fewer")
            self._split = train, held
        return self._split

    def client_recordings(self, client_id: int) -> list[Recording]:
        """Client ``client_id``'s subjects (every ``num_clients``-th of the shuffled training subjects)."""
        train, _ = self.split()
        return [read_recording(_subject_files(s)) for s in train[client_id::self.num_clients]]

    def eval_recordings(self) -> list[Recording]:
        """The held-out subjects' recordings."""
        return [read_recording(_subject_files(s)) for s in self.split()[1]]

    def check_files(self) -> None:
        """Every subject's video header, WAV header and reference-BPM CSV (parsed whole: it is
        small), so a bad file is one line before a run starts, not a failed client."""
        from fedsim.data.video_folders import video_header

        for subject in sorted(s for part in self.split() for s in part):
            files = _subject_files(subject)
            video_header(files["video"])
            probe_wav(files["audio"])
            read_bpm_csv(files["bpm"])

    def describe(self) -> dict[str, Any]:
        self.check_files()
        train, held = self.split()
        return {"path": str(self.root), "num_subjects": len(train) + len(held), "num_eval_subjects": len(held),
                "eval_subjects": [s.name for s in held], "partitioning": "subjects dealt round-robin"}

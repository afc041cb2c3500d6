"""Bounded resources on hostile data folders, and every file's header checked before start-up.

A decompression bomb is a crafted PNG header (a few hundred bytes claiming 20000 x 20000
pixels), never a real decode; WAV and video bounds are checked from headers the same way.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
import torch
from torchvision.io import write_png
from typer.testing import CliRunner

from fedsim.cli import app
from fedsim.data import image_readers
from fedsim.data.audio_readers import probe_wav
from fedsim.data.folders import DataFolderError, scan_image_folder
from fedsim.data.image_readers import MAX_AUDIO_FRAMES, image_header
from fedsim.data.video_folders import video_header
from fedsim.plugins import load_plugins
from fedsim.registry import TASKS
from fedsim.factory import strategy_for, task_for

pytestmark = [pytest.mark.timeout(120),
              pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities:DeprecationWarning")]

LATE = 37  # an item no sampled probe reads (image and audio probes: 16 spread over 40 items)


def png_header(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR claiming ``width x height`` RGB pixels, a tiny IDAT and IEND."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _png(path: Path, value: int = 100) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_png(torch.full((1, 6, 6), value, dtype=torch.uint8), str(path))


def _wav(path: Path, seconds: float = 0.05) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), 0.1 * np.sin(np.arange(int(seconds * 16000)) / 5.0), 16000)


def _video(path: Path, frames: int = 3, side: int = 16) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.height = stream.width = side
        stream.pix_fmt = "yuv420p"
        for _ in range(frames):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.full((side, side, 3), 90, np.uint8),
                                                                   format="rgb24")))
        container.mux(stream.encode())


def _subject(folder: Path) -> None:
    """A cardio subject: a 1 s face video, a WAV and a reference-BPM CSV."""
    _video(folder / "face.mp4", frames=10)
    _wav(folder / "audio.wav", seconds=1.0)
    (folder / "ref.csv").write_text("time,bpm\n0,70\n1,70\n")


def _sorted_files(root: Path, suffix: str) -> list[Path]:
    return sorted(p for p in root.rglob(f"*{suffix}"))


def _image_folder(root: Path) -> Path:
    for cls in ("a", "b"):
        for i in range(20):
            _png(root / cls / f"img{i:02d}.png", 10 * i)
    bad = _sorted_files(root, ".png")[LATE]
    bad.write_bytes(b"not a png at all")
    return bad


def _audio_folder(root: Path) -> Path:
    for cls in ("a", "b"):
        for i in range(20):
            _wav(root / cls / f"clip{i:02d}.wav")
    bad = _sorted_files(root, ".wav")[LATE]
    bad.write_bytes(b"RIFF garbage that is no WAV")
    return bad


def _video_folder(root: Path) -> Path:
    for cls in ("a", "b"):
        for i in range(6):
            _video(root / cls / f"v{i}.avi")
    bad = _sorted_files(root, ".avi")[10]  # the scan's 8 decoded probes are items 0,2,3,5,6,8,9,11
    bad.write_bytes(b"\0" * 64)
    return bad


def _cardio_folder(root: Path) -> Path:
    for name in ("s1", "s2", "s3"):
        _subject(root / name)
    bad = root / "s2" / "ref.csv"
    bad.write_text("this is a note, not a table of beats\n")
    return bad


CORRUPT_LATE = {"image": _image_folder, "audio": _audio_folder, "video": _video_folder, "cardio": _cardio_folder}


def _check(task: str, data_dir: Path, *extra: str) -> tuple[int, list[str]]:
    result = CliRunner().invoke(app, ["run", "--task", task, "--data-dir", str(data_dir), "--clients", "1",
                                      "--clients-per-round", "1", "--check", *extra])
    return result.exit_code, result.output.strip().splitlines()


def test_every_folder_reading_task_is_covered():
    load_plugins()
    readers = {name for name in TASKS.names() if TASKS.get(name).reads_data_dir}
    assert readers == set(CORRUPT_LATE)


@pytest.mark.parametrize("task", sorted(CORRUPT_LATE))
def test_a_corrupt_file_late_in_the_folder_is_one_line_exit_2_before_start(tmp_path, task):
    # Prepare: a folder whose only bad file is one the sampled probes never read
    bad = CORRUPT_LATE[task](tmp_path / "data")
    # Execute
    code, lines = _check(task, tmp_path / "data")
    # Assert
    assert code == 2 and len(lines) == 1, lines
    assert bad.name in lines[0] and len(lines[0].replace(str(bad), "PATH")) <= 200  # short, besides the path


def test_a_decompression_bomb_header_is_refused_before_decoding(tmp_path):
    # Prepare: a 300-byte PNG that claims 20000 x 20000 pixels (1.2 GB decoded)
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header(20000, 20000))
    assert path.stat().st_size < 1000
    # Execute / Assert: the header alone refuses it, and so does the decoder's entry
    with pytest.raises(DataFolderError, match=r"bomb\.png is too large to decode \(400,000,000 pixels"):
        image_header(path)
    with pytest.raises(DataFolderError, match="too large"):
        image_readers.decode_file(path, 3)
    # just over the bound (8192^2) is refused too, just under is read from the header
    path.write_bytes(png_header(8193, 8192))
    with pytest.raises(DataFolderError, match="8193x8192"):
        image_header(path)
    path.write_bytes(png_header(8192, 8192))
    assert image_header(path) == (8192, 8192)


@pytest.mark.slow
def test_a_bomb_in_a_folder_fails_check_in_seconds_without_memory_growth(tmp_path):
    # Prepare: a folder of 40 small images, one replaced by the bomb header
    root = tmp_path / "data"
    _image_folder(root)
    bomb = _sorted_files(root, ".png")[LATE]
    bomb.write_bytes(png_header(20000, 20000))
    script = ("import resource, subprocess, sys, time; t = time.time(); "
              "p = subprocess.run([sys.executable, '-m', 'fedsim', 'run', '--task', 'image', '--data-dir', "
              f"{str(root)!r}, '--check'], capture_output=True, text=True); "
              "print(p.returncode, round(time.time() - t, 1), "
              "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024, repr(p.stderr.strip()))")
    # Execute: --check in a fresh process whose only child is the command (peak RSS of that child)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}).stdout.split(" ", 3)
    code, seconds, peak_mb, stderr = int(out[0]), float(out[1]), int(out[2]), out[3]
    # Assert: exit 2 naming the file; a plain --check peaks near 0.9 GB, a decode would need 10 GB
    assert code == 2 and bomb.name in stderr, stderr
    assert peak_mb < 1600, peak_mb
    assert seconds < 60


def test_a_wav_header_longer_than_the_bound_is_refused(tmp_path, monkeypatch):
    # Prepare: a real 1 s WAV and a bound below its length
    path = tmp_path / "long.wav"
    _wav(path, seconds=1.0)
    assert probe_wav(path)[0] == 16000
    monkeypatch.setattr("fedsim.data.audio_readers.MAX_AUDIO_FRAMES", 15999)
    # Execute / Assert
    with pytest.raises(DataFolderError, match=r"long\.wav is too large to decode \(16000 frames x 1 channels"):
        probe_wav(path)
    assert MAX_AUDIO_FRAMES == 2 ** 27


def test_a_video_header_over_the_frames_x_size_bound_is_refused(tmp_path, monkeypatch):
    # Prepare: 3 frames of 16 x 16 = 768 pixels in all
    path = tmp_path / "v.avi"
    _video(path)
    assert video_header(path) == (3, 16, 16)
    monkeypatch.setattr("fedsim.data.video_folders.MAX_VIDEO_PIXELS", 767)
    # Execute / Assert
    with pytest.raises(DataFolderError, match=r"v\.avi is too large to decode \(3 frames of 16x16"):
        video_header(path)


def test_a_file_that_fails_only_on_full_decode_fails_its_client_naming_the_file(tmp_path):
    # Prepare: a PNG whose header is fine but whose pixel data is cut short
    from fedsim.client.app import train_cohort
    from fedsim.config import load_config

    root = tmp_path / "data"
    _image_folder(root)
    late = _sorted_files(root, ".png")[LATE]  # not one the channel probe decodes
    good = _sorted_files(root, ".png")[0].read_bytes()
    late.write_bytes(good[:41] + b"\xff" * 8 + good[49:])  # IDAT bytes scrambled, header intact
    index = scan_image_folder(root, seed=0)
    index.check_files()  # headers pass: the pre-check cannot see it
    exp = load_config(None, {"task.name": "image", "task.data_dir": str(root), "federation.clients": 2,
                             "federation.clients_per_round": 1, "partitioning.kind": "iid",
                             "evaluation.linear_probe": False})
    task = task_for(exp)
    holder = next(c for c in range(2) if late.name in " ".join(index.files[i] for i in task._folder.client_items(c)))

    class Resident:  # what train_cohort asks of the node: the strategy and one client's training
        strategy = strategy_for(exp)
        hooks = strategy.client_hooks()

        def train(self, global_arrays, cid, ctx, store):
            task.client_dataset(cid)
            raise AssertionError("the corrupt file was decoded")

    class Round:
        server_round, aggregation, round_timeout = 1, 0, None

    # Execute
    reply = train_cohort(Resident(), task.build_model().state_dict(), [holder], Round(), None)
    # Assert: counted as one failed client, the message names the file
    from fedsim import records as R

    assert reply.metric_records[R.METRICS]["failed:client-exception"] == 1
    assert f"DataFolderError: image {late}" in reply.config_records[R.ERRORS]["client-exception"]

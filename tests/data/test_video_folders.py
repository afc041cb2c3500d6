"""UCF-101-style video folders: tiny videos written with PyAV and frame folders read back."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch
from torchvision.io import write_png

from fedsim.data.video_folders import DataFolderError, load_clips, scan_video_folder

pytestmark = pytest.mark.timeout(60)


def write_video(path: Path, frames: np.ndarray, fps: int = 10) -> None:
    """uint8 frames ``(t, h, w, 3)`` as an MPEG-4 video with PyAV."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())


def ramp(t: int, colour: tuple[int, int, int], h: int = 48, w: int = 64) -> np.ndarray:
    """Frames of one flat colour whose brightness rises with the frame index."""
    scale = np.linspace(0.3, 1.0, t)[:, None, None, None]
    return (scale * np.asarray(colour)[None, None, None, :] * np.ones((t, h, w, 3))).astype(np.uint8)


@pytest.fixture
def ucf(tmp_path: Path) -> Path:
    root = tmp_path / "ucf"
    for name, colour in (("ApplyLipstick", (200, 40, 40)), ("Archery", (40, 40, 200))):
        (root / name).mkdir(parents=True)
        for group in (1, 8, 9):
            write_video(root / name / f"v_{name}_g{group:02d}_c01.avi", ramp(12, colour))
    return root


def test_a_folder_of_tiny_videos_reads_back_with_the_right_shape_and_colour(ucf):
    # Execute
    index = scan_video_folder(ucf, seed=0)
    clips = load_clips(index, index.train_ids, frames=8, size=16)
    # Assert: UCF-101 split 1 holds out group 1; groups are the natural ids
    assert index.kind == "video-files" and index.classes == ("ApplyLipstick", "Archery")
    assert index.held_out == "ucf101-split1" and len(index.eval_ids) == 2 and len(index.train_ids) == 4
    assert index.natural_id_names == ("g08", "g09")
    assert clips.shape == (4, 3, 8, 16, 16) and clips.dtype == torch.float32
    red = clips[index.labels[index.train_ids] == 0]
    assert float(red[:, 0].mean()) > 2 * float(red[:, 2].mean())  # lossy codec, colour kept
    # the middle 8 of 12 frames (2..9): brightness rises from the first to the last
    assert float(red[:, 0, -1].mean()) > float(red[:, 0, 0].mean()) + 0.1


def test_a_short_video_repeats_its_last_frame(ucf):
    index = scan_video_folder(ucf, seed=0)
    clip = load_clips(index, [0], frames=16, size=8)[0]
    assert clip.shape == (3, 16, 8, 8) and torch.allclose(clip[:, -1], clip[:, -4], atol=1e-6)


def test_frame_folders_read_back_in_name_order(tmp_path):
    # Prepare: 2 classes x 3 clips, each a folder of 5 PNG frames whose brightness is 40·index
    for c in ("jump", "run"):
        for k in range(3):
            clip = tmp_path / c / f"clip{k}"
            clip.mkdir(parents=True)
            for f in range(5):
                write_png(torch.full((3, 12, 20), 40 * f, dtype=torch.uint8), str(clip / f"{f:03d}.png"))
    # Execute
    index = scan_video_folder(tmp_path, seed=0)
    clips = load_clips(index, [0, 5], frames=3, size=10)
    # Assert: the middle three frames 1, 2, 3
    assert index.kind == "frame-folders" and index.held_out == "seeded-split"
    assert clips.shape == (2, 3, 3, 10, 10)
    assert torch.allclose(clips[:, :, :, 5, 5], torch.tensor([40.0, 80.0, 120.0]) / 255, atol=1e-6)


def test_malformed_folders_are_one_line_errors(tmp_path):
    with pytest.raises(DataFolderError, match="does not exist"):
        scan_video_folder(tmp_path / "nope", seed=0)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for name in ("a/x1.avi", "a/x2.avi", "b/y1.avi", "b/y2.avi"):
        (tmp_path / name).write_bytes(b"not a video")
    with pytest.raises(DataFolderError, match="cannot read video") as err:
        scan_video_folder(tmp_path, seed=0)
    assert "\n" not in str(err.value)
    (tmp_path / "c").mkdir()
    with pytest.raises(DataFolderError, match="holds no videos"):
        scan_video_folder(tmp_path, seed=0)

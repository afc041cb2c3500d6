"""The folder-recipe bench's inputs: benchmarks/make_folders.py writes folders the readers
accept, and the photo views (:mod:`fedsim.data.folder_augmentations`) do what they say."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from fedsim.config import load_config
from fedsim.data.audio_folders import load_clips, scan_audio_folder
from fedsim.data.folder_augmentations import PhotoRanges, _rotate_hue, photo_augment, spectrogram_crop
from fedsim.data.folders import load_images, scan_image_folder
from fedsim.factory import task_for

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]
NONE = PhotoRanges(min_area=1.0, max_log_aspect=0.0, flip=0.0, jitter=0.0, grey=0.0)


def _make_folders():
    spec = importlib.util.spec_from_file_location("make_folders", ROOT / "benchmarks" / "make_folders.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    return _make_folders().make_folders(tmp_path_factory.mktemp("folders"), seed=3, scale=0.05)


def test_the_glyph_folder_is_an_image_folder_with_unseen_fonts_held_out(folders):
    index = scan_image_folder(folders["glyphs"], seed=0)
    assert (index.kind, index.classes, index.channels) == ("image-folder", tuple("0123456789"), 3)
    # scale 0.05: 4 training and 2 test images per digit; test/ is the held-out split
    assert (len(index.train_ids), len(index.eval_ids)) == (40, 20)
    assert index.held_out == "test-split"
    train_fonts = {index.files[i].rsplit("/", 1)[-1][:3] for i in index.train_ids}
    test_fonts = {index.files[i].rsplit("/", 1)[-1][:3] for i in index.eval_ids}
    assert not train_fonts & test_fonts or len(train_fonts | test_fonts) == 1  # one default font: shared
    x = load_images(index, index.train_ids[:4], image_size=28, channels=3)
    assert x.shape == (4, 3, 28, 28) and 0 <= x.min() < x.max() <= 1


def test_the_vowel_folder_is_an_audio_folder_with_unseen_speakers_held_out(folders):
    index = scan_audio_folder(folders["vowels"], seed=0)
    assert index.classes == ("a", "ai", "au", "e", "i", "o", "oi", "u")
    # 2 training speakers × 2 clips × 8 vowels; 2 test speakers (ids 2, 3) × 2 clips × 8
    assert (len(index.train_ids), len(index.eval_ids), index.held_out) == (32, 32, "test-split")
    assert {index.files[i].rsplit("/", 1)[-1][:4] for i in index.eval_ids} == {"s002", "s003"}
    assert index.natural_ids is not None  # the speaker prefix spans classes: natural partitioning works
    clips = load_clips(index, index.train_ids[:3], clip_samples=16_000)
    assert clips.shape == (3, 16_000) and 0 < clips.abs().max() <= 1


def test_the_folders_are_a_function_of_the_seed(folders, tmp_path):
    again = _make_folders().make_folders(tmp_path, seed=3, scale=0.05)
    for name in ("glyphs", "vowels"):
        first = sorted(p for p in folders[name].rglob("*") if p.is_file())
        second = sorted(p for p in again[name].rglob("*") if p.is_file())
        assert [p.relative_to(folders[name]) for p in first] == [p.relative_to(again[name]) for p in second]
        assert all(a.read_bytes() == b.read_bytes() for a, b in zip(first[:6], second[:6]))


@pytest.mark.parametrize("task,folder", [("image", "glyphs"), ("audio", "vowels")])
def test_the_folder_specs_read_the_folders(folders, task, folder):
    exp = load_config(ROOT / "simulations" / f"folder_{task}.yaml", {"task.data_dir": str(folders[folder])})
    assert (exp.task.name, exp.task.data_dir) == (task, str(folders[folder]))


def test_the_audio_recipe_keeps_frequency_bands_and_stretches_the_mel_axis(folders):
    """folder_audio.yaml's two settings reach the model and the views: a 320-d encoder (64
    channels x 5 mel bands) and views that are BYOL-A crops of the task's log-mel."""
    exp = load_config(ROOT / "simulations" / "folder_audio.yaml", {"task.data_dir": str(folders["vowels"])})
    task = task_for(exp)
    model = task.build_model()
    assert model.backbone.out_dim == 320
    clips = task.client_dataset(0)["audio"][:2]
    spec = task.view(clips, torch.Generator().manual_seed(0))
    assert spec.shape == (2, 1, 40, 41)
    with torch.no_grad():
        assert model.backbone(spec).shape == (2, 320)
    # the crop is drawn after the task's own view, from the same generator
    g = torch.Generator().manual_seed(0)
    by_hand = spectrogram_crop(task.sound_views.view(clips, g), g, (0.85, 1.15))
    torch.testing.assert_close(spec, by_hand)


def test_photo_views_without_any_draw_are_the_images():
    x = torch.rand(5, 3, 8, 8)
    out = photo_augment(x, torch.Generator().manual_seed(0), ranges=NONE)
    torch.testing.assert_close(out, x, atol=1e-5, rtol=0)


def test_a_flip_mirrors_and_a_grey_view_has_equal_channels():
    x = torch.rand(4, 3, 8, 8)
    flipped = photo_augment(x, torch.Generator().manual_seed(0), ranges=PhotoRanges(
        min_area=1.0, max_log_aspect=0.0, flip=1.0, jitter=0.0, grey=0.0))
    torch.testing.assert_close(flipped, x.flip(-1), atol=1e-5, rtol=0)
    grey = photo_augment(x, torch.Generator().manual_seed(0), ranges=PhotoRanges(
        min_area=1.0, max_log_aspect=0.0, flip=0.0, jitter=0.0, grey=1.0))
    expected = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    for c in range(3):
        torch.testing.assert_close(grey[:, c], expected, atol=1e-5, rtol=0)


def test_a_hue_rotation_keeps_luma_and_a_full_turn_is_the_identity():
    x = torch.rand(3, 3, 4, 4)
    turns = torch.tensor([0.25, 1.0, 0.0])
    out = _rotate_hue(x, turns)
    luma = lambda t: 0.299 * t[:, 0] + 0.587 * t[:, 1] + 0.114 * t[:, 2]  # noqa: E731
    torch.testing.assert_close(luma(out), luma(x), atol=1e-5, rtol=0)
    torch.testing.assert_close(out[1:], x[1:], atol=1e-5, rtol=0)
    assert (out[0] - x[0]).abs().max() > 0.05  # a quarter turn changes the colours


def test_a_crop_zooms_in_and_views_are_a_function_of_the_generator():
    # a left-to-right ramp: a crop of half the width spans half the ramp's range
    x = torch.linspace(0, 1, 16).expand(2, 1, 16, 16).contiguous()
    crop = PhotoRanges(min_area=0.25, max_log_aspect=0.0, flip=0.0, jitter=0.0, grey=0.0)
    g = torch.Generator().manual_seed(1)
    out = photo_augment(x, g, ranges=crop)
    span = out[:, 0, 8].amax(-1) - out[:, 0, 8].amin(-1)
    assert bool(((span > 0.45) & (span < 1.0 + 1e-6)).all())
    again = photo_augment(x, torch.Generator().manual_seed(1), ranges=crop)
    torch.testing.assert_close(out, again)
    assert np.isfinite(out.numpy()).all()


def test_a_spectrogram_crop_of_the_whole_axis_is_the_identity_and_a_half_crop_stretches():
    spec = torch.randn(3, 1, 8, 12)
    same = spectrogram_crop(spec, torch.Generator().manual_seed(0), (1.0, 1.0))
    torch.testing.assert_close(same, spec, atol=1e-5, rtol=0)
    # a ramp over the mel bands: a crop of half of each axis spans half the ramp
    ramp = torch.linspace(0, 1, 32)[:, None].expand(32, 12).expand(2, 1, 32, 12).contiguous()
    half = spectrogram_crop(ramp, torch.Generator().manual_seed(0), (0.5, 0.5))
    span = half[:, 0, :, 6].amax(-1) - half[:, 0, :, 6].amin(-1)
    torch.testing.assert_close(span, torch.full((2,), 0.5), atol=0.05, rtol=0)


def test_a_spectrogram_crop_with_low_above_high_is_refused():
    from fedsim.tasks.audio import AudioParams

    with pytest.raises(ValueError, match="spectrogram_crop"):
        AudioParams(spectrogram_crop=(1.2, 0.8))

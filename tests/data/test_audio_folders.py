"""Real audio folders: layouts, held-out splits, natural ids, clip reading, and one-line errors.

Every folder is written into ``tmp_path`` by the test: tiny WAV files through soundfile.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from fedsim.data import audio_folders
from fedsim.data.audio_folders import AudioIndex, DataFolderError, load_clips, scan_audio_folder
from fedsim.data.folders import ImageIndex, natural_id_groups

pytestmark = pytest.mark.timeout(60)

ESC50_HEADER = "filename,fold,target,category,esc10,src_file,take\n"


# ---- writers --------------------------------------------------------------------------------

def _wav(path: Path, seconds: float = 0.05, rate: int = 16000, data: np.ndarray | None = None,
         subtype: str = "PCM_16") -> Path:
    """A WAV file: ``data`` ``(frames[, channels])`` or a quiet 440 Hz tone."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if data is None:
        data = 0.1 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * rate)) / rate)
    sf.write(str(path), data, rate, subtype=subtype)
    return path


def _speech_commands(root: Path, *, testing: list[str] | None = None) -> Path:
    """3 words × 3 speakers × 2 takes, noise folder, README and (optionally) testing_list.txt."""
    for word in ("yes", "no", "up"):
        for speaker in ("0a7c2a8d", "1b4c9b89", "c1d39ce8"):
            for take in range(2):
                _wav(root / word / f"{speaker}_nohash_{take}.wav")
    _wav(root / "_background_noise_" / "white_noise.wav", seconds=0.2)
    (root / "README.md").write_text("speech commands\n")
    (root / "LICENSE").write_text("CC-BY-4.0\n")
    (root / "validation_list.txt").write_text("yes/0a7c2a8d_nohash_1.wav\n")
    if testing is not None:
        (root / "testing_list.txt").write_text("".join(f"{t}\n" for t in testing))
    return root


def _esc50(folder: Path, rows: list[tuple[str, int, int, str]] | None = None, header: str = ESC50_HEADER) -> Path:
    """ESC-50 layout; by default 3 categories × 5 folds, one clip each."""
    if rows is None:
        rows = [(f"{fold}-{100 + t}-A-0.wav", fold, t, cat) for fold in range(1, 6)
                for t, cat in ((0, "dog"), (1, "rooster"), (2, "rain"))]
    for name, *_ in rows:
        _wav(folder / "audio" / name, rate=44100)
    (folder / "meta").mkdir(parents=True, exist_ok=True)
    (folder / "meta" / "esc50.csv").write_text(
        header + "".join(f"{n},{f},{t},{c},False,{n[2:5]},A\n" for n, f, t, c in rows))
    return folder


def _tree(root: Path, counts: dict[str, int], stem: str = "clip") -> Path:
    for cls, n in counts.items():
        for i in range(n):
            _wav(root / cls / f"{stem}{i}.wav")
    return root


# ---- layouts --------------------------------------------------------------------------------

def test_speech_commands_with_testing_list(tmp_path):
    # Prepare
    held = ["yes/0a7c2a8d_nohash_0.wav", "no/1b4c9b89_nohash_1.wav", "up/c1d39ce8_nohash_0.wav"]
    root = _speech_commands(tmp_path / "sc", testing=held + ["down/ffffffff_nohash_0.wav"])  # unknown: ignored
    # Execute
    index = scan_audio_folder(root, seed=0)
    # Assert: the layout, its classes (no _background_noise_), the listed hold-out
    assert isinstance(index, AudioIndex) and index.kind == "speech-commands"
    assert index.classes == ("no", "up", "yes") and len(index) == 18
    assert index.held_out == "test-split"
    assert sorted(index.files[i] for i in index.eval_ids) == sorted(held)
    assert np.intersect1d(index.train_ids, index.eval_ids).size == 0
    assert len(index.train_ids) + len(index.eval_ids) == 18
    assert index.labels[index.files.index("up/c1d39ce8_nohash_0.wav")] == 1
    # speakers are the natural ids; folders.natural_id_groups works on the audio index
    assert index.natural_id_names == ("0a7c2a8d", "1b4c9b89", "c1d39ce8")
    groups = natural_id_groups(index)
    assert [len(g) for g in groups] == [5, 5, 5]
    assert all(index.files[i].split("/")[1].startswith(index.natural_id_names[k])
               for k, g in enumerate(groups) for i in g)
    # read-only arrays, JSON-able description listing the held-out files
    with pytest.raises(ValueError):
        index.labels[0] = 2
    record = json.loads(json.dumps(index.describe()))
    assert record["held_out_files"] == [index.files[i] for i in index.eval_ids] and record["natural_ids"] == 3


def test_index_has_the_image_index_attribute_names():
    # Assert: what the folder-client logic reads exists under the same name
    image_fields = set(ImageIndex.__dataclass_fields__)
    audio_fields = set(AudioIndex.__dataclass_fields__)
    shared = {"kind", "root", "classes", "labels", "files", "train_ids", "eval_ids", "held_out", "seed",
              "eval_fraction", "natural_ids", "natural_id_names"}
    assert shared <= image_fields & audio_fields
    assert all(hasattr(AudioIndex, a) for a in ("num_classes", "describe", "item_name", "__len__"))


def test_speech_commands_without_testing_list_holds_out_a_seeded_stratified_split(tmp_path):
    # Prepare
    root = _speech_commands(tmp_path / "sc")
    # Execute
    a, b = scan_audio_folder(root, seed=3), scan_audio_folder(root, seed=3)
    # Assert: round(0.2 * 6) = 1 clip of each word, the same for the same seed
    assert a.kind == "speech-commands" and a.held_out == "seeded-split"
    np.testing.assert_array_equal(np.bincount(a.labels[a.eval_ids]), [1, 1, 1])
    np.testing.assert_array_equal(a.eval_ids, b.eval_ids)
    assert a.natural_id_names == ("0a7c2a8d", "1b4c9b89", "c1d39ce8")


def test_esc50_layout_folds_and_classes(tmp_path):
    # Prepare: an ESC-50-master subfolder, and a WAV the CSV does not list
    folder = _esc50(tmp_path / "data" / "ESC-50-master")
    _wav(folder / "audio" / "unlisted.wav")
    # Execute
    index = scan_audio_folder(tmp_path / "data", seed=0)
    fold1 = scan_audio_folder(tmp_path / "data", seed=0, heldout_fold=1)
    # Assert: classes in target order, fold 5 held out, unlisted file ignored, no natural ids
    assert index.kind == "esc-50" and index.root == str(folder.resolve())
    assert index.classes == ("dog", "rooster", "rain") and len(index) == 15
    assert index.held_out == "fold-split" and index.heldout_fold == 5
    assert set(index.folds[index.eval_ids]) == {5} and len(index.eval_ids) == 3
    assert sorted(index.labels[index.eval_ids]) == [0, 1, 2]
    assert all(f.startswith("audio/") and f != "audio/unlisted.wav" for f in index.files)
    assert index.natural_ids is None
    assert set(fold1.folds[fold1.eval_ids]) == {1}
    assert "fold 5" in index.describe()["held_out_rule"]


def test_esc50_targets_with_gaps_become_dense_labels(tmp_path):
    # Prepare: ESC-10-like subset, targets 0, 10, 41
    rows = [(f"{f}-{t}-A-0.wav", f, t, c) for f in (1, 5) for t, c in ((0, "dog"), (10, "rain"), (41, "chainsaw"))]
    folder = _esc50(tmp_path / "esc", rows)
    # Execute
    index = scan_audio_folder(folder, seed=0)
    # Assert
    assert index.classes == ("dog", "rain", "chainsaw")
    assert sorted(set(index.labels.tolist())) == [0, 1, 2]


def test_generic_class_folders_without_natural_ids(tmp_path):
    # Prepare: names repeat only the class; README and a notes folder are ignored
    root = _tree(tmp_path / "animals", {"cats": 4, "dogs": 5})
    (root / "README.txt").write_text("two classes\n")
    (root / "cats" / "LICENSE").write_text("mine\n")
    (root / "notes").mkdir()
    (root / "notes" / "todo.md").write_text("nothing\n")
    # Execute
    index = scan_audio_folder(root, seed=0)
    # Assert
    assert index.kind == "audio-folder" and index.classes == ("cats", "dogs")
    assert index.held_out == "seeded-split" and index.natural_ids is None
    np.testing.assert_array_equal(np.bincount(index.labels[index.eval_ids]), [1, 1])


def test_generic_class_folders_with_user_ids_and_nested_folders(tmp_path):
    # Prepare: u1..u3 record both classes, one inside a nested folder
    for cls in ("knock", "whistle"):
        for user in ("u1", "u2", "u3"):
            for take in range(2):
                _wav(tmp_path / "f" / cls / ("deep" if take else "") / f"{user}-{take}.wav")
    # Execute
    index = scan_audio_folder(tmp_path / "f", seed=0)
    # Assert
    assert index.natural_id_names == ("u1", "u2", "u3")
    assert "knock/deep/u1-1.wav" in index.files


def test_train_and_test_folders(tmp_path):
    # Prepare
    _tree(tmp_path / "d" / "train", {"a": 3, "b": 3})
    _tree(tmp_path / "d" / "test", {"a": 1, "b": 2})
    # Execute
    index = scan_audio_folder(tmp_path / "d", seed=0)
    # Assert
    assert index.held_out == "test-split" and len(index.eval_ids) == 3
    assert all(index.files[i].startswith("test/") for i in index.eval_ids)
    assert all(index.files[i].startswith("train/") for i in index.train_ids)


# ---- clips ----------------------------------------------------------------------------------

def test_44k_stereo_file_is_mixed_resampled_and_zero_padded_in_the_middle(tmp_path):
    # Prepare: 0.5 s of a 1 kHz tone in the left channel, silence in the right, at 44.1 kHz
    t = np.arange(22050) / 44100
    stereo = np.stack([0.8 * np.sin(2 * np.pi * 1000 * t), np.zeros_like(t)], 1)
    root = _tree(tmp_path / "d", {"a": 2, "b": 2})
    _wav(root / "a" / "stereo.wav", rate=44100, data=stereo, subtype="FLOAT")
    index = scan_audio_folder(root, seed=0)
    item = index.files.index("a/stereo.wav")
    # Execute
    clip = load_clips(index, [item], clip_samples=16000)[0]
    # Assert: 8000 samples of signal centred in 16000, mean of the channels (0.4 peak), 1 kHz
    assert clip.shape == (16000,) and clip.dtype == torch.float32
    assert clip[:3990].abs().max() < 1e-3 and clip[12010:].abs().max() < 1e-3
    middle = clip[5000:11000]
    assert abs(middle.abs().max().item() - 0.4) < 0.01
    assert torch.fft.rfft(middle).abs().argmax().item() * 16000 / len(middle) == pytest.approx(1000, abs=5)


def test_long_file_is_centre_cropped(tmp_path):
    # Prepare: a 16 kHz ramp of 2 s (float WAV keeps the values exact), and a 44.1 kHz ramp of 3 s
    root = _tree(tmp_path / "d", {"a": 2, "b": 2})
    _wav(root / "a" / "ramp.wav", data=np.arange(32000) / 32000, subtype="FLOAT")
    _wav(root / "b" / "ramp44.wav", rate=44100, data=np.linspace(-1, 1, 3 * 44100), subtype="FLOAT")
    index = scan_audio_folder(root, seed=0)
    # Execute
    clips = load_clips(index, [index.files.index("a/ramp.wav"), index.files.index("b/ramp44.wav")],
                       clip_samples=16000)
    # Assert: the middle second of each
    torch.testing.assert_close(clips[0], torch.arange(8000, 24000) / 32000, atol=1e-6, rtol=0)
    assert clips[1][8000].item() == pytest.approx(0.0, abs=1e-3)
    assert clips[1][0].item() == pytest.approx(-1 / 3, abs=2e-3)
    assert clips[1][-1].item() == pytest.approx(1 / 3, abs=2e-3)


def test_load_clips_reads_only_the_requested_files(tmp_path, monkeypatch):
    # Prepare: a corrupt WAV the scan's probes (first and last file only) do not reach
    root = _tree(tmp_path / "d", {"a": 20, "b": 20})
    bad = root / "a" / "clip13.wav"
    bad.write_bytes(b"RIFF not really a wave file")
    monkeypatch.setattr(audio_folders, "AUDIO_PROBES", 2)
    index = scan_audio_folder(root, seed=0)
    good = [i for i, f in enumerate(index.files) if f != "a/clip13.wav"][:5]
    # Execute / Assert: other files load; the bad one is named when loaded
    assert load_clips(index, good, clip_samples=400).shape == (5, 400)
    with pytest.raises(DataFolderError) as err:
        load_clips(index, [index.files.index("a/clip13.wav")], clip_samples=400)
    assert str(bad) in str(err.value) and "\n" not in str(err.value)


# ---- malformed folders ----------------------------------------------------------------------

def _missing(tmp: Path) -> tuple[Path, Path]:
    return tmp / "nope", tmp / "nope"


def _a_file(tmp: Path) -> tuple[Path, Path]:
    (tmp / "f.wav").write_bytes(b"x")
    return tmp / "f.wav", tmp / "f.wav"


def _no_wav(tmp: Path) -> tuple[Path, Path]:
    (tmp / "d" / "a").mkdir(parents=True)
    (tmp / "d" / "a" / "notes.txt").write_text("x")
    return tmp / "d", tmp / "d"


def _mp3(tmp: Path) -> tuple[Path, Path]:
    _tree(tmp / "d", {"a": 2, "b": 2})
    (tmp / "d" / "b" / "song.mp3").write_bytes(b"ID3")
    return tmp / "d", tmp / "d" / "b" / "song.mp3"


def _empty_class(tmp: Path) -> tuple[Path, Path]:
    _tree(tmp / "d", {"a": 2, "b": 2})
    (tmp / "d" / "c").mkdir()
    return tmp / "d", tmp / "d" / "c"


def _one_class(tmp: Path) -> tuple[Path, Path]:
    _tree(tmp / "d", {"a": 3})
    return tmp / "d", tmp / "d"


def _unreadable(tmp: Path) -> tuple[Path, Path]:
    _tree(tmp / "d", {"a": 2, "b": 2})
    (tmp / "d" / "b" / "clip1.wav").write_bytes(b"garbage")
    return tmp / "d", tmp / "d" / "b" / "clip1.wav"


def _csv(text: str) -> Callable[[Path], tuple[Path, Path]]:
    def make(tmp: Path) -> tuple[Path, Path]:
        folder = _esc50(tmp / "esc")
        (folder / "meta" / "esc50.csv").write_text(text)
        return folder, folder / "meta" / "esc50.csv"
    return make


def _csv_missing_file(tmp: Path) -> tuple[Path, Path]:
    folder = _esc50(tmp / "esc")
    (folder / "audio" / "3-102-A-0.wav").unlink()
    return folder, folder / "audio" / "3-102-A-0.wav"


def _fold_absent(tmp: Path) -> tuple[Path, Path]:
    rows = [(f"{f}-{t}-A-0.wav", f, t, c) for f in (1, 2) for t, c in ((0, "dog"), (1, "rain"))]
    return _esc50(tmp / "esc", rows), tmp / "esc"


def _listed_nothing(tmp: Path) -> tuple[Path, Path]:
    root = _speech_commands(tmp / "sc", testing=["down/0_nohash_0.wav"])
    return root, root / "testing_list.txt"


MALFORMED = {
    "missing folder": _missing,
    "a file, not a folder": _a_file,
    "no WAV files": _no_wav,
    "an mp3 among the WAVs": _mp3,
    "an empty class folder": _empty_class,
    "one class": _one_class,
    "an unreadable WAV (probed)": _unreadable,
    "csv without a fold column": _csv("filename,target,category\n1-1-A-0.wav,0,dog\n"),
    "csv with a non-integer fold": _csv(ESC50_HEADER + "1-100-A-0.wav,one,0,dog,False,100,A\n"),
    "csv with no rows": _csv(ESC50_HEADER),
    "csv with one target, two categories": _csv(ESC50_HEADER + "1-100-A-0.wav,1,0,dog,False,1,A\n"
                                                "5-100-A-0.wav,5,0,cat,False,1,A\n"),
    "csv listing a missing file": _csv_missing_file,
    "held-out fold absent": _fold_absent,
    "testing_list naming no file": _listed_nothing,
}


@pytest.mark.parametrize("make", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_folder_is_one_line_naming_the_path(tmp_path, make):
    # Prepare
    path, named = make(tmp_path)
    # Execute
    with pytest.raises(DataFolderError) as err:
        scan_audio_folder(path, seed=0)
    # Assert
    message = str(err.value)
    assert "\n" not in message and str(named.resolve() if named.exists() else named) in message, message

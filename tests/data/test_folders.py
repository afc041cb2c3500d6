"""Real data folders: layouts, held-out splits, natural ids, pixels, and one-line errors.

Every folder is written into ``tmp_path`` by the test: tiny PNG/JPEG files through
torchvision's writers, CIFAR-style batches through pickle.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.io import write_jpeg, write_png

from fedsim.data.folders import DataFolderError, load_images, natural_id_groups, scan_image_folder
from fedsim.data.image_readers import read_cifar_batch

pytestmark = [
    pytest.mark.timeout(60),
    # torchvision 0.29 deprecates its image codecs in favour of TorchCodec (not installed here)
    pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities:DeprecationWarning"),
]


# ---- writers --------------------------------------------------------------------------------

def _image(path: Path, h: int = 6, w: int = 6, colour: tuple[int, ...] = (128,)) -> Path:
    """A constant image file: grey when ``colour`` has one value, RGB when three."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = torch.tensor(colour, dtype=torch.uint8).view(-1, 1, 1).expand(-1, h, w).contiguous()
    (write_jpeg(pixels, str(path), quality=100) if path.suffix.lower() in (".jpg", ".jpeg")
     else write_png(pixels, str(path)))
    return path


def _tree(root: Path, counts: dict[str, int], stem: str = "img") -> Path:
    for cls, n in counts.items():
        for i in range(n):
            _image(root / cls / f"{stem}{i}.png", colour=(10 * i,))
    return root


def _cifar_batch(path: Path, data: np.ndarray, labels: list[int], key: bytes = b"labels") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps({b"data": data, key: labels}, protocol=2))


def _cifar_data(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 3072), dtype=np.uint8)


def _cifar10(folder: Path, per_batch: int = 3, n_test: int = 4) -> dict[str, np.ndarray]:
    written = {}
    for k in range(1, 6):
        written[f"data_batch_{k}"] = _cifar_data(per_batch, k)
        _cifar_batch(folder / f"data_batch_{k}", written[f"data_batch_{k}"],
                     [(k + i) % 10 for i in range(per_batch)])
    written["test_batch"] = _cifar_data(n_test, 99)
    _cifar_batch(folder / "test_batch", written["test_batch"], [i % 10 for i in range(n_test)])
    names = [f"class{k}".encode() for k in range(10)]
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}, protocol=2))
    return written


def _one_line_naming(exc: pytest.ExceptionInfo, path: Path) -> None:
    message = str(exc.value)
    assert "\n" not in message
    assert str(path) in message or str(path.resolve()) in message


# ---- ImageFolder layouts --------------------------------------------------------------------

def test_image_folder_without_test_split_holds_out_a_stratified_share(tmp_path):
    # Prepare: 3 classes × 5 images; 20 % of 5 is one held-out image per class
    root = _tree(tmp_path / "data", {"cat": 5, "dog": 5, "emu": 5})
    # Execute
    index = scan_image_folder(root, seed=0)
    # Assert
    assert index.kind == "image-folder" and index.held_out == "seeded-split"
    assert index.classes == ("cat", "dog", "emu")
    assert len(index) == 15 and len(index.train_ids) == 12 and len(index.eval_ids) == 3
    assert np.bincount(index.labels[index.eval_ids]).tolist() == [1, 1, 1]
    assert not set(index.train_ids) & set(index.eval_ids)
    assert sorted([*index.train_ids, *index.eval_ids]) == list(range(15))
    for i in range(15):
        assert index.files[i].split("/")[0] == index.classes[index.labels[i]]


def test_seeded_split_is_a_function_of_the_seed(tmp_path):
    # Prepare
    root = _tree(tmp_path / "data", {"a": 10, "b": 10})
    # Execute
    first, again = scan_image_folder(root, seed=3), scan_image_folder(root, seed=3)
    others = [scan_image_folder(root, seed=s).eval_ids.tolist() for s in range(4, 8)]
    # Assert
    assert first.eval_ids.tolist() == again.eval_ids.tolist()
    assert any(o != first.eval_ids.tolist() for o in others)


def test_train_and_test_folders_share_the_train_class_ids(tmp_path):
    # Prepare: test/ lacks class "a", so test/b must keep b's train id 1
    _tree(tmp_path / "data" / "train", {"a": 2, "b": 3, "c": 1})
    _tree(tmp_path / "data" / "test", {"b": 2, "c": 1})
    # Execute
    index = scan_image_folder(tmp_path / "data", seed=0)
    # Assert
    assert index.held_out == "test-split" and index.classes == ("a", "b", "c")
    assert index.labels[index.train_ids].tolist() == [0, 0, 1, 1, 1, 2]
    assert index.labels[index.eval_ids].tolist() == [1, 1, 2]
    assert all(index.files[i].startswith("test/") for i in index.eval_ids)
    assert not any(index.files[i].startswith("test/") for i in index.train_ids)


def test_describe_is_json_and_lists_the_held_out_files(tmp_path):
    # Prepare
    root = _tree(tmp_path / "data", {"a": 4, "b": 4})
    index = scan_image_folder(root, seed=1)
    # Execute
    record = json.loads(json.dumps(index.describe()))
    # Assert
    assert record["kind"] == "image-folder" and record["num_classes"] == 2
    assert record["num_train"] == 6 and record["num_eval"] == 2 and record["held_out"] == "seeded-split"
    assert record["held_out_files"] == [index.files[i] for i in index.eval_ids]
    assert record["root"] == str(root.resolve())


def test_suffixes_are_case_insensitive_and_other_files_are_ignored(tmp_path):
    # Prepare
    root = tmp_path / "data"
    for name in ("a/x.PNG", "a/y.JPG", "a/z.jpeg", "b/x.png", "b/y.png"):
        _image(root / name)
    (root / "a" / "notes.txt").write_text("not an image")
    (root / "a" / ".DS_Store").write_bytes(b"\0")
    _image(root / "a" / ".hidden.png")
    _image(root / ".cache" / "x.png")  # a hidden folder is not a class
    (root / "empty").mkdir()  # a folder without images is not a class
    # Execute
    index = scan_image_folder(root, seed=0)
    # Assert
    assert index.classes == ("a", "b")
    assert sorted(index.files) == ["a/x.PNG", "a/y.JPG", "a/z.jpeg", "b/x.png", "b/y.png"]


def test_index_pickles_and_reads_the_same_pixels(tmp_path):
    # Prepare
    index = scan_image_folder(_tree(tmp_path / "data", {"a": 3, "b": 3}), seed=0)
    # Execute
    copy = pickle.loads(pickle.dumps(index))
    # Assert
    assert copy.files == index.files and copy.train_ids.tolist() == index.train_ids.tolist()
    assert torch.equal(load_images(copy, [0, 4], image_size=4, channels=1),
                       load_images(index, [0, 4], image_size=4, channels=1))


# ---- pixels ---------------------------------------------------------------------------------

@pytest.mark.parametrize("channels, size", [
    (1, 8),  # case: grey output, upsampled and downsampled
    (3, 8),  # case: colour output from grey and colour files
    (3, 5),  # case: an odd size crops the long side
])
def test_grey_and_colour_files_of_any_size_load_to_the_requested_shape(tmp_path, channels, size):
    # Prepare: grey 10×14 PNG, red 20×7 PNG, blue 9×9 JPEG
    root = tmp_path / "data"
    _image(root / "a" / "grey.png", 10, 14, (128,))
    _image(root / "a" / "red.png", 20, 7, (255, 0, 0))
    _image(root / "b" / "blue.jpg", 9, 9, (0, 0, 255))
    _image(root / "b" / "grey2.png", 3, 3, (0,))
    index = scan_image_folder(root, seed=0)
    # Execute
    images = load_images(index, np.arange(len(index)), image_size=size, channels=channels)
    # Assert
    assert images.shape == (4, channels, size, size) and images.dtype == torch.float32
    assert images.min() >= 0.0 and images.max() <= 1.0
    grey = images[index.files.index("a/grey.png")]
    torch.testing.assert_close(grey, torch.full_like(grey, 128 / 255), atol=1e-5, rtol=0)


def test_colour_is_kept_when_three_channels_are_asked(tmp_path):
    # Prepare
    root = tmp_path / "data"
    _image(root / "a" / "red.png", 12, 6, (255, 0, 0))
    _image(root / "a" / "red2.png", 6, 6, (255, 0, 0))
    _image(root / "b" / "grey.png", 4, 4, (50,))
    _image(root / "b" / "grey2.png", 4, 4, (50,))
    index = scan_image_folder(root, seed=0)
    # Execute
    red = load_images(index, [index.files.index("a/red.png")], image_size=4, channels=3)[0]
    # Assert
    torch.testing.assert_close(red[0], torch.ones(4, 4))
    torch.testing.assert_close(red[1:], torch.zeros(2, 4, 4))


@pytest.mark.parametrize("colours, expected", [
    ([(128,), (30,)], 1),  # case: grey files only
    ([(128, 128, 128), (30, 30, 30)], 1),  # case: grey pictures saved as RGB count as grey
    ([(128,), (200, 10, 10)], 3),  # case: one colour file makes the folder colour
])
def test_channels_probe(tmp_path, colours, expected):
    # Prepare
    root = tmp_path / "data"
    for k, colour in enumerate(colours):
        _image(root / f"c{k}" / "x.png", colour=colour)
        _image(root / f"c{k}" / "y.png", colour=colour)
    # Execute
    index = scan_image_folder(root, seed=0)
    # Assert
    assert index.channels == expected


# ---- CIFAR python batches -------------------------------------------------------------------

def test_cifar10_batches_load_with_their_labels_names_and_pixels(tmp_path):
    # Prepare: the batches sit in the usual cifar-10-batches-py subfolder
    written = _cifar10(tmp_path / "data" / "cifar-10-batches-py")
    # Execute
    index = scan_image_folder(tmp_path / "data", seed=0)
    full = load_images(index, [0, 16], image_size=32, channels=3)
    small = load_images(index, index.train_ids, image_size=16, channels=1)
    # Assert
    assert index.kind == "cifar-10" and index.held_out == "test-split" and index.channels == 3
    assert index.classes == tuple(f"class{k}" for k in range(10))
    assert len(index.train_ids) == 15 and len(index.eval_ids) == 4
    assert index.labels[:3].tolist() == [1, 2, 3] and index.labels[index.eval_ids].tolist() == [0, 1, 2, 3]
    assert full.shape == (2, 3, 32, 32) and small.shape == (15, 1, 16, 16)
    # item 0 is data_batch_1 row 0; item 16 is test_batch row 1; CHW: channel 1, row 2, column 5
    assert full[0, 1, 2, 5].item() == pytest.approx(written["data_batch_1"][0, 1024 + 2 * 32 + 5] / 255)
    assert full[1, 2, 31, 31].item() == pytest.approx(written["test_batch"][1, 3071] / 255)
    assert index.describe()["held_out_rows"] == {"test_batch": [0, 1, 2, 3]}


def test_cifar100_batches_load_with_fine_labels(tmp_path):
    # Prepare
    folder = tmp_path / "cifar-100-python"
    train, test = _cifar_data(6, 1), _cifar_data(2, 2)
    _cifar_batch(folder / "train", train, [0, 1, 2, 3, 4, 99], key=b"fine_labels")
    _cifar_batch(folder / "test", test, [5, 99], key=b"fine_labels")
    names = [f"n{k}".encode() for k in range(100)]
    (folder / "meta").write_bytes(pickle.dumps({b"fine_label_names": names}, protocol=2))
    # Execute
    index = scan_image_folder(tmp_path, seed=0)
    images = load_images(index, [5, 7], image_size=8, channels=3)
    # Assert
    assert index.kind == "cifar-100" and index.num_classes == 100 and index.classes[99] == "n99"
    assert index.labels.tolist() == [0, 1, 2, 3, 4, 99, 5, 99]
    assert index.eval_ids.tolist() == [6, 7]
    assert images.shape == (2, 3, 8, 8) and 0.0 <= images.min() <= images.max() <= 1.0


def test_cifar_without_test_batch_holds_out_a_seeded_split(tmp_path):
    # Prepare
    _cifar_batch(tmp_path / "data_batch_1", _cifar_data(10, 0), [0] * 5 + [1] * 5)
    # Execute
    index = scan_image_folder(tmp_path, seed=0)
    # Assert
    assert index.held_out == "seeded-split" and index.classes == ("0", "1")
    assert np.bincount(index.labels[index.eval_ids]).tolist() == [1, 1]


def test_cifar_batch_pickled_by_numpy_1_loads(tmp_path):
    # Prepare: the downloaded batches name numpy.core.multiarray, numpy 2's numpy._core
    data = _cifar_data(2, 0)
    blob = pickle.dumps({b"data": data, b"labels": [4, 5]}, protocol=2)
    (tmp_path / "data_batch_1").write_bytes(blob.replace(b"numpy._core.", b"numpy.core."))
    # Execute
    pixels, labels = read_cifar_batch(tmp_path / "data_batch_1")
    # Assert
    assert np.array_equal(pixels.reshape(2, -1), data) and labels.tolist() == [4, 5]


def test_cifar_batch_is_decoded_once_per_process(tmp_path):
    # Prepare
    _cifar10(tmp_path)
    index = scan_image_folder(tmp_path, seed=0)
    # Execute
    load_images(index, [0], image_size=8, channels=3)
    # Assert: the scan, the load and a second read share one array
    assert read_cifar_batch(tmp_path / "data_batch_1")[0] is read_cifar_batch(tmp_path / "data_batch_1")[0]


# ---- natural ids ----------------------------------------------------------------------------

def test_writer_ids_in_file_names_become_natural_ids(tmp_path):
    # Prepare: writers w1, w2 (with "_") and u3 (with "-") each write both classes
    root = tmp_path / "data"
    for name in ("a/w1_0.png", "a/w1_1.png", "b/w1_2.png", "a/w2_0.png", "b/w2_1.png",
                 "b/w2_2.png", "a/u3-0.png", "b/u3-1.png"):
        _image(root / "train" / name)
    _image(root / "test" / "a" / "w9_0.png")  # a held-out writer no client has
    # Execute
    index = scan_image_folder(root, seed=0)
    groups = natural_id_groups(index)
    # Assert
    assert index.natural_id_names == ("u3", "w1", "w2")
    assert [[index.files[i].rsplit("/", 1)[-1] for i in g] for g in groups] == [
        ["u3-0.png", "u3-1.png"], ["w1_0.png", "w1_1.png", "w1_2.png"], ["w2_0.png", "w2_1.png", "w2_2.png"]]
    assert index.natural_ids[index.eval_ids].tolist() == [-1]


def test_natural_id_groups_match_flwr_natural_id_partitioner(tmp_path):
    # Prepare
    root = tmp_path / "data"
    for k in range(12):
        _image(root / f"c{k % 3}" / f"writer{k % 4}_{k}.png")
    index = scan_image_folder(root, seed=0)
    from datasets import Dataset
    from flwr_datasets.partitioner import NaturalIdPartitioner
    partitioner = NaturalIdPartitioner(partition_by="writer")
    partitioner.dataset = Dataset.from_dict({
        "writer": [index.natural_id_names[n] for n in index.natural_ids[index.train_ids]],
        "item": index.train_ids.tolist()})
    # Execute
    groups = natural_id_groups(index)
    # Assert
    assert len(groups) == partitioner.num_partitions
    for k, group in enumerate(groups):
        assert sorted(partitioner.load_partition(k)["item"]) == group.tolist()


@pytest.mark.parametrize("names", [
    ["a/cat_0.png", "a/cat_1.png", "b/dog_0.png", "b/dog_1.png"],  # case: prefix only repeats the class
    ["a/img0.png", "a/img1.png", "b/img2.png", "b/img3.png"],  # case: no separator
    ["a/w1_0.png", "a/w1_1.png", "b/w1_2.png", "b/w2_0.png"],  # case: only one id has 2 files
    ["a/w1_0.png", "a/w1_1.png", "b/w2_0.png", "b/w2_1.png", "b/plain.png"],  # case: one file has no id
])
def test_file_names_without_writer_ids_give_no_natural_ids(tmp_path, names):
    # Prepare
    for name in names:
        _image(tmp_path / "train" / name)
    _image(tmp_path / "test" / "a" / "t.png")
    # Execute
    index = scan_image_folder(tmp_path, seed=0)
    # Assert
    assert index.natural_ids is None
    with pytest.raises(DataFolderError, match="no natural ids"):
        natural_id_groups(index)


# ---- malformed folders ----------------------------------------------------------------------

# each maker writes a malformed folder and returns (what to scan, the path the message names)

def _missing(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "nope", tmp_path / "nope"


def _a_file(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "f.png").write_bytes(b"x")
    return tmp_path / "f.png", tmp_path / "f.png"


def _empty(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "a").mkdir()
    (tmp_path / "readme.txt").write_text("no images")
    return tmp_path, tmp_path


def _one_class(tmp_path: Path) -> tuple[Path, Path]:
    return _tree(tmp_path, {"only": 3}), tmp_path


def _corrupt_png(tmp_path: Path) -> tuple[Path, Path]:
    _tree(tmp_path, {"a": 2, "b": 2})
    (tmp_path / "b" / "img1.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    return tmp_path, tmp_path / "b" / "img1.png"


def _unknown_test_class(tmp_path: Path) -> tuple[Path, Path]:
    _tree(tmp_path / "train", {"a": 2, "b": 2})
    _tree(tmp_path / "test", {"a": 1, "zebra": 1})
    return tmp_path, tmp_path / "test"


def _test_without_train(tmp_path: Path) -> tuple[Path, Path]:
    _tree(tmp_path / "test", {"a": 2, "b": 2})
    return tmp_path, tmp_path


def _bad_pickle(tmp_path: Path) -> tuple[Path, Path]:
    _cifar10(tmp_path)
    (tmp_path / "data_batch_3").write_bytes(b"\x80\x02 truncated")
    return tmp_path, tmp_path / "data_batch_3"


def _wrong_shape(tmp_path: Path) -> tuple[Path, Path]:
    _cifar10(tmp_path)
    _cifar_batch(tmp_path / "test_batch", np.zeros((4, 100), dtype=np.uint8), [0, 1, 2, 3])
    return tmp_path, tmp_path / "test_batch"


def _code_in_pickle(tmp_path: Path) -> tuple[Path, Path]:
    _cifar10(tmp_path)
    (tmp_path / "data_batch_1").write_bytes(pickle.dumps({b"data": print, b"labels": []}))
    return tmp_path, tmp_path / "data_batch_1"


@pytest.mark.parametrize("make, match", [
    (_missing, "does not exist"),  # case: no such folder
    (_a_file, "is a file"),  # case: a file instead of a folder
    (_empty, "has no images"),  # case: folders and files but no image
    (_one_class, "has 1 class"),  # case: fewer than 2 classes
    (_corrupt_png, "cannot be decoded"),  # case: the channel probe decodes a corrupt file
    (_unknown_test_class, "test class 'zebra'"),  # case: test class unknown to train
    (_test_without_train, "no train/"),  # case: test/ beside class folders
    (_bad_pickle, "does not unpickle"),  # case: truncated CIFAR batch
    (_wrong_shape, r"shape \(4, 100\)"),  # case: CIFAR data not (N, 3072)
    (_code_in_pickle, "does not unpickle"),  # case: a pickle that would build another object
])
def test_malformed_folders_raise_one_line_naming_the_path(tmp_path, make, match):
    # Prepare
    scan_at, named = make(tmp_path)
    # Execute
    with pytest.raises(DataFolderError, match=match) as exc:
        scan_image_folder(scan_at, seed=0)
    # Assert
    _one_line_naming(exc, named)


def test_corrupt_image_found_when_read_names_the_file(tmp_path):
    # Prepare: the folder scans fine, then a file goes bad before a client reads it
    index = scan_image_folder(_tree(tmp_path, {"a": 3, "b": 3}), seed=0)
    bad = tmp_path / index.files[4]
    bad.write_bytes(b"garbage")
    # Execute
    with pytest.raises(DataFolderError, match="cannot be decoded") as exc:
        load_images(index, [3, 4], image_size=4, channels=1)
    # Assert
    _one_line_naming(exc, bad)
    assert isinstance(exc.value, ValueError)


def test_bad_arguments_are_refused(tmp_path):
    # Prepare
    index = scan_image_folder(_tree(tmp_path, {"a": 2, "b": 2}), seed=0)
    # Execute / Assert
    with pytest.raises(ValueError, match="eval_fraction"):
        scan_image_folder(tmp_path, seed=0, eval_fraction=1.0)
    with pytest.raises(ValueError, match="channels"):
        load_images(index, [0], image_size=4, channels=2)

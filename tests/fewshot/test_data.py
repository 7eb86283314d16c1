"""Tests for the few-shot data pipeline (bmg.fewshot.data) and the synthetic generator."""

import hashlib
import io
import os
import pickle
import re
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bmg import memory
from bmg.fewshot import data
from bmg.fewshot.data import DataError, Split, TaskSampler, load_splits
from bmg.fewshot.synthetic import make_synthetic

SIZE = 16
CLASSES = 3
PER_CLASS = 6


def make(tmp_path: Path, fmt: str = "csv", name: str | None = None, **kwargs) -> Path:
    args = dict(format=fmt, classes=CLASSES, per_class=PER_CLASS, size=SIZE, seed=7)
    args.update(kwargs)
    return make_synthetic(tmp_path / (name or fmt), **args)


def load(root: Path, **kwargs) -> dict[str, Split]:
    kwargs.setdefault("cache_dir", root / "cache")
    return load_splits(root, **kwargs)


def csv_rows(path: Path) -> list[str]:
    return path.read_text().splitlines()


def count_decodes(monkeypatch) -> list[Path]:
    calls: list[Path] = []
    real = data.decode_image

    def counting(path, *args, **kwargs):
        calls.append(path)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(data, "decode_image", counting)
    return calls


def forbid_decoding(monkeypatch) -> None:
    def fail(path, *args, **kwargs):
        raise AssertionError(f"decoded {path}")

    monkeypatch.setattr(data, "decode_image", fail)


# ------------------------------------------------------------------------------------------------
# Loading both layouts


def test_csv_and_pkl_layouts_load_the_same_dataset(tmp_path):
    from_csv = load(make(tmp_path, "csv"))
    from_pkl = load(make(tmp_path, "pkl"))
    assert list(from_csv) == list(from_pkl) == ["train", "val", "test"]
    for name in from_csv:
        a, b = from_csv[name], from_pkl[name]
        assert a.name == b.name == name
        assert a.class_names == b.class_names
        assert a.num_classes == CLASSES
        np.testing.assert_array_equal(a.labels, b.labels)
        assert a.images.shape == b.images.shape == (CLASSES * PER_CLASS, SIZE, SIZE, 3)
        assert a.images.dtype == b.images.dtype == np.uint8
        diff = np.abs(a.images.astype(np.int32) - b.images.astype(np.int32))
        assert diff.mean() < 8, f"{name}: JPEG round trip is off by {diff.mean():.2f} on average"
    # Classes are named like WordNet ids and differ between splits.
    names = [c for s in from_csv.values() for c in s.class_names]
    assert len(set(names)) == 3 * CLASSES
    assert all(re.fullmatch(r"n\d{8}", c) for c in names)


@pytest.mark.parametrize("fmt", ["csv", "pkl"])
def test_split_fields_are_consistent(tmp_path, fmt):
    splits = load(make(tmp_path, fmt))
    for split in splits.values():
        assert split.labels.dtype == np.int32
        assert split.labels.shape == (len(split.images),)
        assert len(split.class_indices) == split.num_classes
        covered = np.sort(np.concatenate(split.class_indices))
        np.testing.assert_array_equal(covered, np.arange(len(split.images)))
        for c, rows in enumerate(split.class_indices):
            assert rows.dtype == np.int64
            assert len(rows) == PER_CLASS
            assert (split.labels[rows] == c).all()
        assert not split.images.flags.writeable
        assert not split.labels.flags.writeable


def test_splits_argument_loads_only_those(tmp_path):
    root = make(tmp_path)
    (root / "test.csv").unlink()
    splits = load(root, splits=("train", "val"))
    assert list(splits) == ["train", "val"]
    with pytest.raises(ValueError, match="splits"):
        load(root, splits=("train", "nope"))


def test_csv_images_of_another_size_are_resized(tmp_path):
    root = make(tmp_path)
    original = np.array(load(root, cache_dir=tmp_path / "first")["train"].images)
    first = csv_rows(root / "train.csv")[4].split(",")[0]  # row 3 of train
    path = root / "images" / first
    Image.open(path).resize((2 * SIZE, 2 * SIZE), Image.Resampling.BICUBIC).save(path, quality=95)
    # Native size: one image of another size is an error naming it...
    with pytest.raises(DataError, match=rf"{first}: image is 32x32 but the first one is 16x16"):
        load(root)
    # ...while asking for a size resizes it back (bilinear), close to what it was.
    images = load(root, image_size=SIZE)["train"].images
    assert images.shape == original.shape
    np.testing.assert_array_equal(np.delete(images, 3, axis=0), np.delete(original, 3, axis=0))
    expected = Image.open(path).convert("RGB").resize((SIZE, SIZE), Image.Resampling.BILINEAR)
    np.testing.assert_array_equal(images[3], np.asarray(expected))
    assert np.abs(images[3].astype(np.int32) - original[3]).mean() < 16  # a blurred original


def test_pkl_is_resized_to_the_requested_size(tmp_path):
    root = make(tmp_path, "pkl")
    native = load(root)["train"].images
    splits = load(root, image_size=8)
    assert splits["train"].images.shape == (CLASSES * PER_CLASS, 8, 8, 3)
    assert splits["train"].images.dtype == np.uint8
    for small, big in zip(splits["train"].images, native, strict=True):
        expected = Image.fromarray(big).resize((8, 8), Image.Resampling.BILINEAR)
        np.testing.assert_array_equal(small, np.asarray(expected))
    # Bilinear downsampling by 2 is roughly a 2x2 box average.
    box = native.reshape(-1, 8, 2, 8, 2, 3).mean(axis=(2, 4))
    assert np.abs(splits["train"].images - box).mean() < 10


# ------------------------------------------------------------------------------------------------
# The decoded-image cache


def test_second_load_reads_the_cache_without_decoding(tmp_path, monkeypatch):
    root = make(tmp_path)
    cache = tmp_path / "cache"
    calls = count_decodes(monkeypatch)
    first = load_splits(root, cache_dir=cache)
    assert len(calls) == 3 * CLASSES * PER_CLASS
    assert len(list(cache.glob("*.npy"))) == 3
    assert not list(cache.glob("*.tmp"))
    forbid_decoding(monkeypatch)
    second = load_splits(root, cache_dir=cache)
    for name in first:
        assert isinstance(second[name].images, np.memmap)
        np.testing.assert_array_equal(second[name].images, first[name].images)
        np.testing.assert_array_equal(second[name].labels, first[name].labels)
    # image_size=SIZE is the native size: the same cache files serve it.
    assert load_splits(root, cache_dir=cache, image_size=SIZE)["val"].images.shape[1] == SIZE


def test_default_cache_lives_in_the_data_dir(tmp_path, monkeypatch):
    root = make(tmp_path)
    load_splits(root)
    assert len(list((root / ".bmg-cache").glob("train-*.npy"))) == 1
    forbid_decoding(monkeypatch)
    load_splits(root)


def test_cache_falls_back_to_home_when_the_data_dir_is_read_only(tmp_path, monkeypatch):
    root = make(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    real = data._writable_dir
    monkeypatch.setattr(data, "_writable_dir", lambda p: p.parent != root and real(p))
    load_splits(root)
    key = hashlib.sha1(str(root.absolute()).encode()).hexdigest()
    home_cache = tmp_path / "home" / ".cache" / "bmg" / "fewshot" / key
    assert len(list(home_cache.glob("*.npy"))) == 3
    assert not (root / ".bmg-cache").exists()


def test_nowhere_to_cache_decodes_into_memory(tmp_path, monkeypatch):
    root = make(tmp_path)
    monkeypatch.setattr(data, "_writable_dir", lambda p: False)
    splits = load_splits(root)
    assert not isinstance(splits["train"].images, np.memmap)
    assert splits["train"].images.shape == (CLASSES * PER_CLASS, SIZE, SIZE, 3)
    assert not (root / ".bmg-cache").exists()


def test_editing_the_csv_invalidates_the_cache(tmp_path, monkeypatch):
    root = make(tmp_path)
    before = np.array(load(root)["train"].images)
    rows = csv_rows(root / "train.csv")
    # Same rows in reverse order: a cache keyed on anything but the csv would serve stale pixels.
    (root / "train.csv").write_text("\n".join([rows[0], *rows[:0:-1]]) + "\n")
    calls = count_decodes(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a fresh cache file, not a "corrupt" rebuild
        splits = load(root)
    assert len(calls) == len(rows) - 1  # only train is decoded again
    np.testing.assert_array_equal(splits["train"].images, before[::-1])
    assert len(list((root / "cache").glob("train-*.npy"))) == 2


def test_another_image_size_invalidates_the_cache(tmp_path, monkeypatch):
    root = make(tmp_path)
    load(root)
    calls = count_decodes(monkeypatch)
    splits = load(root, image_size=12)
    assert len(calls) == 3 * CLASSES * PER_CLASS
    assert splits["test"].images.shape == (CLASSES * PER_CLASS, 12, 12, 3)
    assert len(list((root / "cache").glob("*-12px-resized.npy"))) == 3
    calls.clear()
    assert load(root, image_size=12)["test"].images.shape[1] == 12
    assert not calls


@pytest.mark.parametrize("damage", ["garbage", "wrong_shape", "truncated"])
def test_corrupt_cache_is_rebuilt(tmp_path, monkeypatch, damage):
    root = make(tmp_path)
    good = np.array(load(root)["train"].images)
    (cache_file,) = (root / "cache").glob("train-*.npy")
    if damage == "garbage":
        cache_file.write_bytes(b"not a numpy file")
    elif damage == "wrong_shape":
        np.save(cache_file, good[:, :8])
    else:
        cache_file.write_bytes(cache_file.read_bytes()[:-100])
    calls = count_decodes(monkeypatch)
    with pytest.warns(UserWarning, match="rebuilding"):
        splits = load(root)
    assert len(calls) == CLASSES * PER_CLASS  # train only
    np.testing.assert_array_equal(splits["train"].images, good)
    assert np.load(cache_file).shape == good.shape


def overwrite(path: Path, raw: bytes) -> None:
    """Rewrite ``path`` in place with ``raw``; the file's (size, mtime_ns) must change, which
    a coarse file-system clock may need a few milliseconds for when the size is the same."""
    before = path.stat()
    for _ in range(100):
        path.write_bytes(raw)
        after = path.stat()
        if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
            return
        time.sleep(0.01)
    raise AssertionError(f"{path}: size and modification time did not change")


def test_an_image_replaced_in_place_is_decoded_again(tmp_path, monkeypatch):
    """Other valid pixels under the same file name, csv untouched: the next load decodes the
    split again and returns the new pixels; the stale cache file is removed; a third load is a
    cache hit again."""
    root = make(tmp_path)
    before = np.array(load(root)["train"].images)
    row = 2
    victim = csv_rows(root / "train.csv")[row + 1].split(",")[0]
    path = root / "images" / victim
    new_pixels = np.full((SIZE, SIZE, 3), 37, np.uint8)
    new_pixels[: SIZE // 2] = 211
    buffer = io.BytesIO()
    Image.fromarray(new_pixels).save(buffer, format="PNG")  # lossless; PIL reads by content
    overwrite(path, buffer.getvalue())
    calls = count_decodes(monkeypatch)
    splits = load(root)
    assert len(calls) == CLASSES * PER_CLASS  # train only: val and test are unchanged
    np.testing.assert_array_equal(splits["train"].images[row], new_pixels)
    assert not np.array_equal(before[row], new_pixels)
    np.testing.assert_array_equal(
        np.delete(splits["train"].images, row, 0), np.delete(before, row, 0)
    )
    assert len(list((root / "cache").glob("train-*.npy"))) == 1  # the stale file is gone
    forbid_decoding(monkeypatch)
    np.testing.assert_array_equal(load(root)["train"].images, splits["train"].images)


def test_an_image_truncated_in_place_is_refused_naming_it(tmp_path):
    """A cached split whose image is then truncated: not served from the cache but refused with
    the one-sentence data error naming the file, on every load until the file is fixed."""
    root = make(tmp_path)
    load(root)
    victim = csv_rows(root / "val.csv")[4].split(",")[0]
    path = root / "images" / victim
    raw = path.read_bytes()
    overwrite(path, raw[:-50])
    for _ in range(2):
        with pytest.raises(DataError) as error:
            load(root)
        message = str(error.value)
        assert re.fullmatch(rf".*{victim}: truncated or unreadable image \(.*\)\.", message)
        assert "\n" not in message
    assert not list((root / "cache").glob("*.tmp"))
    overwrite(path, raw)  # fixed (same bytes, a new modification time): loads again
    assert load(root)["val"].images.shape == (CLASSES * PER_CLASS, SIZE, SIZE, 3)


def test_a_cached_load_needs_every_listed_image(tmp_path, monkeypatch):
    """The cache is keyed by the images as they are: one deleted after caching is the same
    one-sentence error as without a cache, and no decoding is tried."""
    root = make(tmp_path)
    load(root)
    victim = csv_rows(root / "test.csv")[2].split(",")[0]
    (root / "images" / victim).unlink()
    forbid_decoding(monkeypatch)
    with pytest.raises(DataError, match=rf"{victim}: image listed in test\.csv does not exist\.$"):
        load(root)


def test_a_touched_image_rebuilds_but_an_untouched_tree_hits(tmp_path, monkeypatch):
    """The key is (relative path, size, mtime_ns) of every image: the same bytes with another
    modification time rebuild that split; a re-load with nothing changed decodes nothing."""
    root = make(tmp_path)
    first = np.array(load(root)["test"].images)
    forbid_decoding(monkeypatch)
    load(root)
    monkeypatch.undo()
    victim = root / "images" / csv_rows(root / "test.csv")[1].split(",")[0]
    stat = victim.stat()
    os.utime(victim, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    calls = count_decodes(monkeypatch)
    np.testing.assert_array_equal(load(root)["test"].images, first)
    assert len(calls) == CLASSES * PER_CLASS


def test_validation_still_runs_on_cached_loads(tmp_path, monkeypatch):
    root = make(tmp_path)
    load(root)
    forbid_decoding(monkeypatch)
    with pytest.raises(DataError, match="n90000000.*'train'.*6 images but 7"):
        load(root, min_per_class=7)


# ------------------------------------------------------------------------------------------------
# Errors


def test_missing_split_file(tmp_path):
    root = make(tmp_path)
    (root / "test.csv").unlink()
    with pytest.raises(DataError, match=r"found train\.csv, val\.csv but not test\.csv"):
        load(root)


def test_missing_pkl_split_file(tmp_path):
    root = make(tmp_path, "pkl")
    (root / "mini-imagenet-cache-val.pkl").unlink()
    with pytest.raises(DataError, match=r"but not mini-imagenet-cache-val\.pkl"):
        load(root)


def test_empty_directory(tmp_path):
    with pytest.raises(DataError, match="no MiniImagenet split files found"):
        load_splits(tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        load_splits(tmp_path / "nowhere")
    (tmp_path / "mini-imagenet-cache-train.pkl").write_bytes(b"")
    with pytest.raises(DataError, match="mini-imagenet-cache-train.pkl is a file; --data-dir"):
        load_splits(tmp_path / "mini-imagenet-cache-train.pkl")  # the file, not its directory


def test_mixed_layout_directory(tmp_path):
    root = make(tmp_path, "pkl")
    (root / "train.csv").write_text("filename,label\n")
    with pytest.raises(DataError, match=r"train\.csv.*mix of layouts"):
        load(root)


def test_complete_csv_layout_wins_over_stray_pkl_files(tmp_path):
    root = make(tmp_path)
    (root / "mini-imagenet-cache-train.pkl").write_bytes(b"ignored")
    assert data.detect_layout(root) == "csv"
    assert load(root)["train"].num_classes == CLASSES


def test_missing_images_folder(tmp_path):
    root = make(tmp_path)
    (root / "images").rename(root / "pictures")
    with pytest.raises(DataError, match=r"images: images folder is missing"):
        load(root)


def test_csv_row_naming_a_missing_image(tmp_path):
    root = make(tmp_path)
    victim = csv_rows(root / "val.csv")[3].split(",")[0]
    (root / "images" / victim).unlink()
    with pytest.raises(DataError, match=rf"{victim}: image listed in val\.csv does not exist"):
        load(root)


def test_truncated_jpeg(tmp_path):
    root = make(tmp_path)
    victim = csv_rows(root / "train.csv")[5].split(",")[0]
    path = root / "images" / victim
    raw = path.read_bytes()
    Image.open(path).convert("RGB")  # valid before...
    path.write_bytes(raw[:-50])
    assert Image.open(path).size == (SIZE, SIZE)  # ...and the header still parses after
    with pytest.raises(DataError, match=rf"{victim}: truncated or unreadable image"):
        load(root)
    assert not list((root / "cache").glob("*.tmp")), "a failed build leaves no temp file"


def test_threaded_decoding_names_the_first_bad_image(tmp_path, monkeypatch):
    root = make(tmp_path, classes=4, per_class=8)
    monkeypatch.setattr(data, "_DECODE_CHUNK", 3)  # 11 chunks: several worker threads
    rows = [r.split(",")[0] for r in csv_rows(root / "train.csv")[1:]]
    for victim in (rows[29], rows[7], rows[20]):
        (root / "images" / victim).write_bytes(b"broken")
    with pytest.raises(DataError, match=rf"{rows[7]}: truncated or unreadable image"):
        load(root)
    for victim in (rows[29], rows[7], rows[20]):
        (root / "images" / victim).unlink()
    make(tmp_path, name="fresh", classes=4, per_class=8)
    for victim in (rows[29], rows[7], rows[20]):
        (root / "images" / victim).write_bytes(
            (tmp_path / "fresh" / "images" / victim).read_bytes()
        )
    threaded = load(root)
    monkeypatch.setattr(data, "_DECODE_CHUNK", 10_000)
    single = load(root, cache_dir=tmp_path / "single")
    for name in threaded:
        np.testing.assert_array_equal(threaded[name].images, single[name].images)


def test_unreadable_image(tmp_path):
    root = make(tmp_path)
    victim = csv_rows(root / "test.csv")[-1].split(",")[0]
    (root / "images" / victim).write_bytes(b"this is not a jpeg")
    with pytest.raises(DataError, match=rf"{victim}: truncated or unreadable image"):
        load(root)


@pytest.mark.parametrize(
    "text, message",
    [
        ("file,class\na.jpg,n1\n", "bad header"),
        ("filename,label\na.jpg,n1,extra\n", "line 2 is malformed"),
        ("filename,label\na.jpg\n", "line 2 is malformed"),
        ("filename,label\n,n1\n", "line 2 is malformed"),
        ("filename,label\n", "lists no images"),
        ("", "bad header"),
    ],
)
def test_bad_csv(tmp_path, text, message):
    root = make(tmp_path)
    (root / "val.csv").write_text(text)
    with pytest.raises(DataError, match=rf"val\.csv: {message}"):
        load(root)


def test_duplicate_csv_row(tmp_path):
    root = make(tmp_path)
    rows = csv_rows(root / "train.csv")
    (root / "train.csv").write_text("\n".join([*rows, rows[1]]) + "\n")
    with pytest.raises(DataError, match=rf"{rows[1].split(',')[0]} is listed more than once"):
        load(root)


@pytest.mark.parametrize("fmt", ["csv", "pkl"])
def test_class_with_too_few_images(tmp_path, fmt):
    root = make(tmp_path, fmt)
    load(root, min_per_class=PER_CLASS)
    with pytest.raises(DataError, match=r"class n90000000 in split 'train' has 6 images but 7"):
        load(root, min_per_class=PER_CLASS + 1)


def test_class_shared_between_splits(tmp_path):
    root = make(tmp_path)
    row = csv_rows(root / "train.csv")[1]  # an image of train class n90000000
    with open(root / "test.csv", "a") as f:
        f.write(row + "\n")
    with pytest.raises(DataError, match=r"class n90000000 appears in both the 'train' and 'test'"):
        load(root)


def test_image_listed_in_two_splits(tmp_path):
    """The same file in train.csv and test.csv (under a test class, so the
    classes stay disjoint) is one data error naming the file and both split files."""
    root = make(tmp_path)
    filename = csv_rows(root / "train.csv")[1].split(",")[0]
    test_class = csv_rows(root / "test.csv")[1].split(",")[1]
    with open(root / "test.csv", "a") as f:
        f.write(f"{filename},{test_class}\n")
    pattern = (
        rf"{re.escape(str(root / 'images' / filename))}: image listed in both "
        rf"{re.escape(str(root / 'train.csv'))} \('train' split\) and "
        rf"{re.escape(str(root / 'test.csv'))} \('test' split\)"
    )
    with pytest.raises(DataError, match=pattern):
        load(root)


def test_pkl_image_in_two_splits(tmp_path):
    root = make(tmp_path, "pkl")
    train = pickle.loads((root / "mini-imagenet-cache-train.pkl").read_bytes())

    def copy_image(d):
        d["image_data"] = d["image_data"].copy()
        d["image_data"][4] = train["image_data"][2]
        return d

    rewrite_pkl(root, "test", copy_image)
    with pytest.raises(
        DataError,
        match=r"mini-imagenet-cache-train\.pkl and .*mini-imagenet-cache-test\.pkl: row 2 of the "
        r"'train' split and row 4 of the 'test' split are the same image",
    ):
        load(root)


@pytest.mark.parametrize("fmt", ["csv", "pkl"])
def test_splits_of_different_image_sizes(tmp_path, fmt):
    """16x16 train and 32x32 val/test images fail at load naming the sizes and
    suggesting --image-size (which then resizes them all)."""
    root = make(tmp_path, fmt)
    for split in ("val", "test"):
        if fmt == "csv":
            for row in csv_rows(root / f"{split}.csv")[1:]:
                path = root / "images" / row.split(",")[0]
                Image.open(path).resize((32, 32)).save(path, quality=95)
        else:
            rewrite_pkl(
                root,
                split,
                lambda d: {**d, "image_data": d["image_data"].repeat(2, 1).repeat(2, 2)},
            )
    with pytest.raises(
        DataError,
        match=r"different sizes \(\S*train\S* 16x16, \S*val\S* 32x32, \S*test\S* 32x32\); pass "
        r"--image-size N",
    ):
        load(root)
    splits = load(root, image_size=SIZE)
    assert {s.images.shape[1] for s in splits.values()} == {SIZE}


def test_split_with_one_class(tmp_path):
    root = make(tmp_path)
    rows = csv_rows(root / "val.csv")
    (root / "val.csv").write_text("\n".join(rows[: 1 + PER_CLASS]) + "\n")
    with pytest.raises(DataError, match=r"val\.csv: split 'val' has 1 class\(es\)"):
        load(root)


def rewrite_pkl(root: Path, split: str, edit) -> str:
    path = root / f"mini-imagenet-cache-{split}.pkl"
    content = pickle.loads(path.read_bytes())
    content = edit(content)
    path.write_bytes(pickle.dumps(content))
    return path.name


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: {**d, "image_data": d["image_data"][..., 0]}, r"has shape \(18, 16, 16\)"),
        (lambda d: {**d, "image_data": d["image_data"][:, :8]}, "expected \\[N, S, S, 3\\]"),
        (lambda d: {**d, "image_data": d["image_data"] / 255.0}, "must be a uint8 numpy array"),
        (lambda d: {"image_data": d["image_data"]}, "expected a dict with 'image_data'"),
        (lambda d: {**d, "class_dict": {**d["class_dict"], "n90000003": [99]}}, "row 99"),
        (lambda d: {**d, "image_data": d["image_data"][:-1]}, "row 17, outside"),
        (lambda d: [1, 2], "expected a dict"),
    ],
)
def test_bad_pkl(tmp_path, edit, message):
    root = make(tmp_path, "pkl")
    name = rewrite_pkl(root, "val", edit)
    with pytest.raises(DataError, match=rf"{re.escape(name)}: .*{message}"):
        load(root)


def test_pkl_rows_without_a_class(tmp_path):
    root = make(tmp_path, "pkl")

    def drop_class(d):
        d["class_dict"].pop("n90000005")
        return d

    name = rewrite_pkl(root, "val", drop_class)
    with pytest.raises(DataError, match=rf"{re.escape(name)}: row 12 of image_data belongs to no"):
        load(root)


def test_garbage_pkl(tmp_path):
    root = make(tmp_path, "pkl")
    (root / "mini-imagenet-cache-test.pkl").write_bytes(b"\x80\x04garbage")
    with pytest.raises(DataError, match=r"mini-imagenet-cache-test\.pkl: cannot unpickle"):
        load(root)


def test_bad_arguments(tmp_path):
    root = make(tmp_path)
    with pytest.raises(ValueError, match="image_size"):
        load(root, image_size=0)
    with pytest.raises(ValueError, match="min_per_class"):
        load(root, min_per_class=0)


# ------------------------------------------------------------------------------------------------
# Task sampling


@pytest.fixture
def train_split(tmp_path) -> Split:
    root = make(tmp_path, "pkl", classes=6, per_class=8, size=8)
    return load(root)["train"]


def test_tasks_have_the_right_shapes_and_labels(train_split):
    ways, shots, queries, num_tasks = 4, 2, 3, 5
    tasks = TaskSampler(train_split, ways=ways, shots=shots, queries=queries).sample(
        np.random.default_rng(0), num_tasks
    )
    assert tasks.support_images.shape == (num_tasks, ways * shots, 8, 8, 3)
    assert tasks.query_images.shape == (num_tasks, ways * queries, 8, 8, 3)
    assert tasks.support_images.dtype == tasks.query_images.dtype == np.float32
    assert tasks.support_labels.shape == (num_tasks, ways * shots)
    assert tasks.query_labels.shape == (num_tasks, ways * queries)
    assert tasks.support_labels.dtype == tasks.query_labels.dtype == np.int32
    for images in (tasks.support_images, tasks.query_images):
        assert 0.0 <= images.min() and images.max() <= 1.0
    for t in range(num_tasks):
        np.testing.assert_array_equal(np.bincount(tasks.support_labels[t]), [shots] * ways)
        np.testing.assert_array_equal(np.bincount(tasks.query_labels[t]), [queries] * ways)


def test_tasks_match_their_indices(train_split):
    sampler = TaskSampler(train_split, ways=3, shots=2, queries=4)
    idx = sampler.sample_indices(np.random.default_rng(3), 6)
    tasks = sampler.sample(np.random.default_rng(3), 6)
    images = train_split.images.astype(np.float32) / 255
    np.testing.assert_allclose(tasks.support_images, images[idx.support], atol=1e-6)
    np.testing.assert_allclose(tasks.query_images, images[idx.query], atol=1e-6)
    for t in range(6):
        assert len(set(idx.classes[t])) == 3, "a task's classes are distinct"
        # Task label j means split class classes[t, j], in support and query alike.
        support_classes = train_split.labels[idx.support[t]]
        query_classes = train_split.labels[idx.query[t]]
        np.testing.assert_array_equal(support_classes, idx.classes[t][tasks.support_labels[t]])
        np.testing.assert_array_equal(query_classes, idx.classes[t][tasks.query_labels[t]])
        rows = np.concatenate([idx.support[t], idx.query[t]])
        assert len(set(rows)) == len(rows), "support and query never share an image"


def test_sampling_covers_classes_and_images_uniformly(train_split):
    sampler = TaskSampler(train_split, ways=2, shots=1, queries=1)
    idx = sampler.sample_indices(np.random.default_rng(0), 3000)
    class_freq = np.bincount(idx.classes.ravel(), minlength=6) / idx.classes.size
    np.testing.assert_allclose(class_freq, 1 / 6, atol=0.02)
    image_freq = np.bincount(idx.support.ravel(), minlength=48) / idx.support.size
    np.testing.assert_allclose(image_freq, 1 / 48, atol=0.01)
    first_class = idx.classes[:, 0]
    assert 0.4 < np.mean(first_class < idx.classes[:, 1]) < 0.6, "class order is random"


def test_sampling_is_deterministic(train_split):
    sampler = TaskSampler(train_split, ways=3, shots=1, queries=2)
    a = sampler.sample(np.random.default_rng(11), 4)
    b = sampler.sample(np.random.default_rng(11), 4)
    c = sampler.sample(np.random.default_rng(12), 4)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.support_images, c.support_images)


def test_sampler_rejects_too_small_splits(train_split):
    with pytest.raises(DataError, match=r"split 'train' has 6 classes, fewer than ways=7"):
        TaskSampler(train_split, ways=7, shots=1, queries=1)
    with pytest.raises(DataError, match=r"class n90000000 in split 'train' has 8 images but 9"):
        TaskSampler(train_split, ways=2, shots=4, queries=5)
    for bad in ({"ways": 0}, {"shots": 0}, {"queries": -1}, {"ways": 2.0}):
        with pytest.raises(ValueError):
            TaskSampler(train_split, **{"ways": 2, "shots": 1, "queries": 1, **bad})


# ------------------------------------------------------------------------------------------------
# The synthetic generator


def nearest_mean_accuracy(images: np.ndarray, train_per_class: int) -> float:
    """Classify held-out instances by the nearest class mean on raw pixels."""
    x = images.reshape(images.shape[0], images.shape[1], -1).astype(np.float32)
    means = x[:, :train_per_class].mean(axis=1)
    held_out = x[:, train_per_class:]
    dist = ((held_out[:, :, None] - means[None, None]) ** 2).sum(-1)
    truth = np.arange(len(x))[:, None]
    return float(np.mean(dist.argmin(-1) == truth))


def test_synthetic_images_are_class_structured(tmp_path):
    classes, per_class = 8, 20
    root = make(tmp_path, "pkl", classes=classes, per_class=per_class, size=24)
    for split in load(root).values():
        images = np.stack([split.images[rows] for rows in split.class_indices])
        accuracy = nearest_mean_accuracy(images, train_per_class=10)
        assert accuracy > 3 / classes, f"{split.name}: {accuracy:.2f} is near chance"
        # Held-out instances lie closer to their own class mean than to the other classes' means.
        x = images.reshape(classes, per_class, -1).astype(np.float32)
        means = x[:, :10].mean(axis=1)
        dist = np.sqrt(((x[:, 10:, None] - means[None, None]) ** 2).sum(-1))  # [class, i, mean]
        own = np.mean([dist[c, :, c] for c in range(classes)])
        other = np.mean([np.delete(dist[c], c, axis=1) for c in range(classes)])
        assert own < 0.95 * other


def test_synthetic_is_deterministic(tmp_path):
    for fmt in ("csv", "pkl"):
        a, b = make(tmp_path, fmt, name=f"{fmt}-a"), make(tmp_path, fmt, name=f"{fmt}-b")
        c = make(tmp_path, fmt, name=f"{fmt}-c", seed=8)
        files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
        assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
        assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
        assert any((a / f).read_bytes() != (c / f).read_bytes() for f in files)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"format": "zip"}, "format"),
        ({"classes": 1}, "classes"),
        ({"per_class": 0}, "per_class"),
        ({"size": 7}, "size"),
        ({"size": 16.0}, "size"),
    ],
)
def test_synthetic_rejects_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        make(tmp_path, **kwargs)


def test_synthetic_does_not_overwrite(tmp_path):
    root = make(tmp_path, "csv")
    before = (root / "train.csv").read_bytes()
    with pytest.raises(ValueError, match="already holds a dataset"):
        make_synthetic(root, format="pkl", classes=2, per_class=1, size=8)
    assert (root / "train.csv").read_bytes() == before
    assert not (root / "mini-imagenet-cache-train.pkl").exists()


@pytest.mark.parametrize("fmt", ["csv", "pkl"])
def test_images_the_memory_cannot_hold_are_refused_before_resizing(tmp_path, monkeypatch, fmt):
    """--image-size 4096 was killed by the out-of-memory killer: the images the loader would
    hold at that size (every split, uint8 RGB) are compared with the memory available first."""
    root = make(tmp_path, fmt)  # 3 splits x 3 classes x 6 images = 54 images
    monkeypatch.setattr(memory, "available_memory", lambda: 2**20)
    with pytest.raises(DataError) as error:
        load(root, image_size=128)
    assert str(error.value) == (
        f"{root}: holding 54 images at 128x128 px (uint8 RGB, as the loader does) needs at least "
        "2.5 MiB of memory, more than the 1.0 MiB available; pass a smaller --image-size N "
        "(image_size=N; MiniImagenet is 84)."
    )
    assert set(load(root, image_size=64)) == {"train", "val", "test"}  # 648 KiB fit
    if fmt == "pkl":  # unpickling holds about the files' bytes
        monkeypatch.setattr(memory, "available_memory", lambda: 1000)
        with pytest.raises(DataError, match=r"unpickling mini-imagenet-cache-train.pkl, .* needs "):
            load(root)

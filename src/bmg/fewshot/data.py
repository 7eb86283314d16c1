"""MiniImagenet on the host: load the train/val/test splits and sample N-way K-shot tasks.

Nothing is downloaded; ``data_dir`` must already hold one of two layouts, detected automatically:

* **csv** -- the Ravi & Larochelle (2017) split files ``train.csv``, ``val.csv``, ``test.csv``
  (header ``filename,label``, rows like ``n0153282900000005.jpg,n01532829``) next to an ``images/``
  folder of JPEGs (84 x 84 RGB normally; other sizes are resized with PIL bilinear filtering).
  The JPEGs of a split are decoded once into a uint8 ``.npy`` cache that later loads memory-map.
* **pkl** -- the ``mini-imagenet-cache-{train,val,test}.pkl`` files of the public
  "mini-imagenet-cache" distributions (as used by learn2learn and the MAML++ tooling): dicts with
  ``image_data`` (uint8 [N, 84, 84, 3]) and ``class_dict`` (class name -> row indices). They are
  unpickled as they are, so only load pickles from a source you trust.

The csv layout wins when all its split files exist; the pkl layout is used when all its files exist
and no csv split file does; anything else is an error. Only the requested ``splits`` are looked at.

Cache (csv layout only): ``cache_dir`` if given, else ``<data_dir>/.bmg-cache/`` when writable, else
``~/.cache/bmg/fewshot/<sha1 of the absolute data_dir>/``. A cache file is named after the split,
the sha1 of its csv, the sha1 of its images' relative paths, sizes and modification times
(``os.stat``'s ``st_size`` and ``st_mtime_ns``, read before decoding; about 0.5 s for 60,000 files
on a 2-core machine with the file-system cache warm) and the image size. So editing the csv,
replacing, rewriting or truncating any listed image in place, or asking for another size rebuilds it
(a corrupt replacement then fails to decode, naming the file), and a cached load still needs the
images folder; a cache file that cannot be read or has the wrong shape is rebuilt too. Only a
replacement with the same size and the same modification time (say, copied with its timestamp kept)
goes unnoticed. A rebuild removes the files cached for earlier versions of the same split's images.
Files are written to a temporary name in the cache folder and moved into place with ``os.replace``.

Every problem with the data raises :class:`DataError` (a ValueError) with one sentence naming the
file and the problem.
"""

from __future__ import annotations

import concurrent.futures
import csv
import dataclasses
import hashlib
import io
import os
import pickle
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from PIL import Image

from bmg import memory

SPLIT_NAMES = ("train", "val", "test")
CSV_HEADER = ("filename", "label")
PKL_NAME = "mini-imagenet-cache-{}.pkl"
IMAGES_DIR = "images"
CACHE_DIRNAME = ".bmg-cache"
_CACHE_VERSION = "v2"  # v1 was keyed by the csv only
_DECODE_CHUNK = 256
_RESAMPLE = Image.Resampling.BILINEAR


class DataError(ValueError):
    """A problem with the data on disk; the message is one sentence naming the file."""


@dataclasses.dataclass(frozen=True, eq=False)
class Split:
    """One split of a few-shot dataset; ``images`` may be a read-only ``np.memmap``."""

    name: str  # "train" | "val" | "test"
    images: np.ndarray  # uint8 [N, S, S, 3]
    labels: np.ndarray  # int32 [N], indices into class_names
    class_names: tuple[str, ...]
    class_indices: tuple[np.ndarray, ...]  # per class, its row indices (int64, ascending)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


class Tasks(NamedTuple):
    """A batch of few-shot tasks; labels are task-relative (0..ways-1)."""

    support_images: np.ndarray  # float32 [T, ways*shots, S, S, 3] in [0, 1]
    support_labels: np.ndarray  # int32 [T, ways*shots]
    query_images: np.ndarray  # float32 [T, ways*queries, S, S, 3] in [0, 1]
    query_labels: np.ndarray  # int32 [T, ways*queries]


class TaskIndices(NamedTuple):
    """What ``TaskSampler.sample_indices`` draws: class ids and image rows of each task."""

    classes: np.ndarray  # int64 [T, ways], split class ids; task label j is classes[:, j]
    support: np.ndarray  # int64 [T, ways*shots], rows of split.images, class-major
    query: np.ndarray  # int64 [T, ways*queries], rows of split.images, class-major


# --------------------------------------------------------------------------------------------
# Loading


def load_splits(
    data_dir: str | Path,
    *,
    image_size: int | None = None,
    min_per_class: int = 1,
    splits: Sequence[str] = SPLIT_NAMES,
    cache_dir: str | Path | None = None,
) -> dict[str, Split]:
    """Load the requested splits of the MiniImagenet-style dataset in ``data_dir``.

    ``image_size=None`` keeps the size the data has (all images must then be one square size);
    an int resizes every image whose size differs to ``image_size x image_size`` (PIL bilinear),
    in both layouts. Every class must have at least ``min_per_class`` images (pass shots +
    queries), every split at least 2 classes, no class and no image may appear in two splits,
    and with ``image_size=None`` every split must hold images of one size. Images the memory
    left cannot hold (``bmg.memory.available_memory``) are refused before they are read: resized
    ones at ``image_size``, and the pkl files' contents.
    """
    splits = _check_load_args(image_size, min_per_class, splits)
    root = Path(data_dir).expanduser().absolute()
    if root.is_file():
        raise DataError(
            f"{root} is a file; --data-dir takes the directory that holds the splits (the "
            "mini-imagenet-cache-*.pkl files or the csv splits with images/)."
        )
    if not root.is_dir():
        relative = (
            f" ({str(data_dir)!r} is relative to the directory the command runs in, as a run's "
            "config.json records it)"
            if not Path(data_dir).expanduser().is_absolute()
            else ""
        )
        raise DataError(f"{root}: data directory does not exist{relative}.")
    if detect_layout(root, splits) == "csv":
        return _load_csv_layout(root, splits, image_size, min_per_class, cache_dir)
    return _load_pkl_layout(root, splits, image_size, min_per_class)


def detect_layout(data_dir: Path, splits: Sequence[str] = SPLIT_NAMES) -> str:
    """Return "csv" or "pkl" for the files of ``splits`` in ``data_dir``; DataError otherwise."""
    csvs = [data_dir / f"{s}.csv" for s in splits]
    pkls = [data_dir / PKL_NAME.format(s) for s in splits]
    csv_found = [p.name for p in csvs if p.is_file()]
    pkl_found = [p.name for p in pkls if p.is_file()]
    if len(csv_found) == len(csvs):
        return "csv"
    if len(pkl_found) == len(pkls) and not csv_found:
        return "pkl"
    expected = (
        f"expected either {', '.join(p.name for p in csvs)} with an {IMAGES_DIR}/ folder "
        f"or {', '.join(p.name for p in pkls)}"
    )
    if not csv_found and not pkl_found:
        raise DataError(f"{data_dir}: no MiniImagenet split files found; {expected}.")
    missing = [p.name for p in (csvs if csv_found else pkls) if not p.is_file()]
    found = ", ".join(csv_found + pkl_found)
    raise DataError(
        f"{data_dir}: found {found} but not {', '.join(missing)} "
        f"(a mix of layouts or an incomplete one); {expected}."
    )


def _check_load_args(
    image_size: int | None, min_per_class: int, splits: Sequence[str]
) -> tuple[str, ...]:
    if image_size is not None and (not _is_int(image_size) or image_size < 1):
        raise ValueError(f"image_size must be None or a positive integer, got {image_size!r}.")
    if not _is_int(min_per_class) or min_per_class < 1:
        raise ValueError(f"min_per_class must be a positive integer, got {min_per_class!r}.")
    if isinstance(splits, str):
        splits = (splits,)
    splits = tuple(splits)
    if not splits or len(set(splits)) != len(splits) or not set(splits) <= set(SPLIT_NAMES):
        raise ValueError(f"splits must be distinct names from {SPLIT_NAMES}, got {splits!r}.")
    return splits


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _make_split(
    name: str, images: np.ndarray, labels: np.ndarray, class_names: Sequence[str]
) -> Split:
    labels = np.asarray(labels, dtype=np.int32)
    order = np.argsort(labels, kind="stable")
    counts = np.bincount(labels, minlength=len(class_names))
    indices = tuple(np.split(order.astype(np.int64), np.cumsum(counts)[:-1]))
    for array in (images, labels, *indices):
        array.setflags(write=False)
    return Split(name, images, labels, tuple(class_names), indices)


def _check_classes(
    source: Path, split: str, class_names: Sequence[str], labels: np.ndarray, min_per_class: int
) -> None:
    """Each split needs >= 2 classes, each with >= ``min_per_class`` images."""
    if len(class_names) < 2:
        raise DataError(
            f"{source}: split '{split}' has {len(class_names)} class(es) but at least 2 are needed."
        )
    counts = np.bincount(labels, minlength=len(class_names))
    for name, count in zip(class_names, counts, strict=True):
        if count < min_per_class:
            raise DataError(
                f"{source}: class {name} in split '{split}' has {count} images but "
                f"{min_per_class} are needed (shots + queries)."
            )


def _check_disjoint(classes: dict[str, tuple[Path, Sequence[str]]]) -> None:
    """No class may appear in two splits; ``classes`` maps split -> (source file, names)."""
    seen: dict[str, tuple[str, Path]] = {}
    for split, (source, names) in classes.items():
        for name in names:
            if name in seen:
                other, other_source = seen[name]
                raise DataError(
                    f"{other_source} and {source}: class {name} appears in both the "
                    f"'{other}' and '{split}' splits."
                )
            seen[name] = (split, source)


# --------------------------------------------------------------------------------------------
# csv layout


@dataclasses.dataclass(frozen=True)
class _Manifest:
    """A parsed split csv."""

    path: Path
    filenames: tuple[str, ...]
    class_names: tuple[str, ...]  # sorted
    labels: np.ndarray  # int32 [N]
    digest: str  # sha1 of the csv bytes


def _load_csv_layout(
    root: Path,
    splits: tuple[str, ...],
    image_size: int | None,
    min_per_class: int,
    cache_dir: str | Path | None,
) -> dict[str, Split]:
    manifests = {s: read_split_csv(root / f"{s}.csv") for s in splits}
    for s, m in manifests.items():
        _check_classes(m.path, s, m.class_names, m.labels, min_per_class)
    _check_disjoint({s: (m.path, m.class_names) for s, m in manifests.items()})
    _check_no_shared_files(root / IMAGES_DIR, manifests)
    if image_size is not None:
        _check_images_fit(root, sum(len(m.filenames) for m in manifests.values()), image_size)
    cache = resolve_cache_dir(root, cache_dir)
    out = {}
    for s, m in manifests.items():
        images = _cached_images(root / IMAGES_DIR, s, m, image_size, cache)
        out[s] = _make_split(s, images, m.labels, m.class_names)
    _check_one_size(root, {s: (m.path, out[s].images) for s, m in manifests.items()})
    return out


def _check_images_fit(root: Path, count: int, size: int) -> None:
    """DataError unless ``count`` images resized to ``size`` x ``size`` (uint8 RGB, as the loader
    holds them) fit in the memory this process has left (``bmg.memory.available_memory``)."""
    try:
        memory.check_fits(
            count * size * size * 3,
            f"{root}: holding {count:,} images at {size}x{size} px (uint8 RGB, as the loader does)",
            "pass a smaller --image-size N (image_size=N; MiniImagenet is 84)",
        )
    except ValueError as error:
        raise DataError(str(error)) from None


def _check_no_shared_files(images_dir: Path, manifests: dict[str, _Manifest]) -> None:
    """No image file may be listed in two splits (a test image seen in training)."""
    seen: dict[str, tuple[str, Path]] = {}
    for split, manifest in manifests.items():
        for filename in manifest.filenames:
            name = os.path.normpath(filename)
            if name in seen and seen[name][0] != split:
                other, other_path = seen[name]
                raise DataError(
                    f"{images_dir / name}: image listed in both {other_path} ('{other}' split) "
                    f"and {manifest.path} ('{split}' split); list each image in one split only."
                )
            seen.setdefault(name, (split, manifest.path))


def _check_one_size(root: Path, images: dict[str, tuple[Path, np.ndarray]]) -> None:
    """Every split must hold images of one size (the network is built for one)."""
    sizes = {split: array.shape[1] for split, (_, array) in images.items()}
    if len(set(sizes.values())) > 1:
        listed = ", ".join(
            f"{images[split][0].name} {size}x{size}" for split, size in sizes.items()
        )
        raise DataError(
            f"{root}: the splits hold images of different sizes ({listed}); pass --image-size N "
            "(image_size=N) to resize them all to N x N."
        )


def _check_no_shared_pixels(loaded: dict[str, tuple[Path, np.ndarray]]) -> None:
    """No image (byte for byte) may appear in two splits (pkl layout: rows have no names)."""
    seen: dict[bytes, tuple[str, Path, int]] = {}
    for split, (path, images) in loaded.items():
        for row, image in enumerate(images):
            digest = hashlib.blake2b(np.ascontiguousarray(image).data, digest_size=16).digest()
            if digest in seen and seen[digest][0] != split:
                other, other_path, other_row = seen[digest]
                raise DataError(
                    f"{other_path} and {path}: row {other_row} of the '{other}' split and row "
                    f"{row} of the '{split}' split are the same image; keep each image in one "
                    "split only."
                )
            seen.setdefault(digest, (split, path, row))


def read_split_csv(path: Path) -> _Manifest:
    """Parse and check a ``filename,label`` split file."""
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the split file ({exc}).") from exc
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None or tuple(h.strip() for h in header) != CSV_HEADER:
        raise DataError(f"{path}: bad header {header!r}; expected 'filename,label'.")
    filenames, names = [], []
    for row in reader:
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        fields = [f.strip() for f in row]
        if len(fields) != 2 or not all(fields):
            raise DataError(
                f"{path}: line {reader.line_num} is malformed ({row!r}); expected 'filename,label'."
            )
        filenames.append(fields[0])
        names.append(fields[1])
    if not filenames:
        raise DataError(f"{path}: lists no images.")
    seen: set[str] = set()
    for filename in filenames:
        if filename in seen:
            raise DataError(f"{path}: image {filename} is listed more than once.")
        seen.add(filename)
    class_names, labels = np.unique(np.asarray(names), return_inverse=True)
    return _Manifest(
        path,
        tuple(filenames),
        tuple(str(c) for c in class_names),
        labels.astype(np.int32).reshape(-1),
        hashlib.sha1(raw).hexdigest(),
    )


def resolve_cache_dir(data_dir: Path, cache_dir: str | Path | None) -> Path | None:
    """Where decoded splits are cached (created if needed), or None if nowhere is writable."""
    if cache_dir is not None:
        candidates = [Path(cache_dir).expanduser()]
    else:
        key = hashlib.sha1(str(Path(data_dir).absolute()).encode()).hexdigest()
        home = Path.home() / ".cache" / "bmg" / "fewshot" / key
        candidates = [Path(data_dir) / CACHE_DIRNAME, home]
    for candidate in candidates:
        if _writable_dir(candidate):
            return candidate
    return None


def _writable_dir(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(path, os.W_OK | os.X_OK)


def _check_images_dir(images_dir: Path) -> None:
    if not images_dir.is_dir():
        raise DataError(
            f"{images_dir}: images folder is missing; the csv layout needs the split files "
            f"next to an {IMAGES_DIR}/ folder of JPEGs."
        )


def _images_digest(images_dir: Path, manifest: _Manifest) -> str:
    """sha1 of every listed image's relative path, size and modification time in nanoseconds
    (``os.stat``, following links), in csv order: it changes whenever an image is replaced,
    rewritten, truncated or touched. Raises DataError for a missing folder or image."""
    _check_images_dir(images_dir)
    digest = hashlib.sha1()
    for name in manifest.filenames:
        path = images_dir / name
        try:
            stat = os.stat(path)
        except FileNotFoundError as exc:
            raise DataError(
                f"{path}: image listed in {manifest.path.name} does not exist."
            ) from exc
        except OSError as exc:
            raise DataError(f"{path}: cannot read the image's file status ({exc}).") from exc
        digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _cache_prefix(split: str, manifest: _Manifest) -> str:
    """The names of every cache file of this split and csv start with this."""
    return f"{split}-{_CACHE_VERSION}-{manifest.digest[:16]}"


def _cache_stem(split: str, manifest: _Manifest, images: str) -> str:
    return f"{_cache_prefix(split, manifest)}-{images[:16]}"


def _cached_images(
    images_dir: Path, split: str, manifest: _Manifest, image_size: int | None, cache: Path | None
) -> np.ndarray:
    """The split's decoded images: from a valid cache file of the images as they are now (their
    stats taken before any decoding, so an image changed meanwhile rebuilds the next load),
    else decoded (and cached)."""
    if cache is None:
        return _build_images(images_dir, split, manifest, image_size, None)
    stem = _cache_stem(split, manifest, _images_digest(images_dir, manifest))
    for path, size in _cache_candidates(cache, stem, image_size):
        images = _open_cache(path, len(manifest.filenames), size)
        if images is not None:
            return images
    images = _build_images(images_dir, split, manifest, image_size, (cache, stem))
    _remove_stale(cache, split, manifest, stem)
    return images


def _remove_stale(cache: Path, split: str, manifest: _Manifest, stem: str) -> None:
    """Delete the split's cache files (same csv) of earlier versions of its images, and those of
    the csv-only keys of version v1: no load can use them again. Best effort (a file in use
    elsewhere stays readable where it is open; one that cannot be removed is left)."""
    old = f"{split}-v1-{manifest.digest[:16]}-*px*.npy"
    for path in [*cache.glob(f"{_cache_prefix(split, manifest)}-*.npy"), *cache.glob(old)]:
        if not path.name.startswith(f"{stem}-"):
            try:
                path.unlink(missing_ok=True)
            except OSError:
                pass


def _cache_candidates(cache: Path, stem: str, image_size: int | None) -> list[tuple[Path, int]]:
    """Cache files that may hold this split; "-resized" files had some images resized."""
    if image_size is not None:
        names = [f"{stem}-{image_size}px.npy", f"{stem}-{image_size}px-resized.npy"]
        return [(cache / n, image_size) for n in names if (cache / n).is_file()]
    found = []
    for path in sorted(cache.glob(f"{stem}-*px.npy")):
        size = path.name[len(stem) + 1 : -len("px.npy")]
        if size.isdigit():
            found.append((path, int(size)))
    return found


def _open_cache(path: Path, count: int, size: int) -> np.ndarray | None:
    """Memory-map a cache file, or None (with a warning) if it is unreadable or the wrong shape."""
    try:
        images = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        warnings.warn(f"{path}: unreadable cache file, rebuilding it ({exc}).", stacklevel=2)
        return None
    if images.dtype != np.uint8 or images.shape != (count, size, size, 3):
        warnings.warn(
            f"{path}: cache file has dtype {images.dtype} and shape {images.shape}, expected "
            f"uint8 {(count, size, size, 3)}; rebuilding it.",
            stacklevel=2,
        )
        return None
    return images


def _build_images(
    images_dir: Path,
    split: str,
    manifest: _Manifest,
    image_size: int | None,
    target: tuple[Path, str] | None,
) -> np.ndarray:
    """Decode every JPEG of the split, into a new cache file ``<stem>-<size>px[-resized].npy``
    when ``target`` = (cache folder, stem) is set."""
    _check_images_dir(images_dir)
    cache, stem = target if target is not None else (None, "")
    paths = [images_dir / f for f in manifest.filenames]
    size = image_size if image_size is not None else _native_size(paths[0], manifest)
    shape = (len(paths), size, size, 3)
    if cache is not None:
        try:
            handle, tmp_name = tempfile.mkstemp(dir=cache, prefix=f".{split}-", suffix=".npy.tmp")
        except OSError as exc:
            warnings.warn(f"{cache}: cannot write the image cache ({exc}).", stacklevel=2)
            cache = None
    if cache is None:
        images = np.empty(shape, np.uint8)
        _decode_all(paths, manifest, images, image_size)
        return images
    os.close(handle)
    tmp = Path(tmp_name)
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        resized = _decode_all(paths, manifest, out, image_size)
        out.flush()
        del out
        suffix = "-resized" if resized else ""
        final = cache / f"{stem}-{size}px{suffix}.npy"
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return np.load(final, mmap_mode="r")


def _native_size(path: Path, manifest: _Manifest) -> int:
    """The size of the first image, which must be square (``image_size=None``)."""
    with _open_image(path, manifest) as image:
        width, height = image.size
    if width != height:
        raise DataError(
            f"{path}: image is {width}x{height}, not square; pass --image-size N "
            "(image_size=N) to resize."
        )
    return width


def _decode_all(
    paths: list[Path], manifest: _Manifest, out: np.ndarray, image_size: int | None
) -> bool:
    """Decode ``paths`` into ``out`` (threaded); return whether any image was resized."""
    size = out.shape[1]
    chunks = [
        range(i, min(i + _DECODE_CHUNK, len(paths))) for i in range(0, len(paths), _DECODE_CHUNK)
    ]

    def work(rows: range) -> bool:
        resized = False
        for i in rows:
            out[i], was_resized = decode_image(paths[i], manifest, size, image_size is not None)
            resized |= was_resized
        return resized

    return any(_map_threaded(work, chunks))


def _map_threaded(fn: Callable[[range], bool], chunks: list[range]) -> list[bool]:
    workers = max(1, min(8, os.cpu_count() or 1, len(chunks)))
    if workers == 1:
        return [fn(c) for c in chunks]
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers)
    try:
        return list(pool.map(fn, chunks))  # in order, so the first bad file in the csv is named
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _open_image(path: Path, manifest: _Manifest) -> Image.Image:
    try:
        return Image.open(path)
    except FileNotFoundError as exc:
        raise DataError(f"{path}: image listed in {manifest.path.name} does not exist.") from exc
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: truncated or unreadable image ({exc}).") from exc


def decode_image(
    path: Path, manifest: _Manifest, size: int, resize: bool
) -> tuple[np.ndarray, bool]:
    """Fully decode one image to uint8 [size, size, 3]; return it and whether it was resized."""
    with _open_image(path, manifest) as image:
        try:
            rgb = image.convert("RGB")  # forces a full decode; truncated files raise here
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            raise DataError(f"{path}: truncated or unreadable image ({exc}).") from exc
    if rgb.size == (size, size):
        return np.asarray(rgb, dtype=np.uint8), False
    if not resize:
        raise DataError(
            f"{path}: image is {rgb.size[0]}x{rgb.size[1]} but the first one is {size}x{size}; "
            "pass --image-size N (image_size=N) to resize them all."
        )
    return np.asarray(rgb.resize((size, size), _RESAMPLE), dtype=np.uint8), True


# --------------------------------------------------------------------------------------------
# pkl layout


def _load_pkl_layout(
    root: Path, splits: tuple[str, ...], image_size: int | None, min_per_class: int
) -> dict[str, Split]:
    paths = [root / PKL_NAME.format(s) for s in splits]
    try:  # a pickled uint8 array is about its file's size in memory
        memory.check_fits(
            sum(p.stat().st_size for p in paths),
            f"{root}: unpickling {', '.join(p.name for p in paths)}",
            "free memory, or use the csv layout (its images are memory-mapped from a cache)",
        )
    except ValueError as error:
        raise DataError(str(error)) from None
    loaded = {}
    for s in splits:
        path = root / PKL_NAME.format(s)
        images, labels, class_names = read_cache_pkl(path)
        _check_classes(path, s, class_names, labels, min_per_class)
        loaded[s] = (path, images, labels, class_names)
    _check_disjoint({s: (path, names) for s, (path, _, _, names) in loaded.items()})
    _check_no_shared_pixels({s: (path, images) for s, (path, images, _, _) in loaded.items()})
    if image_size is None:
        _check_one_size(root, {s: (path, images) for s, (path, images, _, _) in loaded.items()})
    resized = [images for _, images, _, _ in loaded.values() if images.shape[1] != image_size]
    if image_size is not None and resized:
        _check_images_fit(root, sum(len(images) for images in resized), image_size)
    out = {}
    for s, (_, images, labels, class_names) in loaded.items():
        if image_size is not None and images.shape[1] != image_size:
            images = resize_images(images, image_size)
        out[s] = _make_split(s, images, labels, class_names)
    return out


def read_cache_pkl(path: Path) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Unpickle and check one ``mini-imagenet-cache-*.pkl``: (images, labels, class names)."""
    data = _unpickle(path)
    if not isinstance(data, dict) or not {"image_data", "class_dict"} <= data.keys():
        keys = sorted(map(str, data)) if isinstance(data, dict) else type(data).__name__
        raise DataError(f"{path}: expected a dict with 'image_data' and 'class_dict', got {keys}.")
    images = data["image_data"]
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
        kind = images.dtype if isinstance(images, np.ndarray) else type(images).__name__
        raise DataError(f"{path}: image_data must be a uint8 numpy array, got {kind}.")
    if images.ndim != 4 or images.shape[1] != images.shape[2] or images.shape[3] != 3:
        raise DataError(f"{path}: image_data has shape {images.shape}, expected [N, S, S, 3].")
    labels, class_names = _labels_from_class_dict(path, data["class_dict"], len(images))
    return images, labels, class_names


def _unpickle(path: Path) -> Any:
    try:
        with open(path, "rb") as f:
            try:
                return pickle.load(f)
            except UnicodeDecodeError:  # pickles written by Python 2
                f.seek(0)
                return pickle.load(f, encoding="latin1")
    except Exception as exc:  # garbage can fail in many ways while unpickling
        raise DataError(f"{path}: cannot unpickle the file ({exc!r}).") from exc


def _labels_from_class_dict(
    path: Path, class_dict: Any, count: int
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Labels from ``class_dict``, which must assign every row of image_data to one class."""
    if not isinstance(class_dict, dict) or not class_dict:
        raise DataError(f"{path}: class_dict must be a non-empty dict of class -> row indices.")
    class_names = tuple(sorted(str(k) for k in class_dict))
    by_name = {str(k): v for k, v in class_dict.items()}
    labels = np.full(count, -1, np.int64)
    for c, name in enumerate(class_names):
        rows = np.asarray(by_name[name])
        if rows.ndim != 1 or (rows.size and rows.dtype.kind not in "iu"):
            raise DataError(f"{path}: class_dict[{name!r}] is not a list of integer row indices.")
        rows = rows.astype(np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= count):
            bad = rows[(rows < 0) | (rows >= count)][0]
            raise DataError(
                f"{path}: class {name} lists row {bad}, outside image_data's {count} rows."
            )
        if (labels[rows] != -1).any() or len(np.unique(rows)) != len(rows):
            raise DataError(f"{path}: class {name} lists a row that is already assigned.")
        labels[rows] = c
    if (labels == -1).any():
        row = int(np.flatnonzero(labels == -1)[0])
        raise DataError(f"{path}: row {row} of image_data belongs to no class in class_dict.")
    return labels.astype(np.int32), class_names


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """Resize uint8 [N, S, S, 3] images to [N, size, size, 3] with PIL bilinear filtering."""
    out = np.empty((len(images), size, size, 3), np.uint8)
    for i, image in enumerate(images):
        out[i] = np.asarray(Image.fromarray(image).resize((size, size), _RESAMPLE))
    return out


# --------------------------------------------------------------------------------------------
# Task sampling


class TaskSampler:
    """Samples N-way K-shot tasks from a Split on the host (numpy), deterministically from a seed.

    Each task draws ``ways`` distinct classes uniformly (their order gives the task labels
    0..ways-1), then ``shots + queries`` distinct images of each class uniformly without
    replacement: the first ``shots`` go to the support set, the rest to the query set. Both sets
    are ordered class-major.
    """

    def __init__(self, split: Split, *, ways: int, shots: int, queries: int):
        for name, value in (("ways", ways), ("shots", shots), ("queries", queries)):
            if not _is_int(value) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        if ways > split.num_classes:
            raise DataError(
                f"split '{split.name}' has {split.num_classes} classes, fewer than ways={ways}."
            )
        need = shots + queries
        for name, rows in zip(split.class_names, split.class_indices, strict=True):
            if len(rows) < need:
                raise DataError(
                    f"class {name} in split '{split.name}' has {len(rows)} images but "
                    f"{need} are needed (shots + queries)."
                )
        self.split, self.ways, self.shots, self.queries = split, ways, shots, queries

    def sample_indices(self, rng: np.random.Generator, num_tasks: int) -> TaskIndices:
        """Draw the classes and image rows of ``num_tasks`` tasks (no pixels are read)."""
        if not _is_int(num_tasks) or num_tasks < 1:
            raise ValueError(f"num_tasks must be a positive integer, got {num_tasks!r}.")
        ways, shots, per = self.ways, self.shots, self.shots + self.queries
        classes = np.empty((num_tasks, ways), np.int64)
        rows = np.empty((num_tasks, ways, per), np.int64)
        for t in range(num_tasks):
            classes[t] = rng.choice(self.split.num_classes, ways, replace=False)
            for j, c in enumerate(classes[t]):
                members = self.split.class_indices[c]
                rows[t, j] = members[rng.choice(len(members), per, replace=False)]
        support = rows[:, :, :shots].reshape(num_tasks, ways * shots)
        query = rows[:, :, shots:].reshape(num_tasks, ways * self.queries)
        return TaskIndices(classes, support, query)

    def sample(self, rng: np.random.Generator, num_tasks: int) -> Tasks:
        """Draw ``num_tasks`` tasks; images are float32 in [0, 1]."""
        idx = self.sample_indices(rng, num_tasks)
        support, query = self.gather(idx.support), self.gather(idx.query)
        return Tasks(
            support,
            np.broadcast_to(self._labels(self.shots), idx.support.shape).copy(),
            query,
            np.broadcast_to(self._labels(self.queries), idx.query.shape).copy(),
        )

    def gather(self, rows: np.ndarray) -> np.ndarray:
        """Images at ``rows`` (any shape) as float32 in [0, 1], read in sorted order."""
        unique, inverse = np.unique(rows, return_inverse=True)
        pixels = np.asarray(self.split.images[unique])
        out = pixels[inverse.reshape(rows.shape)].astype(np.float32)
        out *= np.float32(1.0 / 255.0)
        return out

    def _labels(self, per_class: int) -> np.ndarray:
        return np.repeat(np.arange(self.ways, dtype=np.int32), per_class)

"""A procedurally generated, MiniImagenet-shaped dataset for tests and smoke runs.

``make_synthetic`` writes either on-disk layout that :func:`bmg.fewshot.data.load_splits` reads
("csv": ``train.csv``/``val.csv``/``test.csv`` + ``images/*.jpg``; "pkl": the three
``mini-imagenet-cache-<split>.pkl`` files), with ``classes`` classes in every split.

Every class is a random *prototype*: a sum of three components, each either a Gaussian-windowed
oriented sinusoidal grating or a Gaussian blob, with its own position, width, orientation, spatial
frequency, phase and colour. An instance is its class prototype shifted by a few pixels, with
jittered component colours, amplitudes and grating phases, a random background tint, a random
contrast, one class-independent distractor blob and pixel noise. All classes of all splits are
drawn from this one family, so what a learner picks up on the train classes transfers to the
(different) val and test classes, while the nuisances keep 1-shot tasks from being trivial.
Numpy and PIL only; the output is a deterministic function of the arguments.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from PIL import Image

FORMATS = ("csv", "pkl")
SPLIT_NAMES = ("train", "val", "test")
PKL_NAME = "mini-imagenet-cache-{}.pkl"
JPEG_QUALITY = 95
_COMPONENTS = 3


def make_synthetic(
    out_dir: str | Path,
    *,
    format: str,
    classes: int,
    per_class: int,
    size: int,
    seed: int = 0,
) -> Path:
    """Write a synthetic few-shot dataset to ``out_dir`` and return its path.

    ``classes`` classes per split (3 * classes in all, with distinct WordNet-like names such as
    ``n900000000``), ``per_class`` images per class, each ``size x size x 3`` uint8. The same
    arguments (``format`` aside) give the same pixels, so a csv and a pkl copy made with one seed
    hold the same images up to JPEG error. Raises ValueError on bad arguments or when ``out_dir``
    already holds a dataset.
    """
    out = check_args(out_dir, format, classes, per_class, size)
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    if format == "csv":
        (out / "images").mkdir()
    for s, split in enumerate(SPLIT_NAMES):
        names = [_class_name(s * classes + c) for c in range(classes)]
        images = np.stack([render_class(rng, per_class, size) for _ in names])
        if format == "csv":
            _write_csv_split(out, split, names, images)
        else:
            _write_pkl_split(out, split, names, images)
    return out


def render_class(rng: np.random.Generator, count: int, size: int) -> np.ndarray:
    """Draw one class prototype and render ``count`` instances of it: uint8 [count, S, S, 3]."""
    proto = _draw_prototype(rng, size)
    return _render_instances(rng, proto, count, size)


def check_args(out_dir: str | Path, format: str, classes: int, per_class: int, size: int) -> Path:
    """``out_dir`` as a Path once the arguments are good and a split fits in memory (a split's
    uint8 images, and a class's float32 rendering several times over); nothing is created.

    Raises:
      ValueError: one sentence naming the argument, or the memory a split would need.
    """
    from bmg.memory import check_fits

    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}.")
    for name, value, low in (
        ("classes", classes, 2),
        ("per_class", per_class, 1),
        ("size", size, 8),
    ):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}.")
    split_bytes = classes * per_class * size * size * 3  # uint8
    rendering = 4 * per_class * size * size * 3 * 4  # float32 working arrays of one class
    check_fits(
        split_bytes + rendering,
        f"a split of {classes} classes x {per_class} images of {size} x {size}",
        "choose fewer classes, fewer images per class or a smaller --size",
    )
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a directory.")
    existing = [p.name for p in _dataset_paths(out) if p.exists()]
    if existing:
        raise ValueError(
            f"{out}: already holds a dataset ({', '.join(existing)}); not overwriting."
        )
    return out


def _dataset_paths(out: Path) -> list[Path]:
    csvs = [out / f"{s}.csv" for s in SPLIT_NAMES]
    pkls = [out / PKL_NAME.format(s) for s in SPLIT_NAMES]
    return [*csvs, out / "images", *pkls]


def _class_name(index: int) -> str:
    return f"n9{index:07d}"


def _draw_prototype(rng: np.random.Generator, size: int) -> dict[str, np.ndarray]:
    """Class-specific parameters of the components, each an array of length ``_COMPONENTS``."""
    k = _COMPONENTS
    colour = rng.uniform(-1.0, 1.0, (k, 3))
    colour *= 0.28 / np.maximum(np.abs(colour).max(axis=1, keepdims=True), 1e-6)
    return {
        "grating": rng.random(k) < 0.65,
        "cx": rng.uniform(0.2, 0.8, k) * size,
        "cy": rng.uniform(0.2, 0.8, k) * size,
        "sigma": rng.uniform(0.12, 0.28, k) * size,
        "theta": rng.uniform(0.0, np.pi, k),
        "freq": rng.uniform(1.5, 4.5, k) / size,  # cycles per pixel
        "phase": rng.uniform(0.0, 2 * np.pi, k),
        "colour": colour,
    }


def _render_instances(
    rng: np.random.Generator, proto: dict[str, np.ndarray], count: int, size: int
) -> np.ndarray:
    max_shift = max(1, round(0.08 * size))
    shift = rng.integers(-max_shift, max_shift + 1, (count, 2))
    grid = np.arange(size, dtype=np.float32)
    image = np.zeros((count, size, size, 3), np.float32)
    for j in range(_COMPONENTS):
        # Separable forms: the Gaussian window and the grating factor over rows and columns.
        dx = grid[None, :] - (proto["cx"][j] + shift[:, :1]).astype(np.float32)  # [count, S]
        dy = grid[None, :] - (proto["cy"][j] + shift[:, 1:]).astype(np.float32)
        inv = np.float32(-0.5 / proto["sigma"][j] ** 2)
        gx, gy = np.exp(inv * dx**2), np.exp(inv * dy**2)
        if proto["grating"][j]:
            theta = proto["theta"][j] + rng.normal(0.0, 0.08, (count, 1))
            phase = proto["phase"][j] + rng.normal(0.0, 0.8, (count, 1))
            w = 2 * np.pi * proto["freq"][j]
            ax = (w * np.cos(theta) * dx + phase).astype(np.float32)
            ay = (w * np.sin(theta) * dy).astype(np.float32)
            pattern = _outer(gy * np.cos(ay), gx * np.cos(ax)) - _outer(
                gy * np.sin(ay), gx * np.sin(ax)
            )
        else:
            pattern = _outer(gy, gx)
        amplitude = rng.uniform(0.7, 1.3, (count, 1, 1, 1)).astype(np.float32)
        colour = proto["colour"][j] + rng.normal(0.0, 0.06, (count, 1, 1, 3))
        image += amplitude * pattern[..., None] * colour.astype(np.float32)
    image += _distractor(rng, count, grid)
    contrast = rng.uniform(0.6, 1.4, (count, 1, 1, 1)).astype(np.float32)
    background = 0.5 + rng.normal(0.0, 0.06, (count, 1, 1, 3)).astype(np.float32)
    noise = rng.standard_normal(image.shape, dtype=np.float32) * np.float32(0.07)
    image = background + contrast * image + noise
    return np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)


def _outer(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Per instance outer product: [count, S] x [count, S] -> [count, S, S] (row, col)."""
    return rows[:, :, None] * cols[:, None, :]


def _distractor(rng: np.random.Generator, count: int, grid: np.ndarray) -> np.ndarray:
    """One class-independent Gaussian blob per instance, at a random place in a random colour."""
    size = len(grid)
    centre = rng.uniform(0.0, size, (count, 2, 1)).astype(np.float32)
    sigma = rng.uniform(0.06, 0.18, (count, 1)) * size
    inv = (-0.5 / sigma**2).astype(np.float32)
    gx = np.exp(inv * (grid[None, :] - centre[:, 0]) ** 2)
    gy = np.exp(inv * (grid[None, :] - centre[:, 1]) ** 2)
    colour = rng.uniform(-0.35, 0.35, (count, 1, 1, 3)).astype(np.float32)
    return _outer(gy, gx)[..., None] * colour


def _write_csv_split(out: Path, split: str, names: list[str], images: np.ndarray) -> None:
    rows = ["filename,label"]
    for c, name in enumerate(names):
        for i, pixels in enumerate(images[c]):
            filename = f"{name}{i:08d}.jpg"
            Image.fromarray(pixels).save(
                out / "images" / filename, quality=JPEG_QUALITY, subsampling=0
            )
            rows.append(f"{filename},{name}")
    (out / f"{split}.csv").write_text("\n".join(rows) + "\n")


def _write_pkl_split(out: Path, split: str, names: list[str], images: np.ndarray) -> None:
    classes, per_class = images.shape[:2]
    class_dict = {
        name: list(range(c * per_class, (c + 1) * per_class)) for c, name in enumerate(names)
    }
    data = {"image_data": images.reshape(-1, *images.shape[2:]), "class_dict": class_dict}
    with open(out / PKL_NAME.format(split), "wb") as f:
        pickle.dump(data, f, protocol=4)

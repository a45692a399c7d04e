"""Datasets as uint8 images (N, H, W, C) with integer labels, class names and the input shape.

Sources, in the order they are tried for a name:
  1. `CNN_DATA_DIR/<name>.npz` in Keras layout (x_train y_train x_test y_test) — nothing is downloaded;
  2. the embedded `mnist-sample` committed in data/ (made by data/make_mnist_sample.py);
  3. Keras's own loaders (download once, then cached in ~/.keras/datasets);
  4. a folder (or .zip) with one sub-folder of images per class, streamed from disk.
"""
from __future__ import annotations

import functools
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnn.errors import DatasetError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
EMBEDDED_DIR = PROJECT_ROOT / "data"
SAMPLE = "mnist-sample"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")  # what image_dataset_from_directory decodes


@dataclass(frozen=True)
class DatasetInfo:
    """What the app can say about a dataset before loading it."""

    name: str
    title: str
    input_shape: tuple[int, int, int]
    class_names: tuple[str, ...]
    description: str
    train_size: int  # images in the training split


CATALOG = {
    "mnist": DatasetInfo("mnist", "MNIST digits", (28, 28, 1), tuple("0123456789"),
                         "70,000 handwritten digits, 28×28 grayscale (60,000 train / 10,000 test)", 60_000),
    "fashion_mnist": DatasetInfo(
        "fashion_mnist", "Fashion-MNIST", (28, 28, 1),
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        "70,000 clothing photos, 28×28 grayscale (60,000 train / 10,000 test)", 60_000),
    "cifar10": DatasetInfo(
        "cifar10", "CIFAR-10", (32, 32, 3),
        ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
        "60,000 small colour photos, 32×32 RGB (50,000 train / 10,000 test)", 50_000),
    SAMPLE: DatasetInfo(SAMPLE, "MNIST sample (embedded, offline)", (28, 28, 1), tuple("0123456789"),
                        "12,000 MNIST digits shipped with the app (1,000 train + 200 test per class)", 10_000),
}

FOLDER = "folder:"  # the Dataset.name prefix of class-folder datasets, e.g. 'folder:shapes'
UNKNOWN = "unknown"  # a saved model's dataset when nothing says which one it was trained on
_HASH_PREFIX = re.compile(r"^[0-9a-f]{16}-")  # cache file names start or end with a content hash
_HASH_SUFFIX = re.compile(r"-[0-9a-f]{16}$")


def is_folder(name) -> bool:
    """Whether a dataset name (or a saved model's 'dataset') is a class-folder dataset, not a catalogue one."""
    return str(name).startswith(FOLDER)


def folder_label(name) -> str:
    """The human name of a class-folder dataset: 'shapes' for 'folder:shapes', '…/uploads/<hash>-shapes.zip' or
    '…/datasets/shapes-<hash>'."""
    text = str(name)[len(FOLDER):] if is_folder(name) else Path(str(name)).name
    text = re.sub(r"\.zip$", "", text, flags=re.IGNORECASE)
    return _HASH_SUFFIX.sub("", _HASH_PREFIX.sub("", text)) or "class folders"


def dataset_title(name) -> str:
    """What people call a dataset: the catalogue title, 'class folders: <label>', or 'unknown dataset'."""
    if name in CATALOG:
        return CATALOG[name].title
    return "unknown dataset" if not name or name == UNKNOWN else f"class folders: {folder_label(name)}"


def dataset_slug(name) -> str:
    """A short name-safe word for a dataset, for default model names: 'mnist-sample', 'shapes'."""
    text = name if name in CATALOG else folder_label(name)
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-._")[:40] or "data"


# When a dataset cannot be had here (offline, no CNN_DATA_DIR), pages may use a committed subset of it instead.
STAND_INS = {"mnist": SAMPLE}  # mnist-sample's images are MNIST's own (train from train, test from test)


@dataclass
class Dataset:
    """Images stay uint8 in memory; the model rescales them itself."""

    name: str  # catalogue name, or 'folder:<name>' for class folders
    class_names: list[str]
    input_shape: tuple[int, int, int]
    x_train: np.ndarray | None  # (N, H, W, C) uint8; None when the training split is streamed
    y_train: np.ndarray | None  # (N,) int
    x_test: np.ndarray  # (M, H, W, C) uint8
    y_test: np.ndarray  # (M,) int
    source: str  # where it came from, for people ("CNN_DATA_DIR/mnist.npz", "embedded sample", ...)
    train_stream: object = None  # tf.data.Dataset of (uint8 image, int label), unbatched (folders only)
    streamed_count: int = 0  # images in train_stream

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def streamed(self) -> bool:
        return self.x_train is None

    @property
    def num_train(self) -> int:
        return self.streamed_count if self.streamed else len(self.x_train)

    @property
    def num_test(self) -> int:
        return len(self.x_test)


# ---------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------

def data_dir() -> Path | None:
    """The folder named by CNN_DATA_DIR, if set."""
    value = os.environ.get("CNN_DATA_DIR")
    return Path(value).expanduser() if value else None


def load_dataset(name: str, limit: int | tuple[int, int] | None = None, **folder_options) -> Dataset:
    """Load a dataset by name (see CATALOG) or from a folder/.zip of class folders.

    `limit` keeps the first N images of each split (or (N_train, N_test)), stratified by class.
    """
    path = Path(str(name)).expanduser()
    if name not in CATALOG and (path.is_dir() or path.suffix.lower() == ".zip"):
        dataset = load_folder(path, **folder_options)
    elif name not in CATALOG:
        raise DatasetError(f"unknown dataset {name!r}: choose one of {', '.join(CATALOG)}, "
                           "or give a folder (or .zip) with one sub-folder of images per class")
    else:
        dataset = _load_named(name)
    return apply_limit(dataset, limit) if limit else dataset


def _load_named(name: str) -> Dataset:
    info = CATALOG[name]
    local = data_dir() / f"{name}.npz" if data_dir() else None
    if local is not None and local.is_file():
        arrays, source = _read_npz(str(local), local.stat().st_mtime), f"CNN_DATA_DIR/{local.name}"
    elif name == SAMPLE:
        sample = EMBEDDED_DIR / f"{SAMPLE}.npz"
        if not sample.is_file():
            raise DatasetError(f"the embedded sample {sample} is missing; run `python data/make_mnist_sample.py` "
                               "with CNN_DATA_DIR pointing at a folder holding mnist.npz")
        arrays, source = _read_npz(str(sample), sample.stat().st_mtime), "embedded sample (data/mnist-sample.npz)"
    else:
        arrays, source = _download(name), "Keras download cache (~/.keras/datasets)"
    x_train, y_train, x_test, y_test = arrays
    return Dataset(name, list(info.class_names), info.input_shape, x_train, y_train, x_test, y_test, source)


def _download(name: str):
    """Keras's loader: downloads once, then reads its cache. Offline and uncached → one clear error."""
    import contextlib
    import sys

    import keras

    try:
        # Keras prints its download progress to stdout: send it to stderr so `--json` output stays JSON.
        with contextlib.redirect_stdout(sys.stderr):
            (x_train, y_train), (x_test, y_test) = getattr(keras.datasets, name).load_data()
    except Exception as exc:  # noqa: BLE001 — urllib, ssl, socket and Keras all raise their own kinds
        raise DatasetError(
            f"dataset {name!r} is not available: Keras could not download it ({type(exc).__name__}: {exc}). "
            f"Offline? Put {name}.npz (arrays x_train y_train x_test y_test) in a folder and set CNN_DATA_DIR "
            f"to it, or use the embedded '{SAMPLE}'.") from None
    return _standardise(x_train, y_train, x_test, y_test, f"Keras {name}")


@functools.lru_cache(maxsize=4)
def _read_npz(path: str, mtime: float):
    """Arrays of a Keras-layout .npz, read-only (the cache shares them); `mtime` invalidates the cache."""
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = {"x_train", "y_train", "x_test", "y_test"} - set(data.files)
            if missing:
                raise DatasetError(f"{path} lacks array(s) {', '.join(sorted(missing))}; "
                                   "expected Keras layout x_train y_train x_test y_test")
            arrays = data["x_train"], data["y_train"], data["x_test"], data["y_test"]
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from None
    return _standardise(*arrays, path)


def _standardise(x_train, y_train, x_test, y_test, where: str):
    """(N, H, W) → (N, H, W, 1), labels (N, 1) → (N,), check dtypes and lengths; arrays made read-only."""
    out = []
    for x, y, split in ((x_train, y_train, "train"), (x_test, y_test, "test")):
        if x.ndim == 3:
            x = x[..., None]
        y = np.asarray(y).reshape(-1)
        if x.ndim != 4 or x.shape[-1] not in (1, 3) or len(x) != len(y):
            raise DatasetError(f"{where}: x_{split} has shape {x.shape} and y_{split} {len(y)} labels; expected "
                               "(N, H, W) or (N, H, W, 1|3) images and N labels")
        if x.dtype != np.uint8:
            if x.min() < 0 or x.max() > 255:
                raise DatasetError(f"{where}: x_{split} values must be 0…255 (got {x.min()}…{x.max()})")
            x = x.astype(np.uint8)
        y = y.astype(np.int64)
        x.flags.writeable = False
        y.flags.writeable = False
        out += [x, y]
    return tuple(out)


# ---------------------------------------------------------------------------
# Limits: the first N images per split, stratified by class (for fast runs and tests)
# ---------------------------------------------------------------------------

def stratified_first(labels: np.ndarray, n: int) -> np.ndarray:
    """Indices of the first `n` images with classes as balanced as the data allow, in original order."""
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    quota = np.zeros(len(classes), dtype=int)
    # Fill quotas round-robin so scarce classes give their leftover share to the others.
    remaining = min(n, len(labels))
    while remaining > 0:
        open_ = np.flatnonzero(quota < counts)
        share = max(remaining // len(open_), 1)
        for i in open_[: remaining if share == 1 else None]:
            take = min(share, counts[i] - quota[i])
            quota[i] += take
            remaining -= take
    picks = [np.flatnonzero(labels == c)[:q] for c, q in zip(classes, quota)]
    return np.sort(np.concatenate(picks))


def apply_limit(dataset: Dataset, limit: int | tuple[int, int]) -> Dataset:
    """The same dataset with at most limit (or (train, test)) images per split."""
    n_train, n_test = (limit, limit) if isinstance(limit, int) else limit
    if n_train < 1 or n_test < 1:
        raise DatasetError(f"limit must be at least 1 image per split, got {limit}")
    test = stratified_first(dataset.y_test, n_test)
    if dataset.streamed:
        return Dataset(dataset.name, dataset.class_names, dataset.input_shape, None, None, dataset.x_test[test],
                       dataset.y_test[test], dataset.source, dataset.train_stream.take(n_train),
                       min(n_train, dataset.streamed_count))
    train = stratified_first(dataset.y_train, n_train)
    return Dataset(dataset.name, dataset.class_names, dataset.input_shape, dataset.x_train[train],
                   dataset.y_train[train], dataset.x_test[test], dataset.y_test[test], dataset.source)


# ---------------------------------------------------------------------------
# Image folders: one sub-folder per class, streamed with keras.utils.image_dataset_from_directory
# ---------------------------------------------------------------------------

def cache_dir() -> Path:
    return Path(os.environ.get("CNN_CACHE_DIR", Path.home() / ".cache" / "cnn-studio"))


def unpack_zip(path: Path) -> Path:
    """Extract a class-folder .zip once (keyed by its content hash) and return the folder."""
    from cnn.archive import extract_zip

    digest = hashlib.sha1(Path(path).read_bytes()).hexdigest()[:16]
    dest = cache_dir() / "datasets" / f"{Path(path).stem}-{digest}"
    return dest if dest.is_dir() else extract_zip(path, dest)


def find_class_root(folder: Path) -> tuple[Path, list[str]]:
    """The folder whose sub-folders are the classes (descending through lone wrapper folders)."""
    for _ in range(3):
        subdirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "__")))
        images = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS]
        if len(subdirs) == 1 and not images:
            folder = subdirs[0]
            continue
        classes = [d.name for d in subdirs if any(p.suffix.lower() in IMAGE_EXTENSIONS for p in d.rglob("*"))]
        if len(classes) < 2:
            raise DatasetError(f"{folder} needs at least two sub-folders of images (one per class), found "
                               f"{len(classes)}; supported images: {', '.join(IMAGE_EXTENSIONS)}")
        return folder, classes
    raise DatasetError(f"{folder}: no class sub-folders found")


def inspect_images(root: Path, classes: list[str], max_side: int) -> tuple[list[Path], tuple[int, int], str]:
    """All image files (checked readable), a common (height, width) and 'grayscale' or 'rgb'."""
    from collections import Counter

    from PIL import Image, UnidentifiedImageError

    files = [p for c in classes for p in sorted((root / c).rglob("*")) if p.suffix.lower() in IMAGE_EXTENSIONS]
    sizes, modes, bad = Counter(), Counter(), []
    for p in files:
        try:
            with Image.open(p) as im:
                sizes[im.size] += 1
                modes["grayscale" if im.mode in ("1", "L", "LA", "I", "I;16", "F") else "rgb"] += 1
        except (UnidentifiedImageError, OSError):
            bad.append(str(p.relative_to(root)))
    if bad:
        raise DatasetError(f"{len(bad)} file(s) are not readable images: {', '.join(bad[:5])}"
                           f"{' …' if len(bad) > 5 else ''}; remove or fix them")
    (w, h), _ = sizes.most_common(1)[0]
    scale = min(1.0, max_side / max(w, h))  # keep memory and time per step bounded
    color = "grayscale" if modes["grayscale"] == len(files) else "rgb"
    return files, (max(1, round(h * scale)), max(1, round(w * scale))), color


def load_folder(path, image_size: tuple[int, int] | None = None, color_mode: str | None = None,
                test_split: float = 0.2, seed: int = 0, max_side: int = 64) -> Dataset:
    """Class folders (or a .zip of them): the training split is streamed; the held-out split (test and
    validation) is read into memory. Images are resized to the most common size (at most max_side)."""
    import keras
    import tensorflow as tf

    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path} does not exist")
    folder = unpack_zip(path) if path.is_file() else path
    root, classes = find_class_root(folder)
    files, size, color = inspect_images(root, classes, max_side)
    image_size, color_mode = image_size or size, color_mode or color
    if len(files) < 2 * len(classes):
        raise DatasetError(f"{root} has only {len(files)} images for {len(classes)} classes; "
                           "add at least two per class")
    train, test = keras.utils.image_dataset_from_directory(
        root, labels="inferred", label_mode="int", class_names=classes, color_mode=color_mode, batch_size=None,
        image_size=image_size, shuffle=True, seed=seed, validation_split=test_split, subset="both",
        crop_to_aspect_ratio=True, verbose=False)
    count = int(train.cardinality())

    def to_uint8(image, label):
        return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8), label

    train, test = train.map(to_uint8), test.map(to_uint8)
    pairs = list(test.as_numpy_iterator())
    x_test = np.stack([p[0] for p in pairs]).astype(np.uint8)
    y_test = np.array([p[1] for p in pairs], dtype=np.int64)
    channels = 1 if color_mode == "grayscale" else 3
    return Dataset(f"{FOLDER}{folder_label(root.name)}", classes, (*image_size, channels), None, None, x_test, y_test,
                   str(path), train, count)


# ---------------------------------------------------------------------------
# Listing
# ---------------------------------------------------------------------------

def where(name: str) -> str:
    """Where `load_dataset(name)` would read from, without reading it."""
    local = data_dir() / f"{name}.npz" if data_dir() else None
    if local is not None and local.is_file():
        return f"local ({local})"
    if name == SAMPLE:
        return "embedded (offline)"
    cached = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets"
    if any(cached.glob(f"{name.replace('_', '-')}*")) or any(cached.glob(f"{name}*")):
        return "Keras cache"
    return "download (needs internet, or set CNN_DATA_DIR)"


def list_datasets() -> list[dict]:
    """One row per catalogue dataset: name, title, input shape, classes, source."""
    return [{"name": i.name, "title": i.title, "input_shape": i.input_shape, "classes": len(i.class_names),
             "source": where(i.name), "description": i.description} for i in CATALOG.values()]

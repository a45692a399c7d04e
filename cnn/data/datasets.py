"""Datasets as uint8 images (N, H, W, C) with integer labels, class names and the input shape.

Sources, in the order they are tried for a name:
  1. `CNN_DATA_DIR/<name>.npz` in Keras layout (x_train y_train x_test y_test) — nothing is downloaded;
  2. the embedded `mnist-sample` committed in data/ (made by data/make_mnist_sample.py);
  3. Keras's own loaders (download once, then cached in ~/.keras/datasets);
  4. a folder (or .zip) with one sub-folder of images per class, streamed from disk.
"""
from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnn.core.errors import DatasetError

PROJECT_ROOT = Path(__file__).resolve().parents[2]  # cnn/data/datasets.py → the project
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
    notes: tuple = ()  # for people: what loading skipped or changed (e.g. unusable images in a folder)
    skipped: tuple = ()  # (path, why) of the files of a class-folder dataset that were not usable images
    split: str = ""  # class folders: how the held-out images were chosen ("by-class" or "shuffled")

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


def load_catalogued(name: str) -> Dataset:
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
                       min(n_train, dataset.streamed_count), dataset.notes, dataset.skipped, dataset.split)
    train = stratified_first(dataset.y_train, n_train)
    return Dataset(dataset.name, dataset.class_names, dataset.input_shape, dataset.x_train[train],
                   dataset.y_train[train], dataset.x_test[test], dataset.y_test[test], dataset.source,
                   notes=dataset.notes, skipped=dataset.skipped, split=dataset.split)

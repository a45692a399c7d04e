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
import math
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnn.core.errors import CnnError, DatasetError
from cnn.data.preprocess import default_recipe, prepare_image

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
                       min(n_train, dataset.streamed_count), dataset.notes, dataset.skipped)
    train = stratified_first(dataset.y_train, n_train)
    return Dataset(dataset.name, dataset.class_names, dataset.input_shape, dataset.x_train[train],
                   dataset.y_train[train], dataset.x_test[test], dataset.y_test[test], dataset.source,
                   notes=dataset.notes, skipped=dataset.skipped)


# ---------------------------------------------------------------------------
# Uploads and the cache: content-addressed, capped, least recently used first out
# ---------------------------------------------------------------------------

MAX_UPLOAD_ZIP_BYTES = 100_000_000  # a class-folder .zip a person may upload
DEFAULT_CACHE_MB = 2_000  # CNN_CACHE_MB: the most the upload/extraction cache may hold
CACHE_GRACE_SECONDS = 600  # entries used this recently are never evicted (a page or a training may read them)


def cache_dir() -> Path:
    """CNN_CACHE_DIR, else ~/.cache/cnn-studio: uploaded .zips (uploads/) and their extractions (datasets/)."""
    return Path(os.environ.get("CNN_CACHE_DIR") or Path.home() / ".cache" / "cnn-studio").expanduser()


def cache_limit() -> int:
    """The cache's size cap in bytes: CNN_CACHE_MB (default 2,000 MB)."""
    value = os.environ.get("CNN_CACHE_MB", "")
    try:
        mb = float(value) if value else DEFAULT_CACHE_MB
    except ValueError:
        mb = math.nan
    if not math.isfinite(mb) or mb <= 0:
        raise DatasetError(f"CNN_CACHE_MB must be a positive number of megabytes, got {value!r}")
    return int(mb * 1e6)


def safe_text_label(text: str, fallback: str = "upload") -> str:
    """A client-supplied name made into a short label (letters, digits, space . _ -), for people only."""
    text = re.sub(r"\.zip$", "", str(text).replace("\\", "/").rsplit("/", 1)[-1], flags=re.IGNORECASE)
    text = re.sub(r"[^\w .-]+", "-", text, flags=re.ASCII).strip(" .-_")
    return text[:40].strip(" .-_") or fallback


def store_upload(data: bytes, filename: str) -> tuple[Path, str]:
    """Keep an uploaded class-folder .zip in the cache: (its path, a label for people).

    The path is made of the content's hash alone (`uploads/<sha256>.zip`): the client's file name never
    becomes part of a path. The label, `filename` sanitised, is kept beside it (`<sha256>.json`) and is what
    load_dataset names the dataset. The zip's directory is checked first (ArchiveError: traversal, bombs,
    too many or too large entries), and the cache is trimmed to its cap (DatasetError if it cannot make room).
    """
    import io
    import json
    import zipfile

    from cnn.data.archive import ArchiveError, check_zip
    from cnn.core.text import limit_text

    label = safe_text_label(filename)
    if len(data) > MAX_UPLOAD_ZIP_BYTES:
        raise DatasetError(f"{label}.zip is {limit_text(len(data), MAX_UPLOAD_ZIP_BYTES)}")
    if not bytes(data[:4]) == b"PK\x03\x04":
        raise DatasetError(f"{label} is not a .zip file; upload a .zip with one sub-folder of images per class")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            check_zip(archive)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise ArchiveError(f"{label}.zip is truncated or damaged: its zip directory is missing or broken") from None
    digest = hashlib.sha256(data).hexdigest()[:32]
    folder = cache_dir() / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    path, sidecar = folder / f"{digest}.zip", folder / f"{digest}.json"
    writes = [(sidecar, json.dumps({"label": label, "bytes": len(data)}).encode())]
    if path.is_file():
        touch(path)  # the same content again: only its label may change
    else:
        make_room(len(data), keep=(path,))
        writes.insert(0, (path, bytes(data)))
    for target, payload in writes:
        tmp = folder / f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.write_bytes(payload)
        os.replace(tmp, target)  # atomic: a reader never sees half a file
    return path, label


def upload_label(path) -> str | None:
    """The label store_upload kept for a cached upload, or None for any other path."""
    import json

    path = Path(path)
    sidecar = path.with_suffix(".json")
    if path.parent != cache_dir() / "uploads" or not sidecar.is_file():
        return None
    try:
        label = json.loads(sidecar.read_text()).get("label")
    except (OSError, ValueError, AttributeError):
        return None
    return safe_text_label(label) if isinstance(label, str) else None


def discard_upload(path) -> None:
    """Remove a cached upload (and its label) that turned out unusable; nothing outside the cache."""
    path = Path(path)
    if path.parent == cache_dir() / "uploads":
        path.unlink(missing_ok=True)
        path.with_suffix(".json").unlink(missing_ok=True)


def _size(path: Path) -> int:
    """Bytes on disk under `path` (a file or a folder)."""
    if path.is_file():
        return path.stat().st_size
    total = 0
    for base, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(base, name)).st_size
            except OSError:
                pass
    return total


def cache_entries() -> list[tuple[float, int, Path]]:
    """(last use, bytes, path) of every cached upload and extraction, least recently used first."""
    entries = []
    for sub, pattern in (("uploads", "*.zip"), ("datasets", "*")):
        folder = cache_dir() / sub
        if not folder.is_dir():
            continue
        for path in folder.glob(pattern):
            if path.name.startswith("."):
                continue  # temporaries: start-up clean-up's business
            try:
                entries.append((path.stat().st_mtime, _size(path), path))
            except OSError:
                continue
    return sorted(entries)


def touch(path: Path) -> None:
    """Mark a cache entry as just used (the cache evicts the least recently used first)."""
    try:
        os.utime(path)
    except OSError:
        pass


def make_room(needed: int, keep=()) -> list[Path]:
    """Evict least-recently-used cache entries (not `keep`, not used in the last CACHE_GRACE_SECONDS) until
    `needed` more bytes fit under the cap; the paths removed. DatasetError when they cannot be made to fit."""
    import shutil
    import time

    limit, keep = cache_limit(), {Path(k) for k in keep}
    entries = cache_entries()
    total = sum(size for _, size, _ in entries)
    removed = []
    for used, size, path in entries:
        if total + needed <= limit:
            break
        if path in keep or time.time() - used < CACHE_GRACE_SECONDS:
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            discard_upload(path) if path.suffix == ".zip" else path.unlink(missing_ok=True)
        total -= size
        removed.append(path)
    if total + needed > limit:
        from cnn.core.text import megabytes

        raise DatasetError(f"the server's upload cache is full: {megabytes(total)} in use by datasets opened in "
                           f"the last {CACHE_GRACE_SECONDS // 60} minutes, this needs {megabytes(needed)} more, and "
                           f"the cap (CNN_CACHE_MB) is {limit / 1e6:,g} MB; try again in a few minutes")
    return removed


def trim_cache() -> list[Path]:
    """Evict least-recently-used entries until the cache is under its cap (at start-up and after use)."""
    try:
        return make_room(0)
    except DatasetError:
        return []  # what is left is in use; the next upload will say so


# ---------------------------------------------------------------------------
# Image folders: one sub-folder per class; every image vetted from its header, then streamed by tf.data
# ---------------------------------------------------------------------------

TF_FORMATS = {"PNG": "PNG", "JPEG": "JPEG", "BMP": "BMP", "GIF": "GIF"}  # what tf.io.decode_image reads


def unpack_zip(path: Path) -> Path:
    """Extract a class-folder .zip once (into a folder named by its content hash alone) and return it.
    The cache makes room first (DatasetError if it cannot)."""
    import zipfile

    from cnn.data.archive import ArchiveError, check_zip, extract_zip

    path = Path(path)
    with open(path, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()[:32]
    dest = cache_dir() / "datasets" / digest
    if dest.is_dir():
        touch(dest)
        return dest
    try:
        with zipfile.ZipFile(path) as archive:
            needed = sum(m.file_size for m in check_zip(archive))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise ArchiveError(f"{path.name} is not a readable .zip file (truncated or damaged)") from None
    make_room(needed, keep=(path,))
    return extract_zip(path, dest)


def _visible(path: Path) -> bool:
    """Not a hidden file/folder and not macOS metadata ('.DS_Store', '._x.png', '__MACOSX/')."""
    return not path.name.startswith((".", "__"))


MAX_FOLDER_ENTRIES = 100_000  # files and folders looked at under one class folder (a dataset, not a disk)


def _images_in(folder: Path) -> list[Path]:
    """Image files (by extension) anywhere under `folder`, hidden ones and macOS metadata skipped. A folder
    with more than MAX_FOLDER_ENTRIES entries is refused before it is walked further."""
    from cnn.data.archive import MAX_FILES

    found, seen = [], 0
    for base, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__")))
        seen += len(dirs) + len(files)
        if seen > MAX_FOLDER_ENTRIES or len(found) > MAX_FILES:
            raise DatasetError(f"{Path(folder).name or folder} holds more than {MAX_FOLDER_ENTRIES:,} files and "
                               f"folders; a class-folder dataset may hold at most {MAX_FILES:,} images")
        found += [Path(base) / f for f in files if Path(f).suffix.lower() in IMAGE_EXTENSIONS and _visible(Path(f))]
    return sorted(found)


def find_class_root(folder: Path) -> tuple[Path, list[str]]:
    """The folder whose sub-folders are the classes (descending through lone wrapper folders)."""
    supported = ", ".join(IMAGE_EXTENSIONS)
    for _ in range(4):
        subdirs = sorted(p for p in folder.iterdir() if p.is_dir() and _visible(p))
        loose = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and _visible(p)]
        if len(subdirs) == 1 and not loose:
            inner = subdirs[0]
            inner_dirs = [d for d in inner.iterdir() if d.is_dir() and _visible(d) and _images_in(d)]
            direct = [p for p in inner.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and _visible(p)]
            if direct and not inner_dirs:  # not a wrapper: the only class
                raise DatasetError(f"found 1 class folder ({inner.name!r}, {len(_images_in(inner)):,} images) and "
                                   "needs at least 2: one sub-folder of images per class")
            folder = inner
            continue
        classes = [d.name for d in subdirs if _images_in(d)]
        if len(classes) == 1:
            raise DatasetError(f"found 1 class folder ({classes[0]!r}) and needs at least 2: one sub-folder of "
                               "images per class")
        if not classes:
            where = f"{len(loose):,} images but no sub-folders of images" if loose else "no sub-folders of images"
            raise DatasetError(f"found {where}; a dataset needs at least 2 class folders, one sub-folder of images "
                               f"per class (supported images: {supported})")
        return folder, classes
    raise DatasetError("found only nested single folders and no class sub-folders of images")


@dataclass(frozen=True)
class ImageCheck:
    """What inspect_images found in a class-folder dataset."""

    files: list  # usable image paths
    labels: list  # their class indices
    skipped: list  # (path relative to the root, why) of files that are not usable images
    size: tuple  # (height, width) the images are resized to: the most common size, at most max_side
    color: str  # 'grayscale' or 'rgb'


def _vet_image(path: Path) -> tuple[tuple[int, int], str] | str:
    """((width, height), mode) of an image TensorFlow can decode, or why it cannot be used — checked from the
    header against Predict's limits before any pixel is decoded, then decoded once (truncation shows there)."""
    import warnings

    from PIL import Image

    from cnn.core.errors import ImageError
    from cnn.data.imageio import check_image_header

    try:
        width, height, mode, fmt = check_image_header(path)
    except ImageError as exc:
        return str(exc).split(" — ")[0].rstrip(".")
    if fmt not in TF_FORMATS:
        return f"a {fmt} image named {path.suffix}; use PNG, JPEG, BMP or GIF"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                image.draft(image.mode, (256, 256))  # JPEG: decode at a reduced scale, still reads every byte
                image.load()
    except Exception as exc:  # noqa: BLE001 — untrusted bytes: any decoder failure means "unusable"
        return f"truncated or corrupt {fmt} ({str(exc)[:60] or type(exc).__name__})"
    return (width, height), mode


def inspect_images(root: Path, classes: list[str], max_side: int) -> ImageCheck:
    """Every image file vetted (header limits as Predict's, a format TensorFlow decodes, decodable), a common
    (height, width) and 'grayscale' or 'rgb'. Unusable files are skipped and listed with the reason."""
    from collections import Counter

    sizes, modes, files, labels, skipped = Counter(), Counter(), [], [], []
    for index, name in enumerate(classes):
        for path in _images_in(root / name):
            found = _vet_image(path)
            if isinstance(found, str):
                skipped.append((str(path.relative_to(root)), found))
                continue
            (w, h), mode = found
            sizes[(w, h)] += 1
            modes["grayscale" if mode in ("1", "L", "LA", "I", "I;16", "F") else "rgb"] += 1
            files.append(path)
            labels.append(index)
    if not files:
        raise DatasetError(f"none of the {len(skipped):,} image files can be used: {_skipped_text(skipped)}")
    (w, h), _ = sizes.most_common(1)[0]
    scale = min(1.0, max_side / max(w, h))  # keep memory and time per step bounded
    color = "grayscale" if modes["grayscale"] == len(files) else "rgb"
    return ImageCheck(files, labels, skipped, (max(1, round(h * scale)), max(1, round(w * scale))), color)


def _skipped_text(skipped: list, show: int = 3) -> str:
    """'a/x.png (a WEBP image named .png; …), b/y.png (…) and 4 more'."""
    text = "; ".join(f"{path} ({why})" for path, why in skipped[:show])
    return text + (f"; and {len(skipped) - show:,} more" if len(skipped) > show else "")


def _decode_pipeline(paths, labels, image_size, channels):
    """tf.data of (uint8 image, label), each image prepared by cnn.data.preprocess.prepare_image with the recipe
    Predict uses for a model of this input (colour: centre-crop to the aspect ratio and resize, as
    keras.utils.image_dataset_from_directory does; grayscale: the digit recipe), so that a model trains on what
    Predict and the CLI will make of the same pictures. The files were vetted by inspect_images; its count
    stays known (Keras sizes epochs by it)."""
    import tensorflow as tf

    shape = (*image_size, channels)
    recipe = default_recipe(shape)

    def prepare(path) -> np.ndarray:
        try:
            return prepare_image(Path(path.decode()), shape, recipe=recipe)
        except CnnError:  # a blank picture (vetted files always decode): all black, as the resize would make it
            return np.zeros(shape, np.uint8)

    def load(path, label):
        image = tf.numpy_function(prepare, [path], tf.uint8, stateful=False)
        return tf.ensure_shape(image, shape), label

    data = tf.data.Dataset.from_tensor_slices(([str(p) for p in paths], np.asarray(labels, dtype=np.int64)))
    return data.map(load, num_parallel_calls=tf.data.AUTOTUNE)


def load_folder(path, image_size: tuple[int, int] | None = None, color_mode: str | None = None,
                test_split: float = 0.2, seed: int = 0, max_side: int = 64) -> Dataset:
    """Class folders (or a .zip of them): the training split is streamed; the held-out split (test and
    validation) is read into memory. Images are resized to the most common size (at most max_side).

    Every image is vetted first (inspect_images): unusable ones are skipped and counted in `notes`; the
    dataset is refused (DatasetError naming them) when a class keeps fewer than 2 images. A refused .zip
    leaves nothing in the cache."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path} does not exist")
    folder = unpack_zip(path) if path.is_file() else path
    try:
        return _load_classes(path, folder, image_size, color_mode, test_split, seed, max_side)
    except DatasetError:
        if path.is_file() and folder.parent == cache_dir() / "datasets":
            import shutil

            shutil.rmtree(folder, ignore_errors=True)  # a refused zip leaves nothing behind
            discard_upload(path)
        raise


def _load_classes(path, folder, image_size, color_mode, test_split, seed, max_side) -> Dataset:
    root, classes = find_class_root(folder)
    found = inspect_images(root, classes, max_side)
    counts = np.bincount(found.labels, minlength=len(classes))
    if counts.min() < 2:
        thin = [f"{classes[i]!r} ({counts[i]})" for i in np.flatnonzero(counts < 2)]
        skipped = f"; skipped as unusable: {_skipped_text(found.skipped)}" if found.skipped else ""
        raise DatasetError(f"every class needs at least 2 usable images; {', '.join(thin)} has fewer{skipped}")
    image_size, color_mode = tuple(image_size or found.size), color_mode or found.color
    channels = 1 if color_mode == "grayscale" else 3
    # Split the vetted files once, reproducibly: the last test_split of a seeded shuffle is held out.
    order = np.random.RandomState(seed).permutation(len(found.files))
    n_test = max(1, int(test_split * len(order)))
    files, labels = np.array([str(p) for p in found.files]), np.asarray(found.labels)
    train_idx, test_idx = order[:-n_test], order[-n_test:]
    import tensorflow as tf

    try:
        pairs = list(_decode_pipeline(files[test_idx], labels[test_idx], image_size, channels).as_numpy_iterator())
    except tf.errors.OpError as exc:
        raise DatasetError(f"TensorFlow could not decode an image that passed the checks ({exc.message[:120]}); "
                           "re-save the images as PNG or JPEG") from None
    x_test = np.stack([p[0] for p in pairs]).astype(np.uint8)
    y_test = np.array([p[1] for p in pairs], dtype=np.int64)
    train = _decode_pipeline(files[train_idx], labels[train_idx], image_size, channels)
    notes = ()
    if found.skipped:
        total = len(found.files) + len(found.skipped)
        notes = (f"skipped {len(found.skipped):,} of {total:,} image files that cannot be used: "
                 f"{_skipped_text(found.skipped)}",)
    label = upload_label(path) or folder_label(root.name if root != folder or path.is_dir() else path.name)
    source = str(path)
    touch(path)
    if folder != path:
        touch(folder)
    return Dataset(f"{FOLDER}{safe_text_label(label, 'class folders')}", classes, (*image_size, channels), None,
                   None, x_test, y_test, source, train, len(train_idx), notes, tuple(found.skipped))


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

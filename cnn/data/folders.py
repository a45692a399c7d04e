"""Image folders: one sub-folder per class; every image vetted from its header, then streamed by tf.data.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnn.core.errors import CnnError, DatasetError, ImageError
from cnn.core.text import safe_label
from cnn.data.archive import MAX_FILES, ArchiveError, check_zip, extract_zip
from cnn.data.datasets import FOLDER, IMAGE_EXTENSIONS, Dataset, folder_label
from cnn.data.imageio import check_image_header
from cnn.data.preprocess import default_recipe, prepare_image
from cnn.data.uploads import cache_dir, discard_upload, make_room, touch, upload_label

# ---------------------------------------------------------------------------
# Image folders: one sub-folder per class; every image vetted from its header, then streamed by tf.data
# ---------------------------------------------------------------------------

TF_FORMATS = {"PNG": "PNG", "JPEG": "JPEG", "BMP": "BMP", "GIF": "GIF"}  # what tf.io.decode_image reads


def unpack_zip(path: Path) -> Path:
    """Extract a class-folder .zip once (into a folder named by its content hash alone) and return it.
    The cache makes room first (DatasetError if it cannot)."""
    import zipfile

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


SPLITS = ("by-class", "shuffled")  # how a folder's held-out images are chosen: now, and before Dec 2026


def shuffled_split(n: int, test_split: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) indices as models trained before the split by class were tested: the last test_split of
    a seeded shuffle (kept so that those models are evaluated on the images they were tested on)."""
    order = np.random.RandomState(seed).permutation(n)
    n_test = max(1, int(test_split * n))
    return order[:-n_test], order[-n_test:]


def split_by_class(labels: np.ndarray, test_split: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) indices, reproducibly: max(1, test_split of all) held out, spread over the classes in
    proportion to their sizes (a seeded shuffle within each class, then the classes interleaved): each class
    is tested on about its share of them (a class with fewer than 1 / test_split of the images may get none)."""
    order = np.random.RandomState(seed).permutation(len(labels))
    counts = np.bincount(labels, minlength=int(labels.max()) + 1)
    rank = np.empty(len(labels))
    for k in range(len(counts)):  # each image's place within its class, as a share of the class
        mine = order[labels[order] == k]
        rank[mine] = (np.arange(len(mine)) + 0.5) / max(1, len(mine))
    spread = order[np.argsort(rank[order], kind="stable")]  # the classes interleaved, in proportion
    n_test = max(1, int(test_split * len(labels)))
    return spread[:-n_test], spread[-n_test:]


def load_folder(path, image_size: tuple[int, int] | None = None, color_mode: str | None = None,
                test_split: float = 0.2, seed: int = 0, max_side: int = 64, split: str = "by-class") -> Dataset:
    """Class folders (or a .zip of them): the training split is streamed; the held-out split (test and
    validation) is read into memory. Images are resized to the most common size (at most max_side).

    Every image is vetted first (inspect_images): unusable ones are skipped and counted in `notes`; the
    dataset is refused (DatasetError naming them) when a class keeps fewer than 2 images. A refused .zip
    leaves nothing in the cache. `split`: "by-class" (the held-out images spread over the classes) or
    "shuffled" (as models saved before that were tested: metrics.json's "split" says which)."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path} does not exist")
    folder = unpack_zip(path) if path.is_file() else path
    try:
        return _load_classes(path, folder, image_size, color_mode, test_split, seed, max_side, split)
    except DatasetError:
        if path.is_file() and folder.parent == cache_dir() / "datasets":
            import shutil

            shutil.rmtree(folder, ignore_errors=True)  # a refused zip leaves nothing behind
            discard_upload(path)
        raise


def _load_classes(path, folder, image_size, color_mode, test_split, seed, max_side, split) -> Dataset:
    root, classes = find_class_root(folder)
    found = inspect_images(root, classes, max_side)
    counts = np.bincount(found.labels, minlength=len(classes))
    if counts.min() < 2:
        thin = [f"{classes[i]!r} ({counts[i]})" for i in np.flatnonzero(counts < 2)]
        skipped = f"; skipped as unusable: {_skipped_text(found.skipped)}" if found.skipped else ""
        raise DatasetError(f"every class needs at least 2 usable images; {', '.join(thin)} has fewer{skipped}")
    image_size, color_mode = tuple(image_size or found.size), color_mode or found.color
    channels = 1 if color_mode == "grayscale" else 3
    files, labels = np.array([str(p) for p in found.files]), np.asarray(found.labels)
    train_idx, test_idx = split_by_class(labels, test_split, seed) if split == "by-class" else \
        shuffled_split(len(labels), test_split, seed)
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
    return Dataset(f"{FOLDER}{safe_label(label, 40, 'class folders', strict=True)}", classes, (*image_size, channels), None,
                   None, x_test, y_test, source, train, len(train_idx), notes, tuple(found.skipped), split)

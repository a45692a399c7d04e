"""Every dataset by name: `load_dataset(name)` tries each source in turn (a local .npz in CNN_DATA_DIR, the
embedded sample, Keras's loaders, a folder or .zip of class folders); `where(name)` says which it would read
without reading it; `list_datasets()` is the catalogue with where each comes from.
"""
from __future__ import annotations

import os
from pathlib import Path

from cnn.core.errors import DatasetError
from cnn.data.datasets import CATALOG, SAMPLE, Dataset, apply_limit, data_dir, load_catalogued
from cnn.data.folders import load_folder


def load_dataset(name: str, limit: int | tuple[int, int] | None = None, **folder_options) -> Dataset:
    """Load a dataset by name (see CATALOG) or from a folder/.zip of class folders.

    `limit` keeps the first N images of each split (or (N_train, N_test)), stratified by class.
    """
    path = check_dataset_name(name)
    dataset = load_catalogued(name) if path is None else load_folder(path, **folder_options)
    return apply_limit(dataset, limit) if limit else dataset


def check_dataset_name(name: str) -> Path | None:
    """None for a catalogue name, the path for a folder or .zip of class folders; anything else raises the
    DatasetError load_dataset would (cheap: nothing is read, so callers check before TensorFlow loads)."""
    if name in CATALOG:
        return None
    path = Path(str(name)).expanduser()
    if path.is_dir() or path.suffix.lower() == ".zip":
        return path
    raise DatasetError(f"unknown dataset {name!r}: choose one of {', '.join(CATALOG)}, "
                       "or give a folder (or .zip) with one sub-folder of images per class")


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

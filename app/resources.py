"""Cached loaders, shared by every visitor of this server process (read-only use only).

Models are cached by name and model-file time, so a retrained or replaced model is loaded again; per-model
results (evaluations, dead-filter reports, learning steps) likewise.
"""
from __future__ import annotations

import streamlit as st

from cnn import registry
from cnn.data import CATALOG, STAND_INS, is_folder
from cnn.errors import DatasetError
from cnn.spec import ModelSpec, preset


@st.cache_resource(max_entries=8, show_spinner="Loading model…")
def _model(name: str, mtime: float):
    return registry.load_model(name)


def model(name: str):
    """The keras.Model saved as `name`, loaded again whenever its file changes."""
    return _model(name, registry.model_info(name).mtime)


@st.cache_resource(max_entries=4, show_spinner="Loading dataset…")
def dataset(name: str):
    """cnn.data.load_dataset(name), loaded once per process."""
    from cnn.data import load_dataset

    return load_dataset(name)


def dataset_size(name: str) -> int:
    """Training images in a dataset (catalogue sizes need no loading)."""
    return CATALOG[name].train_size if name in CATALOG else dataset(name).num_train


def adapted_preset(name: str, dataset_name: str) -> ModelSpec:
    """A preset fitted to the dataset's input shape and classes (catalogue datasets need no loading)."""
    if dataset_name in CATALOG:
        info = CATALOG[dataset_name]
        return preset(name, info.input_shape, len(info.class_names))
    data = dataset(dataset_name)
    return preset(name, data.input_shape, data.num_classes)


@st.cache_resource(show_spinner="Measuring this machine's training speed (once)…")
def machine_speed():
    """cnn.estimate.measure_speed(), once per process (a few seconds)."""
    from cnn.estimate import measure_speed

    return measure_speed()


_stand_in_reasons: dict[str, str] = {}  # dataset → why its stand-in is used (until the server restarts)


def model_dataset(info: registry.ModelInfo):
    """The dataset a saved model was trained on (its class folder for folder datasets). When it cannot be
    loaded here but has a committed stand-in (full MNIST offline → the embedded sample), the stand-in; pages
    say so with chrome.dataset_note()."""
    name = info.metrics.get("dataset_source") if is_folder(info.dataset) else info.dataset
    if not name or name not in CATALOG and not is_folder(info.dataset):
        raise DatasetError(f"model {info.name!r} does not say which dataset it was trained on")
    if name in _stand_in_reasons:  # failed once in this process: do not retry a download on every rerun
        return dataset(STAND_INS[name])
    try:
        return dataset(name)
    except DatasetError as exc:
        if name not in STAND_INS:
            raise
        _stand_in_reasons[name] = str(exc)
        return dataset(STAND_INS[name])


def stand_in_reason(dataset_name: str) -> str | None:
    """Why `dataset_name` could not be loaded here, if it could not."""
    return _stand_in_reasons.get(dataset_name)


def calibration(info: registry.ModelInfo):
    """(the model's cnn.calibration.Calibration or None, a note for people when it has none or it is damaged).
    Loaded once per calibration file (cnn.calibration caches by the file's time)."""
    from cnn.calibration import CalibrationError, calibration_summary, load_calibration

    try:
        found = load_calibration(info)
    except CalibrationError as exc:
        return None, str(exc)
    return found, None if found is not None else calibration_summary(info)["note"]


HELD_OUT = 300  # test images the Learn page's gradient step is checked against


@st.cache_data(max_entries=64, show_spinner="Taking one gradient step at every learning rate…")
def learning_step(name: str, mtime: float, x, label: int, learning_rate: float | None, layer_name: str):
    """cnn.inference.learning_step for the model `name` as of `mtime` (~0.3 s: a model copy, one backward pass
    and a forward pass per rate), checked against the last HELD_OUT test images of its dataset when it can be
    loaded; kept so that the Learn page's other controls do not redo it on every rerun."""
    from cnn.errors import CnnError
    from cnn.inference import learning_step as step

    try:
        data = model_dataset(registry.model_info(name))
        others = (data.x_test[-HELD_OUT:], data.y_test[-HELD_OUT:]) \
            if tuple(data.input_shape) == tuple(x.shape) else None
    except CnnError:
        others = None
    return step(_model(name, mtime), x, label, learning_rate, layer_name, others)


@st.cache_resource
def _evaluations():
    from cnn.metrics import EvaluationCache

    return EvaluationCache(size=8)


def evaluation(info: registry.ModelInfo, split: str = "test", on_progress=None):
    """The model's evaluation on its dataset's test (or train) split, computed once per model file."""
    from cnn.metrics import EvaluationCache, evaluate

    data = model_dataset(info)
    key = EvaluationCache.key(info, data.name, split)
    cached = _evaluations().get(key)
    if cached is None:
        x, y = (data.x_test, data.y_test) if split == "test" else (data.x_train, data.y_train)
        cached = evaluate(model(info.name), x, y, data.class_names, on_progress=on_progress,
                          calibration=calibration(info)[0])
        _evaluations().put(key, cached)
    return cached


def filter_report(info: registry.ModelInfo, images: int = 2000) -> list[dict]:
    """cnn.metrics.filter_report on the first `images` test images, computed once per model file."""
    from cnn.metrics import EvaluationCache, filter_report as report

    data = model_dataset(info)
    key = EvaluationCache.key(info, data.name, f"filters:{images}")
    cached = _evaluations().get(key)
    if cached is None:
        cached = report(model(info.name), data.x_test[:images])
        _evaluations().put(key, cached)
    return cached

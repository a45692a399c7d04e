"""Cached loaders, shared by every visitor of this server process (read-only use only).

Models are cached by folder and model-file time, so a retrained or replaced model is loaded again; per-model
results (evaluations, dead-filter reports, learning steps) likewise. The big caches are bounded by the bytes
they hold, not only by how many things they hold (settings below), so an idle server stays small.
"""
from __future__ import annotations

import os
import threading
from collections import OrderedDict

import streamlit as st

from cnn.store import registry
from cnn.data.datasets import CATALOG, STAND_INS
from cnn.core.errors import DatasetError
from cnn.model.spec import ModelSpec, preset

MB = 2 ** 20


def _megabytes(name: str, default: int) -> int:
    try:
        return int(float(os.environ.get(name, default)) * MB)
    except ValueError:
        return default * MB


class SizedCache:
    """Least-recently-used values whose total size (`sizeof`, in bytes) stays under `limit`; the newest value
    is always kept. Thread-safe: one value is made once even when several visitors ask for it at once."""

    def __init__(self, limit: int, sizeof):
        self.limit, self.sizeof = limit, sizeof
        self._items: OrderedDict = OrderedDict()  # key → (value, bytes)
        self._lock = threading.Lock()
        self._making: dict = {}  # key → the lock of whoever is making it

    def get(self, key, make, spinner: str | None = None):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key][0]
            making = self._making.setdefault(key, threading.Lock())
        with making:
            with self._lock:
                if key in self._items:  # made by another visitor while this one waited
                    return self._items[key][0]
            if spinner:
                with st.spinner(spinner):
                    value = make()
            else:
                value = make()
            self._put(key, value)
            return value

    def _put(self, key, value) -> None:
        with self._lock:
            self._items[key] = (value, int(self.sizeof(value)))
            self._items.move_to_end(key)
            self._making.pop(key, None)
            while len(self._items) > 1 and self.nbytes > self.limit:
                self._items.popitem(last=False)

    @property
    def nbytes(self) -> int:
        return sum(size for _, size in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


def _model_bytes(keras_model) -> int:
    # Weights, plus what Keras and TensorFlow keep per loaded model (graphs, traced functions): ~20 MB measured.
    return sum(int(w.numpy().nbytes) for w in keras_model.weights) * 2 + 20 * MB


def _dataset_bytes(data) -> int:
    arrays = (data.x_train, data.y_train, data.x_test, data.y_test)
    return sum(a.nbytes for a in arrays if a is not None)


def _result_bytes(result) -> int:
    # The arrays a result holds, however nested (reports, dataclasses, dicts of them), plus a little per object.
    import numpy as np

    if isinstance(result, np.ndarray):
        return result.nbytes
    if isinstance(result, dict):
        return sum(_result_bytes(v) for v in result.values()) + 200
    if isinstance(result, (list, tuple)):
        return sum(_result_bytes(v) for v in result) + 100
    if hasattr(result, "__dict__") and not callable(result):
        return sum(_result_bytes(v) for v in vars(result).values()) + 200
    return 50


@st.cache_resource
def _caches() -> dict:
    """The process's bounded caches (settings in MB: CNN_CACHE_MODELS_MB, CNN_CACHE_DATASETS_MB,
    CNN_CACHE_RESULTS_MB)."""
    return {"models": SizedCache(_megabytes("CNN_CACHE_MODELS_MB", 300), _model_bytes),
            "datasets": SizedCache(_megabytes("CNN_CACHE_DATASETS_MB", 600), _dataset_bytes),
            "results": SizedCache(_megabytes("CNN_CACHE_RESULTS_MB", 300), _result_bytes)}


def model(name: str):
    """The keras.Model saved as `name` (in this visitor's registry), loaded again whenever its file changes.
    Cached by folder: two workspaces may each hold a model of one name."""
    return model_of(registry.model_info(name))


def model_of(info: registry.ModelInfo):
    """The keras.Model of a ModelInfo, cached by its folder and model-file time."""
    return _caches()["models"].get((str(info.path), info.mtime), lambda: registry.load_model(info),
                                   spinner=f"Loading model {info.name}…")


def dataset(name: str, split: str = "by-class"):
    """cnn.data.datasets.load_dataset(name), loaded once (while it stays in the cache); `split`: how class
    folders' held-out images are chosen (registry.dataset_split: as a saved model was tested)."""
    from cnn.data.load import load_dataset

    if split == "by-class":
        return _caches()["datasets"].get(name, lambda: load_dataset(name), spinner="Loading the dataset…")
    return _caches()["datasets"].get(f"{name}\n{split}", lambda: load_dataset(name, split=split),
                                     spinner="Loading the dataset…")


dataset.clear = lambda: _caches()["datasets"].clear()  # as tests (and a maintainer) expect of a cache


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
    """cnn.model.timing.measure_speed(), once per process (a few seconds)."""
    from cnn.model.timing import measure_speed

    return measure_speed()


def training_seconds(spec: ModelSpec, data) -> float | None:
    """Estimated seconds from a training's start to its saved model on this machine: the epochs, then the
    evaluation, calibration and save that follow (for the queue's "starting in about …")."""
    from cnn.analysis.calibration import MAX_FIT_IMAGES
    from cnn.core.errors import CnnError
    from cnn.model.spec import validate
    from cnn.model.timing import after_training_seconds, epoch_seconds

    try:
        analysis, speed = validate(spec), machine_speed()
        images = int(data.num_train * (1 - spec.train.validation_split))
        return (spec.train.epochs * epoch_seconds(analysis, images, spec.train.batch_size, speed)
                + after_training_seconds(analysis, data.num_test, min(images, MAX_FIT_IMAGES), speed))
    except CnnError:
        return None


_stand_in_reasons: dict[str, str] = {}  # dataset → why its stand-in is used (until the server restarts)


def model_dataset(info: registry.ModelInfo):
    """The dataset a saved model was trained on (its class folder for folder datasets). When it cannot be
    loaded here but has a committed stand-in (full MNIST offline → the embedded sample), the stand-in; pages
    say so with chrome.dataset_note()."""
    name = registry.dataset_to_load(info)  # DatasetError when its images are not available here
    if name in _stand_in_reasons:  # failed once in this process: do not retry a download on every rerun
        return dataset(STAND_INS[name])
    try:
        return dataset(name, **registry.dataset_split(info))
    except DatasetError as exc:
        if name not in STAND_INS:
            raise
        _stand_in_reasons[name] = str(exc)
        return dataset(STAND_INS[name])


def stand_in_reason(dataset_name: str) -> str | None:
    """Why `dataset_name` could not be loaded here, if it could not."""
    return _stand_in_reasons.get(dataset_name)


def calibration(info: registry.ModelInfo):
    """(the model's cnn.analysis.calibration.Calibration or None, a note for people when it has none or it is damaged).
    Loaded once per calibration file (cnn.analysis.calibration caches by the file's time)."""
    from cnn.core.errors import CalibrationError
    from cnn.analysis.calibration import calibration_summary, load_calibration

    try:
        found = load_calibration(info)
    except CalibrationError as exc:
        return None, str(exc)
    return found, None if found is not None else calibration_summary(info)["note"]


HELD_OUT = 300  # test images the Learn page's gradient step is checked against


@st.cache_data(max_entries=64, show_spinner="Taking one gradient step at every learning rate…")
def learning_step(path: str, mtime: float, x, label: int, learning_rate: float | None, layer_name: str, _info):
    """cnn.teach.learning.learning_step for the model `name` as of `mtime` (~0.1 s once compiled: one backward
    pass and a forward pass per rate), checked against the last HELD_OUT test images of its dataset when it can be
    loaded; kept so that the Learn page's other controls do not redo it on every rerun."""
    from cnn.core.errors import CnnError
    from cnn.teach.learning import learning_step as step

    try:
        data = model_dataset(_info)
        others = (data.x_test[-HELD_OUT:], data.y_test[-HELD_OUT:]) \
            if tuple(data.input_shape) == tuple(x.shape) else None
    except CnnError:
        others = None
    return step(model_of(_info), x, label, learning_rate, layer_name, others)


def evaluation(info: registry.ModelInfo, split: str = "test", on_progress=None):
    """The model's evaluation on its dataset's test (or train) split, computed once per model file."""
    from cnn.analysis.metrics import EvaluationCache, evaluate

    data = model_dataset(info)
    x, y = (data.x_test, data.y_test) if split == "test" else (data.x_train, data.y_train)
    return _caches()["results"].get(EvaluationCache.key(info, data.name, split), lambda: evaluate(
        model_of(info), x, y, data.class_names, on_progress=on_progress, calibration=calibration(info)[0]))


def filter_report(info: registry.ModelInfo, images: int = 2000) -> list[dict]:
    """cnn.analysis.metrics.filter_report on the first `images` test images, computed once per model file."""
    from cnn.analysis.metrics import EvaluationCache, filter_report as report

    data = model_dataset(info)
    return _caches()["results"].get(EvaluationCache.key(info, data.name, f"filters:{images}"),
                                    lambda: report(model_of(info), data.x_test[:images]))


# ---------------------------------------------------------------------------
# What the network learned (cnn.explain and cnn.teach.hierarchy): each result computed once per model file (path and time) and
# dataset, shared by every visitor who looks at that file
# ---------------------------------------------------------------------------

def _learned(kind: str, info: registry.ModelInfo, detail, make):
    # One bounded cache for every result: (kind, model folder, model-file time, detail) → value.
    return _caches()["results"].get((kind, str(info.path), info.mtime, detail), make)


def maximised(info: registry.ModelInfo, layer: str):
    """cnn.explain.maximise.maximise for every filter of `layer` (or every class: 'output'), once per model file and
    layer (about a second per layer on 2 cores)."""
    from cnn.explain.maximise import maximise

    return _learned("maximised", info, layer, lambda: maximise(model_of(info), layer))


def top_patches(info: registry.ModelInfo, data) -> dict:
    """cnn.explain.patches.top_patches over `data`'s test split (from model_dataset): conv layer → TopPatches, once per
    model file and dataset (one batched pass, ~1 s for 10,000 images)."""
    from cnn.explain.patches import top_patches as patches

    return _learned("patches", info, data.name, lambda: patches(model_of(info), data.x_test))


def hierarchy(info: registry.ModelInfo, data):
    """cnn.teach.hierarchy.hierarchy on `data`'s test split, reusing the cached maximised images and top patches."""
    from cnn.teach.hierarchy import hierarchy as walk
    from cnn.analysis.inference import conv_layers

    def make():
        keras_model = model_of(info)
        names = conv_layers(keras_model)
        return walk(keras_model, data.x_test, data.y_test, maximised={n: maximised(info, n) for n in names},
                    patches=top_patches(info, data), classes=maximised(info, "output"))

    return _learned("hierarchy", info, data.name, make)


def embedding_pca(info: registry.ModelInfo, data):
    """The PCA map of `data`'s test split as the model's penultimate layer sees it, once per model file."""
    from cnn.explain.embedding import embedding_map

    return _learned("pca", info, data.name,
                    lambda: embedding_map(model_of(info), data.x_test, data.y_test, "pca"))


TSNE_POINTS = None  # t-SNE's sample size (None: cnn.explain.embedding.TSNE_SIZE); tests make it small
MAX_TSNE_JOBS = 8  # t-SNE runs and results remembered (the oldest is forgotten first)


@st.cache_resource
def _tsne_jobs() -> dict:
    """(model path, time, dataset) → TsneJob, shared by every visitor: one t-SNE per model file."""
    import collections
    import threading

    return {"jobs": collections.OrderedDict(), "lock": threading.Lock()}


def tsne_job(info: registry.ModelInfo, data, start: bool = False):
    """The t-SNE job of this model file and dataset (running, done, stopped or failed), or None if none was
    started; `start` starts one when there is none or the last one was stopped or failed."""
    from cnn.explain.embedding import TsneJob

    table = _tsne_jobs()
    key = (str(info.path), info.mtime, data.name)
    with table["lock"]:
        jobs = table["jobs"]
        job = jobs.get(key)
        if start and (job is None or job.snapshot().state in ("stopped", "failed")):
            job = TsneJob(model_of(info), data.x_test, data.y_test, size=TSNE_POINTS).start()
            jobs[key] = job
        if job is not None:
            jobs.move_to_end(key)
        while len(jobs) > MAX_TSNE_JOBS:
            _, old = jobs.popitem(last=False)
            old.stop()
        return job


def film(info: registry.ModelInfo):
    """The model's training film (cnn.explain.film.Film), or None when it was trained without one; a RegistryError
    when its film.npz is damaged. Read once per file."""
    from cnn.explain.film import load_film

    path = info.path / "film.npz"
    return _learned("film", info, path.stat().st_mtime if path.is_file() else 0.0, lambda: load_film(info))

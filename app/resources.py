"""Cached loaders, shared by every visitor of this server process (read-only use only).

Models are cached by name and model-file time, so a retrained or replaced model is loaded again; per-model
results (evaluations, dead-filter reports, learning steps) likewise.
"""
from __future__ import annotations

import streamlit as st

from cnn import registry
from cnn.data import CATALOG, STAND_INS
from cnn.errors import DatasetError
from cnn.spec import ModelSpec, preset


@st.cache_resource(max_entries=8, show_spinner="Loading model…")
def _model(path: str, mtime: float, _info):
    return registry.load_model(_info)


def model(name: str):
    """The keras.Model saved as `name` (in this visitor's registry), loaded again whenever its file changes.
    Cached by folder: two workspaces may each hold a model of one name."""
    info = registry.model_info(name)
    return _model(str(info.path), info.mtime, info)


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


def training_seconds(spec: ModelSpec, data) -> float | None:
    """Estimated seconds to train `spec` on `data` on this machine (for the queue's "starts in about …")."""
    from cnn.errors import CnnError
    from cnn.estimate import epoch_seconds
    from cnn.spec import validate

    try:
        images = int(data.num_train * (1 - spec.train.validation_split))
        return spec.train.epochs * epoch_seconds(validate(spec), images, spec.train.batch_size, machine_speed())
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
def learning_step(path: str, mtime: float, x, label: int, learning_rate: float | None, layer_name: str, _info):
    """cnn.inference.learning_step for the model `name` as of `mtime` (~0.3 s: a model copy, one backward pass
    and a forward pass per rate), checked against the last HELD_OUT test images of its dataset when it can be
    loaded; kept so that the Learn page's other controls do not redo it on every rerun."""
    from cnn.errors import CnnError
    from cnn.inference import learning_step as step

    try:
        data = model_dataset(_info)
        others = (data.x_test[-HELD_OUT:], data.y_test[-HELD_OUT:]) \
            if tuple(data.input_shape) == tuple(x.shape) else None
    except CnnError:
        others = None
    return step(_model(path, mtime, _info), x, label, learning_rate, layer_name, others)


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


# ---------------------------------------------------------------------------
# What the network learned (cnn.features): each result computed once per model file (path and time) and
# dataset, shared by every visitor who looks at that file
# ---------------------------------------------------------------------------

@st.cache_resource(max_entries=32, show_spinner=False)
def _maximised(path: str, mtime: float, layer: str, _info):
    from cnn.features import maximise

    return maximise(_model(path, mtime, _info), layer)


def maximised(info: registry.ModelInfo, layer: str):
    """cnn.features.maximise for every filter of `layer` (or every class: 'output'), once per model file and
    layer (about a second per layer on 2 cores)."""
    return _maximised(str(info.path), info.mtime, layer, info)


@st.cache_resource(max_entries=8, show_spinner=False)
def _top_patches(path: str, mtime: float, dataset_name: str, _info, _data):
    from cnn.features import top_patches as patches

    return patches(_model(path, mtime, _info), _data.x_test)


def top_patches(info: registry.ModelInfo, data) -> dict:
    """cnn.features.top_patches over `data`'s test split (from model_dataset): conv layer → TopPatches, once per
    model file and dataset (one batched pass, ~1 s for 10,000 images)."""
    return _top_patches(str(info.path), info.mtime, data.name, info, data)


@st.cache_resource(max_entries=8, show_spinner=False)
def _hierarchy(path: str, mtime: float, dataset_name: str, _info, _data):
    from cnn.features import hierarchy as walk
    from cnn.inference import conv_layers

    model = _model(path, mtime, _info)
    names = conv_layers(model)
    return walk(model, _data.x_test, _data.y_test, maximised={n: maximised(_info, n) for n in names},
                patches=top_patches(_info, _data), classes=maximised(_info, "output"))


def hierarchy(info: registry.ModelInfo, data):
    """cnn.features.hierarchy on `data`'s test split, reusing the cached maximised images and top patches."""
    return _hierarchy(str(info.path), info.mtime, data.name, info, data)


@st.cache_resource(max_entries=8, show_spinner=False)
def _embedding(path: str, mtime: float, dataset_name: str, _info, _data):
    from cnn.features import embedding_map

    return embedding_map(_model(path, mtime, _info), _data.x_test, _data.y_test, "pca")


def embedding_pca(info: registry.ModelInfo, data):
    """The PCA map of `data`'s test split as the model's penultimate layer sees it, once per model file."""
    return _embedding(str(info.path), info.mtime, data.name, info, data)


TSNE_POINTS = None  # t-SNE's sample size (None: cnn.features.TSNE_SIZE); tests make it small
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
    from cnn.features import TsneJob

    table = _tsne_jobs()
    key = (str(info.path), info.mtime, data.name)
    with table["lock"]:
        jobs = table["jobs"]
        job = jobs.get(key)
        if start and (job is None or job.snapshot().state in ("stopped", "failed")):
            job = TsneJob(_model(str(info.path), info.mtime, info), data.x_test, data.y_test, size=TSNE_POINTS).start()
            jobs[key] = job
        if job is not None:
            jobs.move_to_end(key)
        while len(jobs) > MAX_TSNE_JOBS:
            _, old = jobs.popitem(last=False)
            old.stop()
        return job


@st.cache_resource(max_entries=16, show_spinner=False)
def _film(path: str, mtime: float, film_mtime: float, _info):
    from cnn.features import load_film

    return load_film(_info)


def film(info: registry.ModelInfo):
    """The model's training film (cnn.features.Film), or None when it was trained without one; a RegistryError
    when its film.npz is damaged. Read once per file."""
    path = info.path / "film.npz"
    return _film(str(info.path), info.mtime, path.stat().st_mtime if path.is_file() else 0.0, info)

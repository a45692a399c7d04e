"""The one engine module that imports Streamlit: session-state keys, cached resources, the job handle.

Shared by everyone (st.cache_resource): loaded models (keyed by name + file mtime), datasets, the
machine-speed probe and the table of running jobs. Per browser tab (st.session_state): the active model,
the dataset, the spec being edited. A tab's id lives in the URL (?sid=…) so a browser refresh finds its
running training job and its choices (dataset, spec, active model) again.
"""
from __future__ import annotations

import copy
import sys
import uuid

import streamlit as st

from cnn import registry
from cnn.data import CATALOG, SAMPLE, dataset_title, is_folder
from cnn.errors import CnnError
from cnn.spec import ModelSpec, preset
from cnn.text import accuracy_text

def _leave_keras_alone() -> None:
    """Stop Streamlit from calling keras.backend.clear_session() after every script run.

    Streamlit does that in script_runner._clean_problem_modules (a workaround from the Keras 2 / TF1 graph
    era, not configurable). With Keras 3 it clears TensorFlow's kernel cache and Keras's global state under
    a training job running in another thread: measured here, training ran ~12× slower while the Train page
    polled once a second. The replacement keeps the function's other duty (closing matplotlib figures).
    """
    from streamlit.runtime.scriptrunner import script_runner

    def clean_problem_modules() -> None:
        if "matplotlib.pyplot" in sys.modules:
            try:
                sys.modules["matplotlib.pyplot"].close("all")
            except Exception:  # noqa: BLE001 — as Streamlit's own: never crash the app over cleanup
                pass

    clean_problem_modules.leaves_keras_alone = True
    script_runner._clean_problem_modules = clean_problem_modules


_leave_keras_alone()

# Session-state keys: every page reads and writes state through these names only.
ACTIVE_MODEL = "active_model"  # name of the registry model the pages use
DATASET = "dataset"  # dataset name or class-folder path chosen on Configure
SPEC = "spec"  # the ModelSpec being edited on Configure
SESSION_ID = "session_id"  # this tab's id, mirrored in the URL as ?sid=
SIDEBAR_MODEL = "sidebar_model"  # the sidebar picker widget
PREDICT_INPUT = "predict_input"  # the last image the Predict page turned into a model input (for Learn)


GOTO = "_goto"  # a page asked for before st.navigation ever ran (see page_setup)
_process = {"entry_ran": False}  # whether streamlit_app.py has run in this server process


def entry_script_ran() -> None:
    """Called by streamlit_app.py on every run: st.navigation is in charge from now on."""
    _process["entry_ran"] = True


def page_setup() -> None:
    """The first call of every page: per-tab state, then the sidebar. (Pages call it rather than the entry
    script so that it runs on every rerun under AppTest too, which re-runs only the page script.)

    Streamlit starts in its old pages/-folder mode and leaves it only when the entry script calls
    st.navigation; a direct link to a page as the first request after a restart would run that page alone,
    with the wrong menu. Then (the entry script has never run in this process) the page routes through the
    entry script, which comes back to it.
    """
    if not _process["entry_ran"]:
        import inspect
        from pathlib import Path

        st.session_state[GOTO] = f"pages/{Path(inspect.stack()[1].filename).name}"
        st.switch_page("streamlit_app.py")
    init()
    sidebar()


def init() -> None:
    """Per-tab defaults and the active model; runs at the start of every page run."""
    sid = session_id()
    if SPEC not in st.session_state:  # a new session; after a browser refresh, the tab's earlier choices
        for key, value in _tabs().get(sid, {}).items():
            st.session_state[key] = copy.deepcopy(value)  # a duplicated tab must not edit the same spec
    st.session_state.setdefault(DATASET, SAMPLE)
    if SPEC not in st.session_state:
        st.session_state[SPEC] = adapted_preset("default", st.session_state[DATASET])
    job = current_job()
    if job is not None:
        snap = job.snapshot()
        # A completed job's model becomes active once, when the tab first sees it (a stopped or failed run's
        # saved weights do not: the Train page offers to use them).
        if snap.state == "completed" and snap.model_name and st.session_state.get("_activated") != snap.model_name:
            st.session_state["_activated"] = snap.model_name
            st.session_state[ACTIVE_MODEL] = snap.model_name
    names = [i.name for i in registry.list_models()]
    if st.session_state.get(ACTIVE_MODEL) not in names:
        st.session_state[ACTIVE_MODEL] = (registry.DEFAULT_MODEL if registry.DEFAULT_MODEL in names
                                          else (names[0] if names else None))
    remember_tab()


TAB_KEYS = (DATASET, SPEC, ACTIVE_MODEL)  # what a browser refresh keeps
MAX_TABS = 1000  # remembered tabs (a few KB each); the oldest are forgotten first


@st.cache_resource
def _tabs() -> dict:
    """session id → the tab's TAB_KEYS values (shared across refreshes, not across server restarts)."""
    return {}


def remember_tab() -> None:
    """Keep this tab's choices for a refresh. The spec is kept by reference, so Configure's in-place edits
    are kept too; pages that replace a value call this again after doing so."""
    tabs, sid = _tabs(), session_id()
    tabs.pop(sid, None)  # re-insert: dict order = least recently used first
    tabs[sid] = {key: st.session_state[key] for key in TAB_KEYS if key in st.session_state}
    while len(tabs) > MAX_TABS:
        tabs.pop(next(iter(tabs)))


def session_id() -> str:
    """This tab's id: from the URL after a refresh, else new; always written back to the URL."""
    sid = st.session_state.get(SESSION_ID) or st.query_params.get("sid") or uuid.uuid4().hex[:12]
    st.session_state[SESSION_ID] = sid
    if st.query_params.get("sid") != sid:
        st.query_params["sid"] = sid
    return sid


# ---------------------------------------------------------------------------
# Active model and dataset
# ---------------------------------------------------------------------------

def active_model_info() -> registry.ModelInfo | None:
    name = st.session_state.get(ACTIVE_MODEL)
    if not name:
        return None
    try:
        return registry.model_info(name)
    except CnnError:
        return None


def set_active_model(name: str | None) -> None:
    """Make `name` active (safe from callbacks and before the sidebar renders)."""
    st.session_state[ACTIVE_MODEL] = name


def sidebar() -> None:
    """The active-model picker and the active dataset, shown on every page."""
    infos = registry.list_models()
    names = [i.name for i in infos]
    with st.sidebar:
        if not names:
            st.info("No saved models yet: train one on **Train**.")
        else:
            st.session_state[SIDEBAR_MODEL] = st.session_state.get(ACTIVE_MODEL)
            st.selectbox("Active model", names, key=SIDEBAR_MODEL,
                         on_change=lambda: set_active_model(st.session_state[SIDEBAR_MODEL]),
                         help="Predict, Evaluate and Learn use this model.")
            info = active_model_info()
            if info is not None:
                acc = accuracy_text(info.test_accuracy) if info.test_accuracy is not None else "not evaluated"
                st.caption(f"{dataset_title(info.dataset)} · {info.params:,} parameters · test accuracy {acc}")
        st.caption(f"Dataset: **{dataset_title(st.session_state.get(DATASET, SAMPLE))}**")
        job = current_job()
        if job is not None and job.snapshot().running:
            st.caption(":material/hourglass_top: training in progress — see **Train**")


def adapted_preset(name: str, dataset: str) -> ModelSpec:
    """A preset fitted to the dataset's input shape and classes (catalogue datasets need no loading)."""
    if dataset in CATALOG:
        info = CATALOG[dataset]
        return preset(name, info.input_shape, len(info.class_names))
    data = load_dataset(dataset)
    return preset(name, data.input_shape, data.num_classes)


def require_active_model():
    """(ModelInfo, keras.Model) of the active model for a page that needs one; without one, or when its file
    cannot be loaded, the page says so and stops here."""
    info = active_model_info()
    if info is None:
        st.info("No active model: train one on **Train** or upload one on **Models**.")
        st.stop()
    try:
        return info, load_model(info.name)
    except CnnError as exc:
        st.error(f"{exc}. Pick another model in the sidebar, or delete this one on **Models**.")
        st.stop()


# ---------------------------------------------------------------------------
# Cached resources (shared by all users; read-only use only)
# ---------------------------------------------------------------------------

@st.cache_resource(max_entries=8, show_spinner="Loading model…")
def _load_model(name: str, mtime: float):
    return registry.load_model(name)


def load_model(name: str | None = None):
    """The keras.Model for `name` (default: active), reloaded whenever its file changes."""
    name = name or st.session_state.get(ACTIVE_MODEL)
    info = registry.model_info(name)
    return _load_model(name, info.mtime)


@st.cache_resource(max_entries=4, show_spinner="Loading dataset…")
def load_dataset(name: str):
    from cnn.data import load_dataset as load

    return load(name)


def dataset_size(name: str) -> int:
    """Training images in a dataset (catalogue sizes need no loading)."""
    return CATALOG[name].train_size if name in CATALOG else load_dataset(name).num_train


@st.cache_resource(show_spinner="Measuring this machine's training speed (once)…")
def machine_speed():
    from cnn.estimate import measure_speed

    return measure_speed()


def model_dataset(info: registry.ModelInfo):
    """The dataset a saved model was trained on (its class folder for folder datasets). When it cannot be
    loaded here but has a committed stand-in (full MNIST offline → the embedded sample), the stand-in; the
    page says so with dataset_note()."""
    from cnn.data import STAND_INS
    from cnn.errors import DatasetError

    name = info.metrics.get("dataset_source") if is_folder(info.dataset) else info.dataset
    if not name or name == "unknown":
        raise DatasetError(f"model {info.name!r} does not say which dataset it was trained on")
    if name in _stand_in_reasons:  # failed once in this process: do not retry a download on every rerun
        return load_dataset(STAND_INS[name])
    try:
        return load_dataset(name)
    except DatasetError as exc:
        if name not in STAND_INS:
            raise
        _stand_in_reasons[name] = str(exc)
        return load_dataset(STAND_INS[name])


_stand_in_reasons: dict[str, str] = {}  # dataset → why its stand-in is used (until the server restarts)


def dataset_note(info: registry.ModelInfo, data) -> tuple[str, str] | None:
    """(what a page should say, the technical details) when `data` (from model_dataset) is a stand-in for the
    model's own dataset; None when it is the real one."""
    if data.name == info.dataset or is_folder(info.dataset):
        return None
    own = CATALOG[info.dataset].title if info.dataset in CATALOG else info.dataset
    message = (f"The full **{own}** is not on this server and could not be downloaded, so this page uses "
               f"**{CATALOG[data.name].title}**, which ships with the app: {data.num_test:,} test images of the same "
               "kind. Results are close to those on the full test set.")
    details = (f"Loading {info.dataset!r} failed with: {_stand_in_reasons.get(info.dataset, 'no reason recorded')}. "
               f"To use the full dataset offline, put {info.dataset}.npz (arrays x_train y_train x_test y_test) in a "
               "folder and start the app with CNN_DATA_DIR pointing at it.")
    return message, details


def show_dataset_note(info: registry.ModelInfo, data, where=None) -> None:
    """dataset_note in plain words, the technical details folded away in an expander."""
    note = dataset_note(info, data)
    if note is not None:
        box = where or st
        box.info(note[0])
        with box.expander("Details"):
            st.caption(note[1])


HELD_OUT = 300  # test images the Learn page's gradient step is checked against


@st.cache_data(max_entries=64, show_spinner="Taking one gradient step at every learning rate…")
def learning_step(name: str, mtime: float, x, label: int, learning_rate: float | None, layer_name: str):
    """cnn.inference.learning_step for the model `name` as of `mtime` (~0.3 s: a model copy, one backward pass
    and a forward pass per rate), checked against the last HELD_OUT test images of its dataset when it can be
    loaded; kept so that the Learn page's other controls do not redo it on every rerun."""
    from cnn.inference import learning_step as step

    try:
        data = model_dataset(registry.model_info(name))
        others = (data.x_test[-HELD_OUT:], data.y_test[-HELD_OUT:]) \
            if tuple(data.input_shape) == tuple(x.shape) else None
    except CnnError:
        others = None
    return step(_load_model(name, mtime), x, label, learning_rate, layer_name, others)


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
        cached = evaluate(load_model(info.name), x, y, data.class_names, on_progress=on_progress)
        _evaluations().put(key, cached)
    return cached


def filter_report(info: registry.ModelInfo, images: int = 2000) -> list[dict]:
    """cnn.metrics.filter_report on the first `images` test images, computed once per model file."""
    from cnn.metrics import EvaluationCache, filter_report as report

    data = model_dataset(info)
    key = EvaluationCache.key(info, data.name, f"filters:{images}")
    cached = _evaluations().get(key)
    if cached is None:
        cached = report(load_model(info.name), data.x_test[:images])
        _evaluations().put(key, cached)
    return cached


@st.cache_resource
def _jobs() -> dict:
    """session id → TrainingJob, shared across reruns and refreshes (not across server restarts)."""
    return {}


def current_job():
    return _jobs().get(session_id())


def job_running() -> bool:
    job = current_job()
    return job is not None and job.snapshot().running


JOB_RUNNING = "a training job is already running in this session: stop it or wait for it to finish"


def start_job(spec: ModelSpec, dataset, name: str | None = None):
    """Start training in the background; CnnError if this tab already has a job running."""
    from cnn.errors import TrainingError
    from cnn.train import TrainingJob

    if job_running():
        raise TrainingError(JOB_RUNNING)
    job = TrainingJob(spec, dataset, name).start()
    _jobs()[session_id()] = job
    return job


def clear_job() -> None:
    _jobs().pop(session_id(), None)

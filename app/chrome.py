"""What every page shares: set-up, the sidebar, titles with their flash messages, and the guards a page calls
before it needs a model."""
from __future__ import annotations

import streamlit as st

from app import jobs, resources, session, warmup, workspaces
from cnn.store import registry
from cnn.data.datasets import CATALOG, dataset_title, is_folder
from cnn.core.errors import CnnError
from cnn.core.text import accuracy_text

_process = {"entry_ran": False}  # whether streamlit_app.py has run in this server process


def entry_script_ran() -> None:
    """Called by streamlit_app.py on every run: st.navigation is in charge from now on."""
    _process["entry_ran"] = True


def page_setup() -> session.Tab:
    """The first call of every page: this tab's state, then the sidebar; returns the Tab. (Pages call it rather
    than the entry script so that it runs on every rerun under AppTest too, which re-runs only the page.)

    Streamlit starts in its old pages/-folder mode and leaves it only when the entry script calls
    st.navigation; a direct link to a page as the first request after a restart would run that page alone,
    with the wrong menu. Then (the entry script has never run in this process) the page routes through the
    entry script, which comes back to it.
    """
    if not _process["entry_ran"]:
        import inspect
        from pathlib import Path

        st.session_state[session.GOTO] = f"pages/{Path(inspect.stack()[1].filename).name}"
        st.switch_page("streamlit_app.py")
    workspaces.activate()  # this visitor's registry folder (hosted: their own workspace)
    tab = session.tab()
    if tab.spec is None:
        tab.spec = resources.adapted_preset("default", tab.dataset)
    _activate_finished_job(tab)
    names = [i.name for i in registry.list_models() if i.usable]  # a damaged folder cannot be the active model
    if tab.active_model not in names:
        tab.active_model = registry.DEFAULT_MODEL if registry.DEFAULT_MODEL in names else (names[0] if names else None)
    sidebar(tab, names)
    return tab


def _activate_finished_job(tab: session.Tab) -> None:
    """A completed job's model becomes active once, when the tab first sees it (a stopped or failed run's saved
    weights do not: the Train page offers to use them)."""
    job = jobs.current_job()
    if job is None:
        return
    snap = job.snapshot()
    if snap.state == "completed" and snap.model_name and st.session_state.get(session.ACTIVATED) != snap.model_name:
        st.session_state[session.ACTIVATED] = snap.model_name
        tab.active_model = snap.model_name


def in_workspace(callback):
    """A widget callback that runs in the visitor's workspace (callbacks run before the page sets it)."""
    import functools

    @functools.wraps(callback)
    def run(*args, **kwargs):
        workspaces.activate()
        return callback(*args, **kwargs)

    return run


def fragment(func=None, *, run_every=None):
    """st.fragment whose own reruns run in the visitor's workspace too: a fragment's rerun skips the page (and
    its page_setup), so without this a hosted visitor's fragment would look in the server's registry folder."""
    def wrap(body):
        return st.fragment(in_workspace(body), run_every=run_every)

    return wrap(func) if func is not None else wrap


def set_active_model(name: str | None) -> None:
    """Make `name` the active model (safe from callbacks and before the sidebar is drawn)."""
    session.tab().active_model = name


def active_model_info() -> registry.ModelInfo | None:
    name = session.tab().active_model
    if not name:
        return None
    try:
        return registry.model_info(name)
    except CnnError:
        return None


def sidebar(tab: session.Tab, names: list[str]) -> None:
    """The active-model picker and the active dataset, shown on every page."""
    with st.sidebar:
        if not names:
            st.info("No saved models yet: train one on **Train**.")
        else:
            st.session_state[session.SIDEBAR_MODEL] = tab.active_model
            st.selectbox("Active model", names, key=session.SIDEBAR_MODEL,
                         on_change=lambda: set_active_model(st.session_state[session.SIDEBAR_MODEL]),
                         help="Predict, Evaluate and Learn use this model.")
            info = active_model_info()
            if info is not None:
                acc = accuracy_text(info.test_accuracy) if info.test_accuracy is not None else "not evaluated"
                st.caption(f"{dataset_title(info.dataset)} · {info.params:,} parameters · test accuracy {acc}")
        st.caption(f"Training data: **{dataset_title(tab.dataset)}** (chosen on Configure)")
        if jobs.job_running():
            st.caption(":material/hourglass_top: training in progress — see **Train**")
        account_ui()


def account_ui() -> None:
    """Hosted with sign-in configured: who is signed in, and the sign-in / sign-out button."""
    if not workspaces.hosted() or not workspaces.auth_configured():
        return
    user = workspaces.signed_in_user()
    if user is None:
        st.caption("Your models are kept for this browser only. Sign in to keep them on every device.")
        st.button("Sign in", key="sign_in", on_click=st.login, icon=":material/login:")
    else:
        st.caption(f"Signed in as {user[1]}: your workspace follows your account.")
        st.button("Sign out", key="sign_out", on_click=st.logout, icon=":material/logout:")


def title(text: str) -> None:
    """The page's title, then any flash message left for it (one mechanism for every page)."""
    st.title(text)
    for kind, message in session.take_flashes():
        getattr(st, kind)(message)


def require_active_info() -> registry.ModelInfo:
    """The active model's ModelInfo for a page that needs one (its file is not loaded); without one, the page
    says so and stops here."""
    info = active_model_info()
    if info is None:
        st.info("No active model: train one on **Train** or upload one on **Models**.")
        st.stop()
    return info


def require_active_model():
    """(ModelInfo, keras.Model) of the active model for a page that needs one; without one, or when its file
    cannot be loaded, the page says so and stops here."""
    info = require_active_info()
    return info, load_model(info)


def load_model(info: registry.ModelInfo):
    """The model of `info`, loaded once; when its file cannot be loaded the page says so and stops here."""
    warmup.wait()  # TensorFlow may be loading in the background: let it finish rather than race it
    try:
        return resources.model(info.name)
    except CnnError as exc:
        st.error(f"{exc}. Pick another model in the sidebar, or delete this one on **Models**.")
        st.stop()


def model_when_ready(info: registry.ModelInfo):
    """The model of `info`, or None while the server's start-up is still importing TensorFlow and loading the
    default model (app/warmup.py): a page can show what needs no model meanwhile and look again shortly."""
    if warmup.status()["running"]:
        return None
    return load_model(info)


def dataset_note(info: registry.ModelInfo, data) -> tuple[str, str] | None:
    """(what a page should say, the technical details) when `data` (from resources.model_dataset) is a
    stand-in for the model's own dataset; None when it is the real one."""
    if data.name == info.dataset or is_folder(info.dataset):
        return None
    own = CATALOG[info.dataset].title if info.dataset in CATALOG else info.dataset
    message = (f"The full **{own}** is not on this server and could not be downloaded, so this page uses "
               f"**{CATALOG[data.name].title}**, which ships with the app: {data.num_test:,} test images of the same "
               "kind. Results are close to those on the full test set.")
    reason = resources.stand_in_reason(info.dataset) or "no reason recorded"
    details = (f"Loading {info.dataset!r} failed with: {reason}. To use the full dataset offline, put "
               f"{info.dataset}.npz (arrays x_train y_train x_test y_test) in a folder and start the app with "
               "CNN_DATA_DIR pointing at it.")
    return message, details


def show_dataset_note(info: registry.ModelInfo, data) -> None:
    """dataset_note in plain words, the technical details folded away in an expander."""
    note = dataset_note(info, data)
    if note is not None:
        st.info(note[0])
        with st.expander("Details"):
            st.caption(note[1])

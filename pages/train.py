"""Train: start the configured spec on the chosen dataset in a background job and watch it learn.

The job runs in a worker thread that never calls st.*; a fragment polls its snapshot once a second.
"""
import math

import streamlit as st

from app import chrome, jobs, learned, resources, session, workspaces
from cnn.store import registry
from cnn.data.datasets import apply_limit, dataset_slug, dataset_title
from cnn.core.errors import CnnError
from cnn.figures.curves import training_curves
from cnn.model.spec import check

tab = chrome.page_setup()


def fmt_seconds(seconds: float) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "–"
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


def default_name() -> str:
    """A free registry name from the preset and the dataset, e.g. 'default-mnist-sample-2'."""
    spec, dataset = tab.spec, tab.dataset
    job = jobs.current_job()  # its model is not saved yet while it trains: its name is taken all the same
    return registry.unique_name(f"{spec.preset}-{dataset_slug(dataset)}", reserved={job.name} if job else ())


def start_ui() -> None:
    """The start form; Start runs start() as a callback, before the page is drawn again."""
    spec = tab.spec
    dataset = tab.dataset
    cfg = spec.train
    st.markdown(f"**{spec.preset}** on **{dataset_title(dataset)}** · {len(spec.layers)} layers · "
                f"{cfg.optimizer} lr {cfg.learning_rate:g} ({cfg.lr_schedule}) · batch {cfg.batch_size} · "
                f"{cfg.epochs} epoch(s) · validation {cfg.validation_split:.0%} — change these on **Configure**.")
    cols = st.columns([2, 2, 1], vertical_alignment="bottom")
    if session.TRAIN_NAME not in st.session_state:  # a free name, proposed again after every start
        st.session_state[session.TRAIN_NAME] = default_name()
    cols[0].text_input("Save as", key=session.TRAIN_NAME, help="Name in the model registry")
    cols[1].number_input("Use at most this many training images (0 = all)", min_value=0, value=0, step=500,
                         key="train_limit", help="A small number gives a quick first look")
    cols[2].button("Start training", key="train_start", type="primary", width="stretch", on_click=start)


@chrome.in_workspace
def start() -> None:
    """Callback of Start: check, then start the job; problems are kept for the page to show."""
    name, limit = st.session_state[session.TRAIN_NAME].strip(), int(st.session_state["train_limit"])
    problem = start_problem(name)
    if problem is None:
        try:
            data = resources.dataset(tab.dataset)
            if limit:
                data = apply_limit(data, (limit, data.num_test))
            jobs.start_job(tab.spec, data, name)
        except CnnError as exc:
            problem = str(exc)
        else:
            del st.session_state[session.TRAIN_NAME]  # the next run gets a fresh free name
    if problem is not None:
        session.flash(problem, "error")


def start_problem(name: str) -> str | None:
    """Why a run named `name` cannot start now, or None."""
    if jobs.job_running():
        return jobs.JOB_RUNNING.capitalize() + "."
    problem = check(tab.spec)
    if problem:
        return f"The model on Configure cannot be built: {problem}"
    try:
        registry.check_name(name)
    except CnnError as exc:
        return str(exc)
    if (registry.models_dir() / name).exists() or registry.is_shipped(name):
        return f"A model named {name!r} already exists: choose another name."
    quota = workspaces.quota_problem(workspaces.current())
    return quota[0].upper() + quota[1:] + "." if quota else None


@chrome.in_workspace
def save_last_good(job) -> None:
    """Callback: keep what a failed run learned before it failed."""
    try:
        info = job.save_last_good(registry.unique_name(f"{job.name or 'model'}-last-good"))
    except CnnError as exc:
        session.flash(str(exc), "error")
    else:
        chrome.set_active_model(info.name)


def show(snap, job) -> None:
    """Progress, metrics, curves and the stop button for one snapshot."""
    st.markdown(f"**Job:** {job.name or 'unnamed'} · {len(job.spec.layers)} layers on "
                f"{dataset_title(job.dataset_name)} ({job.train_images:,} training images)")
    p = snap.progress
    if p is not None:
        label = (f"epoch {p.epoch}/{p.epochs} · batch {p.batch}/{p.batches} · elapsed {fmt_seconds(p.elapsed)}"
                 f" · ETA {fmt_seconds(p.eta) if snap.state == 'running' else '0:00'}")
        st.progress(p.fraction if snap.state != "completed" else 1.0, text=label)
        m = p.metrics
        cols = st.columns(5)
        cols[0].metric("loss", f"{m.get('loss', math.nan):.4f}")
        cols[1].metric("accuracy", f"{m.get('accuracy', math.nan):.2%}")
        val = snap.epochs
        cols[2].metric("val loss", f"{val['val_loss'][-1]:.4f}" if val["val_loss"] else "–")
        cols[3].metric("val accuracy", f"{val['val_accuracy'][-1]:.2%}" if val["val_accuracy"] else "–")
        cols[4].metric("learning rate", f"{p.learning_rate:.2e}")
    elif snap.state == "queued":
        st.info(f":material/hourglass_top: {snap.message[0].upper()}{snap.message[1:]}. It starts by itself; you "
                "can leave this page meanwhile.")
    else:
        st.progress(0.0, text="building the model and starting (the first batch compiles the graph)…")
    if snap.state == "queued":
        st.button("Leave the queue", key="train_stop", on_click=job.stop, help="Gives up its place; nothing is trained")
    elif snap.running:
        st.caption(snap.message)
        st.button("Stop", key="train_stop", on_click=job.stop,
                  help="Ends after the current batch; the model keeps its weights, is evaluated and saved")
    elif snap.state == "failed":
        st.error(snap.message)
    elif snap.state == "stopped":
        st.warning(snap.message)
    else:
        st.success(snap.message)
    st.plotly_chart(training_curves(snap.curve, snap.epochs), width="stretch", key="train_curves")
    if snap.film is not None:
        # Drawn only while open: the film changes once an epoch, the page every second.
        box = st.expander("Film of training: the filters and weights, epoch by epoch", icon=":material/movie:",
                          key=session.TRAIN_FILM_OPEN, on_change="rerun")
        if box.open:
            with box:
                learned.film_player(snap.film, session.TRAIN_FILM_FRAME,
                                    class_names=job.class_names)


chrome.title("Train")
job = jobs.current_job()
snap = job.snapshot() if job is not None else None
running = snap is not None and snap.running

start_ui()
if running and snap.state != "queued":
    st.info("A training job is running in this session. You can switch pages: it keeps going and this page "
            "picks it up again (even after a browser refresh).")

if job is not None:

    @chrome.fragment(run_every=1.0 if running else None)
    def live():
        now = job.snapshot()
        show(now, job)
        if running and not now.running:
            st.rerun()  # the whole app: the sidebar shows the new active model

    live()
    # What to do with a finished run's weights: outside the fragment, so that the whole page (and the
    # sidebar's active model) is drawn again after a click.
    if snap is not None and snap.state == "failed" and job.result is not None and snap.model_name is None:
        st.button("Save the last good weights anyway", key="train_save_failed", on_click=save_last_good,
                  args=(job,), help="The weights from before the failure, evaluated on the test split")
    if snap is not None and snap.state == "stopped" and snap.model_name and \
            tab.active_model != snap.model_name:
        st.button(f"Use {snap.model_name} as the active model", key="train_use_stopped",
                  on_click=chrome.set_active_model, args=(snap.model_name,),
                  help="A stopped run is saved but not made active: the active model stays as it was")
    if snap is not None and not snap.running and snap.model_name:
        st.page_link("pages/predict.py", label=f"Try {snap.model_name} on your own drawing", icon=":material/draw:")

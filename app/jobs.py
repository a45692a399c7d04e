"""The training jobs of this server process: one per browser tab, found again after a refresh."""
from __future__ import annotations

import streamlit as st

from app import session
from cnn.spec import ModelSpec

JOB_RUNNING = "a training job is already running in this session: stop it or wait for it to finish"


@st.cache_resource
def _jobs() -> dict:
    """session id → TrainingJob, shared across reruns and refreshes (not across server restarts)."""
    return {}


def job_for(sid: str):
    """The TrainingJob of the tab `sid`, if any."""
    return _jobs().get(sid)


def current_job():
    """This tab's TrainingJob, if any (running or finished)."""
    return job_for(session.session_id())


def job_running() -> bool:
    job = current_job()
    return job is not None and job.snapshot().running


def start_job(spec: ModelSpec, dataset, name: str | None = None):
    """Start training in the background; TrainingError if this tab already has a job running."""
    from cnn.errors import TrainingError
    from cnn.train import TrainingJob

    if job_running():
        raise TrainingError(JOB_RUNNING)
    job = TrainingJob(spec, dataset, name).start()
    _jobs()[session.session_id()] = job
    return job

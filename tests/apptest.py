"""Helpers for AppTest page tests: open the app on a page, wait for a background job."""
import time

from streamlit.testing.v1 import AppTest

from app import jobs, session, warmup
from tests.conftest import ROOT


def open_app(page: str | None = None, tab: session.Tab | None = None, **state) -> AppTest:
    """The whole app (entry script + navigation) run once, then switched to pages/<page>.py; `tab` and `state`
    are put in the session first."""
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=180)
    if tab is not None:
        at.session_state[session.TAB] = tab
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    warmup.wait()  # the entry script started the background warm-up: pages see a started server
    if page:
        at.switch_page(f"pages/{page}.py")
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at: AppTest, kind: str) -> list[str]:
    return [element.value for element in getattr(at, kind)]


def wait_for(at: AppTest, predicate, timeout: float = 180, every: float = 0.5) -> AppTest:
    """Rerun the page until predicate(at) holds (a background job moves on between reruns)."""
    deadline = time.monotonic() + timeout
    while True:
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        if predicate(at):
            return at
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; page says: {texts(at, 'markdown')[:5]} {texts(at, 'error')}")
        time.sleep(every)


def finished(at: AppTest) -> bool:
    return any("saved as" in s or "stopped" in s for s in texts(at, "success") + texts(at, "warning"))


def session_job(at: AppTest):
    """The TrainingJob of the AppTest's session (the jobs table is shared in-process)."""
    return jobs.job_for("local", at.session_state[session.SESSION_ID])  # local mode: one workspace


def sidebar_model(at: AppTest) -> str | None:
    """The value of the sidebar's active-model picker."""
    return at.sidebar.selectbox(key=session.SIDEBAR_MODEL).value


def tab_of(at: AppTest) -> session.Tab:
    """The AppTest session's Tab (dataset, spec, active model)."""
    return at.session_state[session.TAB]

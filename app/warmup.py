"""Warm the server up in the background: tidy up what a killed process left behind, import TensorFlow, load
the default model and trace its compiled explainer once, so that the first visit to Predict does not wait
3–7 s for them.

Started when the server starts (`lifespan`, given to st.App by streamlit_app.py) or, when the app runs some
other way (AppTest), by the entry script's first run — Home itself never imports TensorFlow. Pages that need
TensorFlow call `wait()` first, so that no page imports it at the same time as this thread (two threads
importing a large package for the first time at once can see it half-initialised).
"""
from __future__ import annotations

import contextlib
import logging
import os
import threading
import time

log = logging.getLogger("cnn_studio")

_state = {"thread": None, "seconds": None, "error": None}
_lock = threading.Lock()


def start() -> None:
    """Start the warm-up once per process (later calls do nothing; CNN_WARMUP=0 switches it off)."""
    with _lock:
        if _state["thread"] is not None or os.environ.get("CNN_WARMUP", "1") == "0":
            return
        _state["thread"] = threading.Thread(target=_run, name="cnn-warmup", daemon=True)
        _state["thread"].start()


def _run() -> None:
    start_time = time.monotonic()
    try:
        from cnn.store.housekeeping import clean_up_at_start

        removed = clean_up_at_start()  # temporaries a killed process left behind; the upload cache's size cap
        if removed:
            log.info("CNN Studio: removed %d orphaned temporary file(s) at start", len(removed))
    except Exception as exc:  # noqa: BLE001 — tidying up must never stop the app
        log.warning("CNN Studio: start-up clean-up failed: %s", exc)
    try:
        import numpy as np

        from cnn.store import registry
        from cnn.core.quiet import import_tensorflow

        import_tensorflow()
        import keras  # noqa: F401

        from app import resources
        from cnn.analysis.inference import explain

        info = registry.model_info(registry.DEFAULT_MODEL)
        model = resources.model(info.name)
        # Trace the compiled pass Predict uses, on a blank image of the model's shape.
        explain(model, np.zeros(tuple(model.input_shape[1:]), np.float32))
    except Exception as exc:  # noqa: BLE001 — a warm-up must never break the app; pages do the real work
        _state["error"] = f"{type(exc).__name__}: {exc}"
        log.info("CNN Studio warm-up stopped early (%s); pages will load what they need themselves", exc)
    finally:
        _state["seconds"] = time.monotonic() - start_time


def wait(timeout: float | None = 60) -> None:
    """Block until the warm-up has finished (at once when it has, or was never started)."""
    thread = _state["thread"]
    if thread is not None and thread is not threading.current_thread():
        thread.join(timeout)


def status() -> dict:
    """{'running': bool, 'seconds': float | None, 'error': str | None} for diagnostics and tests."""
    thread = _state["thread"]
    return {"running": bool(thread and thread.is_alive()), "seconds": _state["seconds"], "error": _state["error"]}


@contextlib.asynccontextmanager
async def lifespan(_server):
    """The server's start-up hook (st.App): warm up in the background while the server starts serving."""
    start()
    yield

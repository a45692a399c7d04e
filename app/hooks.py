"""The one change CNN Studio makes to Streamlit itself, installed explicitly by streamlit_app.py.

After every script run Streamlit calls `script_runner._clean_problem_modules()`, which calls
`keras.backend.clear_session()` — a workaround from the Keras 2 / TF1 graph era, not configurable. With Keras 3
it clears TensorFlow's kernel cache and Keras's global state under a training job running in another thread:
measured here, in-app training ran ~12× slower while the Train page polled once a second. `install()` replaces
that function with one that keeps its other duty (closing matplotlib figures) and leaves Keras alone.
"""
from __future__ import annotations

import logging
import sys

log = logging.getLogger("cnn_studio")


def _clean_problem_modules() -> None:
    """Streamlit's clean-up without keras.backend.clear_session(): close matplotlib's figures only."""
    if "matplotlib.pyplot" in sys.modules:
        try:
            sys.modules["matplotlib.pyplot"].close("all")
        except Exception:  # noqa: BLE001 — as Streamlit's own: never crash the app over clean-up
            pass


_clean_problem_modules.leaves_keras_alone = True


def install() -> bool:
    """Replace Streamlit's per-run clean-up (idempotent). False, with a logged warning, when this Streamlit
    release has no such function: then training in the app may be much slower and this module needs a look."""
    from streamlit.runtime.scriptrunner import script_runner

    if not callable(getattr(script_runner, "_clean_problem_modules", None)):
        log.warning("CNN Studio: streamlit.runtime.scriptrunner.script_runner._clean_problem_modules is gone in "
                    "this Streamlit release, so its keras.backend.clear_session() call was not neutralised; if "
                    "training in the app is slow, find where Streamlit now clears Keras after a run (app/hooks.py)")
        return False
    script_runner._clean_problem_modules = _clean_problem_modules
    return True


def installed() -> bool:
    """Whether Streamlit's clean-up is this module's."""
    from streamlit.runtime.scriptrunner import script_runner

    return getattr(getattr(script_runner, "_clean_problem_modules", None), "leaves_keras_alone", False)

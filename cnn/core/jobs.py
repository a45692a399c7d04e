"""One skeleton for work a page polls: a daemon thread, a lock over its state, a stop flag.

Subclasses implement `_work()` (in the thread) and `snapshot()` (a consistent copy of their state, read under
`self._lock`), and look at `self._stop` to end early. The thread runs in a copy of the caller's context, so
context variables (e.g. which registry folder this visitor saves into) follow the job into its thread.
`preload()` runs in the caller's thread before the thread starts: import there what the work needs, because
two threads importing a big package for the first time at once can get a half-initialised module from
Python's import deadlock avoidance (seen here: pandas half-imported, Keras metrics lookups failing).
"""
from __future__ import annotations

import contextvars
import threading


class BackgroundJob:
    """Work in a daemon thread: start(), stop() (asks the work to end), join(), and snapshot() to poll."""

    thread_name = "cnn-job"

    def __init__(self):
        self._stop = threading.Event()
        self._lock = threading.Lock()
        context = contextvars.copy_context()
        self._thread = threading.Thread(target=context.run, args=(self._work,), name=self.thread_name, daemon=True)

    def preload(self) -> None:
        """Import, in the caller's thread, what `_work` needs (nothing by default)."""

    def start(self):
        self.preload()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _work(self) -> None:
        raise NotImplementedError

    def snapshot(self):
        raise NotImplementedError

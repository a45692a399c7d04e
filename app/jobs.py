"""Training jobs: one fair queue shared by every visitor of this server process.

At most `cap` jobs train at once (CNN_MAX_JOBS; default from this machine's cores and memory), and only
while their memory estimates fit the budget together; the others wait first-in, first-out and are told
their place and an estimated start. A job that could never fit the budget is refused before it queues, with
the numbers. Stop works while a job waits. Each ticket belongs to one workspace and one browser tab: a page
only ever looks up its own (workspace, tab) — knowing another tab's id gives nothing.

`JobQueue` knows nothing of Streamlit (tested alone); the functions at the bottom bind it to the session.
"""
from __future__ import annotations

import collections
import contextvars
import math
import os
import threading
import time
from dataclasses import dataclass, field

import streamlit as st

JOB_RUNNING = "a training job is already running in this session: stop it or wait for it to finish"
OBSERVED_JOBS = 10  # finished jobs whose real duration sets the pace of the queue's estimates


def default_cap() -> int:
    """Concurrent trainings: CNN_MAX_JOBS if set, else one per two cores (a training uses two), at least 1."""
    from app.workspaces import load_settings

    load_settings()  # the setting may be in Streamlit's secrets
    value = os.environ.get("CNN_MAX_JOBS", "").strip()
    if value:
        try:
            return max(1, int(value))
        except ValueError:
            pass
    return max(1, (os.cpu_count() or 2) // 2)


@dataclass
class Ticket:
    """A training request: waiting in the queue, then holding a place while its job runs."""

    owner: str  # the workspace it belongs to
    tab: str  # the browser tab that asked for it
    spec: object  # cnn.model.spec.ModelSpec
    dataset: object  # cnn.data.datasets.Dataset
    name: str | None  # the registry name to save it as
    memory: int  # bytes it needs (cnn.model.memory estimate)
    seconds: float | None  # estimated training time, for the queue's "starts in about …"
    submitted: float = field(default_factory=time.time)
    # The submitter's context (e.g. their registry folder): a waiting job is started later from another
    # visitor's job thread, and must still train and save as its own owner.
    context: contextvars.Context = field(default_factory=contextvars.copy_context, repr=False)
    job: object = None  # the TrainingJob once started
    dataset_name: str = ""  # what its page says of the data (the images themselves are let go once trained)
    train_images: int = 0
    class_names: tuple = ()

    def __post_init__(self):
        if self.dataset is not None:
            self.dataset_name, self.train_images = self.dataset.name, self.dataset.num_train
            self.class_names = tuple(self.dataset.class_names)
    cancelled: bool = False
    queue: "JobQueue | None" = field(default=None, repr=False)

    # -- the same face as a TrainingJob, so that a page need not care whether it has started --------------
    @property
    def result(self):
        return self.job.result if self.job is not None else None

    def snapshot(self):
        from cnn.run.jobs import JobSnapshot

        if self.job is not None:
            return self.job.snapshot()
        if self.cancelled:
            return JobSnapshot("stopped", None, {}, {}, "stopped before it started (it was waiting in the queue)",
                               None, self.submitted, self.submitted)
        place, start = self.queue.place(self) if self.queue else (0, None)
        when = f", starting in about {_minutes(start)}" if start is not None else ""
        return JobSnapshot("queued", None, {}, {}, f"waiting for a free place: number {place} in the queue{when} — "
                           f"{self.queue.running_count() if self.queue else 0} training(s) running", None,
                           self.submitted, None)

    def stop(self) -> None:
        """Stop it: take it out of the queue, or end its training after the current batch."""
        if self.job is not None:
            self.job.stop()
        elif self.queue is not None:
            self.queue.cancel(self)

    def save_last_good(self, name=None):
        return self.job.save_last_good(name)


def _minutes(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}:{seconds % 60:02d}"


class JobQueue:
    """First in, first out; at most `cap` running, and only while their memory fits `budget` together."""

    def __init__(self, cap: int, budget: int, start_job=None):
        self.cap, self.budget = cap, budget
        self._start_job = start_job or _start_training
        self._lock = threading.RLock()
        self._waiting: list[Ticket] = []
        self._running: list[Ticket] = []
        self._latest: dict[tuple[str, str], Ticket] = {}  # (owner, tab) → its latest ticket
        # (actual, estimated) seconds of the last finished jobs: the estimates learn this server's real pace.
        self._observed: collections.deque = collections.deque(maxlen=OBSERVED_JOBS)

    def submit(self, owner: str, tab: str, spec, dataset, name: str | None, memory: int,
               seconds: float | None = None) -> Ticket:
        """Queue a training (and start it at once if there is room). TrainingError if this tab already has one
        waiting or running, or if it could never fit the memory budget."""
        from cnn.core.errors import TrainingError

        with self._lock:
            current = self._latest.get((owner, tab))
            if current is not None and current.snapshot().running:
                raise TrainingError(JOB_RUNNING)
            if memory > self.budget:
                raise TrainingError(f"this training needs ~{memory / 2**30:.1f} GiB but the budget for one training "
                                    f"is {self.budget / 2**30:.1f} GiB (CNN_MEMORY_BUDGET_MB): use a smaller batch "
                                    "or fewer filters/units")
            ticket = Ticket(owner, tab, spec, dataset, name, memory, seconds, queue=self)
            self._waiting.append(ticket)
            self._latest[(owner, tab)] = ticket
            self._forget_old()
            self._dispatch()
            return ticket

    def ticket(self, owner: str, tab: str) -> Ticket | None:
        """The latest ticket of this workspace's tab (only ever looked up with both)."""
        with self._lock:
            return self._latest.get((owner, tab))

    def _forget_old(self, keep_seconds: float = 3600) -> None:
        """Forget tickets of tabs whose job ended more than an hour ago (their models are saved)."""
        now = time.time()
        for key, ticket in list(self._latest.items()):
            snap = ticket.snapshot()
            if not snap.running and (snap.finished or ticket.submitted) < now - keep_seconds:
                del self._latest[key]

    def cancel(self, ticket: Ticket) -> None:
        with self._lock:
            if ticket in self._waiting:
                self._waiting.remove(ticket)
                ticket.cancelled = True

    def running_count(self) -> int:
        with self._lock:
            self._reap()
            return len(self._running)

    def place(self, ticket: Ticket) -> tuple[int, float | None]:
        """(1-based place among the waiting, estimated seconds until it starts or None if unknown)."""
        with self._lock:
            self._reap()
            if ticket not in self._waiting:
                return 0, 0.0
            index = self._waiting.index(ticket)
            # Places free up as running jobs end; then the ones ahead take them, one per free place.
            ends = sorted(self._remaining(t) for t in self._running)
            ahead = [t.seconds for t in self._waiting[:index]]
            if any(e is None for e in ends) or any(s is None for s in ahead):
                return index + 1, None
            slots = ends + [0.0] * (self.cap - len(ends))
            pace = self._pace()
            for seconds in ahead:  # greedy: each waiting job takes the slot that frees first
                slots.sort()
                slots[0] += seconds * pace
            return index + 1, min(slots)

    def _pace(self) -> float:
        """How long jobs here really take for each estimated second (1 until one has finished), from the
        last OBSERVED_JOBS: the estimate is a model of this machine, the queue's wait is what visitors see."""
        actual, estimated = (sum(v) for v in zip(*self._observed)) if self._observed else (1.0, 1.0)
        return min(max(actual / max(estimated, 1e-6), 0.25), 4.0)

    def _remaining(self, ticket: Ticket) -> float | None:
        snap = ticket.job.snapshot()
        if ticket.seconds is not None:  # what is left of its (paced) estimate, from when it really started
            return max(ticket.seconds * self._pace() - (time.time() - snap.started), 0.0)
        if snap.progress is not None and math.isfinite(snap.progress.eta):
            return snap.progress.eta
        return None

    def _reap(self) -> None:
        """Forget finished jobs (their places are free); completed ones teach the pace."""
        running = []
        for ticket in self._running:
            snap = ticket.job.snapshot()
            if snap.running:
                running.append(ticket)
            elif snap.state == "completed" and ticket.seconds and snap.finished is not None:
                self._observed.append((snap.finished - snap.started, ticket.seconds))
        self._running = running

    def _dispatch(self) -> None:
        """Start waiting jobs, in order, while there are places and memory for them."""
        with self._lock:
            self._reap()
            while self._waiting and len(self._running) < self.cap:
                used = sum(t.memory for t in self._running)
                ticket = self._waiting[0]
                if self._running and used + ticket.memory > self.budget:
                    break  # it waits for memory, and so do those behind it (first in, first out)
                self._waiting.pop(0)
                ticket.job = ticket.context.run(self._start_job, ticket, on_finish=self._dispatch)
                self._running.append(ticket)


def in_process() -> bool:
    """Whether trainings run in a worker process of their own (CNN_TRAINING_PROCESS; default: when hosted).
    A worker keeps TensorFlow's ~110 MB of state after a training out of the server, and a crash in it cannot take
    the server down. It stays warm between trainings (TensorFlow's 2–7 s import is paid once, see
    cnn/run/worker.py) and is recycled when worn or idle, so an idle server still gives its memory back."""
    from app.workspaces import hosted, load_settings, switched_on

    load_settings()
    value = os.environ.get("CNN_TRAINING_PROCESS", "").strip()
    return switched_on(value) if value else hosted()


def prewarm_worker() -> bool:
    """When trainings run in a worker process: have one started (and TensorFlow imported) before a training
    that is likely soon. True when one was started now."""
    if not in_process():
        return False
    from cnn.run.worker import WORKERS

    return WORKERS.prewarm()


def _start_training(ticket: Ticket, on_finish):
    from cnn.run.jobs import TrainingJob
    from cnn.run.worker import ProcessTrainingJob

    def finished():
        ticket.dataset = None  # the finished job keeps what its page shows, not its training images
        release_memory()
        on_finish()

    kind = ProcessTrainingJob if in_process() else TrainingJob
    return kind(ticket.spec, ticket.dataset, ticket.name, on_finish=finished).start()


def release_memory() -> None:
    """Give memory a finished training freed back to the system: Python's garbage first, then the C
    allocator's free lists (glibc malloc_trim) — else an idle server keeps the peak of its last training."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim this way
        pass


# ---------------------------------------------------------------------------
# The queue of this server process, bound to the visitor's session
# ---------------------------------------------------------------------------

@st.cache_resource
def _queue() -> JobQueue:
    """The one queue of this server process."""
    from cnn.model.memory import memory_budget

    return JobQueue(default_cap(), memory_budget())


def job_for(owner: str, tab: str) -> Ticket | None:
    """The ticket of (workspace, tab), if any."""
    return _queue().ticket(owner, tab)


def current_job() -> Ticket | None:
    """This tab's latest training (waiting, running or finished), in this visitor's workspace."""
    from app import session, workspaces

    return job_for(workspaces.current().id, session.session_id())


def job_running() -> bool:
    ticket = current_job()
    return ticket is not None and ticket.snapshot().running


def start_job(spec, dataset, name: str | None = None) -> Ticket:
    """Queue a training for this tab: TrainingError when this tab already has one, or when it cannot fit the
    memory budget (with the numbers)."""
    from app import resources, session, workspaces
    from cnn.model.memory import check_memory
    from cnn.run.train import check_start_from

    check_start_from(spec)  # a mismatch is said now, not after the wait in the queue
    queue = _queue()
    need = check_memory(spec, dataset, budget=queue.budget)
    return queue.submit(workspaces.current().id, session.session_id(), spec, dataset, name, need.total,
                        resources.training_seconds(spec, dataset))


def replace_cap(cap: int) -> None:
    """Change the cap (tests and the benchmark)."""
    queue = _queue()
    with queue._lock:
        queue.cap = cap
        queue._dispatch()



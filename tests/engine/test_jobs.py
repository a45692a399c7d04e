"""The training queue shared by every visitor: a cap, first in first out, memory admission, stop while waiting,
and a page can only ever find its own (workspace, tab) tickets."""
import threading
import time

import pytest

from app.jobs import JobQueue
from cnn.core.errors import TrainingError
from cnn.run.jobs import JobSnapshot


class FakeJob:
    """Stands in for a TrainingJob: runs until finish() is called."""

    def __init__(self, ticket, on_finish):
        self.ticket, self.on_finish, self.stopped = ticket, on_finish, False
        self.state, self.result = "running", None
        self.started, self.finished = time.time(), None

    def snapshot(self):
        return JobSnapshot(self.state, None, {}, {}, self.state, None, self.started, self.finished)

    def stop(self):
        self.stopped = True

    def finish(self, state="completed", took=None):
        """End it; `took` pretends it ran that many seconds."""
        self.state, self.finished = state, time.time()
        if took is not None:
            self.started = self.finished - took
        self.on_finish()


def queue(cap=1, budget=1000):
    started = []

    def start(ticket, on_finish):
        job = FakeJob(ticket, on_finish)
        started.append(job)
        return job

    return JobQueue(cap, budget, start_job=start), started


def test_at_most_the_cap_run_and_the_rest_wait_in_order():
    q, started = queue(cap=2)
    tickets = [q.submit(f"w{i}", "tab", None, None, f"m{i}", 100, seconds=60) for i in range(5)]
    assert [t.snapshot().state for t in tickets] == ["running", "running", "queued", "queued", "queued"]
    assert [q.place(t)[0] for t in tickets[2:]] == [1, 2, 3]
    assert "number 2 in the queue" in tickets[3].snapshot().message
    started[0].finish()
    assert tickets[2].snapshot().state == "running" and q.place(tickets[3])[0] == 1
    for job in list(started):
        job.finish()
    for job in started[len(started) - 2:]:
        job.finish()
    assert all(t.snapshot().state == "completed" for t in tickets)
    assert [j.ticket.name for j in started] == ["m0", "m1", "m2", "m3", "m4"]  # first in, first out


def test_estimated_start_counts_the_jobs_ahead():
    q, _ = queue(cap=1)
    q.submit("a", "t", None, None, "a", 10, seconds=100)
    second = q.submit("b", "t", None, None, "b", 10, seconds=50)
    third = q.submit("c", "t", None, None, "c", 10, seconds=50)
    assert q.place(second) == (1, pytest.approx(100, abs=1)) and q.place(third) == (2, pytest.approx(150, abs=1))


def test_estimates_learn_the_real_pace_from_finished_jobs():
    # The estimate is a model of the machine; jobs here took twice as long, so the queue says so.
    q, started = queue(cap=1)
    q.submit("a", "t", None, None, "a", 10, seconds=10)
    second = q.submit("b", "t", None, None, "b", 10, seconds=10)
    third = q.submit("c", "t", None, None, "c", 10, seconds=10)
    assert q.place(third) == (2, pytest.approx(20, abs=1))
    started[0].finish(took=20)  # the first took 20 s for an estimated 10
    assert second.snapshot().state == "running"
    assert q.place(third) == (1, pytest.approx(20, abs=1))  # the second's 10 s now count as 20
    started[1].finish("failed", took=500)  # only completed jobs teach the pace
    assert third.snapshot().state == "running"
    fourth = q.submit("d", "t", None, None, "d", 10, seconds=10)
    assert q.place(fourth) == (1, pytest.approx(20, abs=1))


def test_memory_gates_admission():
    q, started = queue(cap=3, budget=1000)
    with pytest.raises(TrainingError, match="budget"):
        q.submit("a", "t", None, None, "huge", 1500)  # could never fit: refused before it queues
    big = q.submit("b", "t", None, None, "big", 700)
    medium = q.submit("c", "t", None, None, "medium", 400)  # 700 + 400 > 1000: waits though a place is free
    small = q.submit("d", "t", None, None, "small", 100)  # first in, first out: waits behind medium
    assert [t.snapshot().state for t in (big, medium, small)] == ["running", "queued", "queued"]
    started[0].finish()
    assert medium.snapshot().state == "running" and small.snapshot().state == "running"


def test_stop_while_waiting_and_one_job_per_tab():
    q, started = queue(cap=1)
    q.submit("a", "tab1", None, None, "first", 10)
    waiting = q.submit("b", "tab1", None, None, "second", 10)
    with pytest.raises(TrainingError, match="already running"):
        q.submit("b", "tab1", None, None, "third", 10)
    waiting.stop()
    assert waiting.snapshot().state == "stopped" and "before it started" in waiting.snapshot().message
    started[0].finish()
    assert len(started) == 1  # the stopped one never starts
    assert q.submit("b", "tab1", None, None, "again", 10).snapshot().state == "running"


def test_a_ticket_is_found_only_with_its_own_workspace_and_tab():
    q, _ = queue()
    mine = q.submit("alice", "tab-a", None, None, "m", 10)
    assert q.ticket("alice", "tab-a") is mine
    assert q.ticket("bob", "tab-a") is None  # the tab id alone (e.g. from a shared link) finds nothing
    assert q.ticket("alice", "tab-b") is None


def test_finishing_from_another_thread_starts_the_next():
    q, started = queue(cap=1)
    first = q.submit("a", "t", None, None, "a", 10)
    second = q.submit("b", "t", None, None, "b", 10)
    threading.Thread(target=started[0].finish).start()
    for _ in range(100):
        if second.snapshot().state == "running":
            break
        threading.Event().wait(0.01)
    assert first.snapshot().state == "completed" and second.snapshot().state == "running"


def test_a_waiting_job_starts_in_its_own_owners_context():
    """A waiting job is started from the thread of the job that ended before it — another visitor's: it must
    still run (and so save) in the context of whoever asked for it."""
    import contextvars

    owner = contextvars.ContextVar("owner", default=None)
    seen = []

    def start(ticket, on_finish):
        seen.append(owner.get())
        return FakeJob(ticket, on_finish)

    q = JobQueue(1, 1000, start_job=start)
    owner.set("alice")
    first = q.submit("alice", "t", None, None, "a", 10)
    owner.set("bob")
    q.submit("bob", "t", None, None, "b", 10)
    owner.set("someone else")
    ender = threading.Thread(target=first.job.finish)  # ends in another thread: its context is not Bob's
    ender.start()
    ender.join()
    assert seen == ["alice", "bob"]


def test_hosted_servers_train_in_a_worker_process_unless_told_otherwise(monkeypatch, small_data):
    from cnn.run.jobs import TrainingJob
    from cnn.run.worker import ProcessTrainingJob

    made = []
    for kind in (TrainingJob, ProcessTrainingJob):  # made, not started
        monkeypatch.setattr(kind, "start", lambda self: made.append(type(self)) or self)
    monkeypatch.delenv("CNN_TRAINING_PROCESS", raising=False)
    for hosted, setting, expected in [(True, None, ProcessTrainingJob), (False, None, TrainingJob),
                                      (True, "0", TrainingJob), (False, "true", ProcessTrainingJob)]:
        monkeypatch.setenv("CNN_HOSTED", "1" if hosted else "0")
        if setting is None:
            monkeypatch.delenv("CNN_TRAINING_PROCESS", raising=False)
        else:
            monkeypatch.setenv("CNN_TRAINING_PROCESS", setting)
        q = JobQueue(1, 10**12)
        q.submit("w", f"tab-{len(made)}", None, small_data, "m", 10)
        assert made[-1] is expected, (hosted, setting)

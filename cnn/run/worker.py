"""Training in a worker process: a TrainingJob whose training runs in a child process of its own.

Why: a process that has trained once keeps ~110 MB of TensorFlow runtime state whatever Python lets go
(measured: dropping every object, `clear_session()`, `gc` and `malloc_trim` return none of it). A hosted server
that trains in its own process therefore idles bigger after every first training; a child process gives all of
its memory back when it exits, and a crash inside TensorFlow ends the child, not every visitor's server.

The child stays warm: it imports TensorFlow (2–7 s) once and then trains one job after another (`WORKERS`, a
small pool). It is recycled — asked to exit and replaced by a fresh one at the next training — after
`WORKER_TRAININGS` trainings, when its resident memory grows past `WORKER_MAX_MB`, or after `WORKER_IDLE_SECONDS`
without a training (so an idle server's memory still comes back). A child that dies ends only its own training.

The parent keeps the same face as a TrainingJob (snapshot(), stop(), save_last_good()); a thread in the parent
turns the child's messages into that snapshot. Messages are (kind, *values) tuples over the worker's pipe:
    progress (Progress) · eval (done, total) · calibrate (done, total) · film (Film) ·
    kept (path of the last good weights, history, seconds; a failed run only) · done (state, message, name)
"""
from __future__ import annotations

import multiprocessing
import os
import tempfile
import threading
import time
import uuid
import warnings
from dataclasses import replace
from pathlib import Path

from cnn.core.errors import CnnError, TrainingError
from cnn.data.datasets import apply_limit
from cnn.data.load import load_dataset
from cnn.run.jobs import TrainingJob
from cnn.run.train import TrainResult
from cnn.run.workflows import film_recorder, saved_as_message, train_and_save
from cnn.store import registry
from cnn.store.registry import models_dir

POLL_SECONDS = 0.2  # how often the parent thread looks at the pipe and the Stop button


def setting(name: str, default: float) -> float:
    """A positive number from the environment; an unset or unusable value keeps the default (with a warning)."""
    text = os.environ.get(name, "").strip()
    try:
        value = float(text) if text else default
    except ValueError:
        value = -1.0
    if value <= 0:
        warnings.warn(f"{name}={text!r} is not a positive number; using {default}", stacklevel=2)
        return default
    return value


WORKER_TRAININGS = setting("CNN_WORKER_TRAININGS", 10)  # trainings one warm child runs, then a fresh one
WORKER_MAX_MB = setting("CNN_WORKER_MAX_MB", 1500)  # a child whose RSS grew past this is recycled
WORKER_IDLE_SECONDS = setting("CNN_WORKER_IDLE_SECONDS", 300)  # an idle child exits after this


class ReceivedFilm:
    """The film the child sent last, with the face of a FilmRecorder that snapshot() and saving use."""

    def __init__(self):
        self._film = None

    def update(self, film) -> None:
        self._film = film

    def film(self):
        return self._film

    def __len__(self) -> int:
        return 0 if self._film is None else len(self._film)

    def to_bytes(self) -> bytes:
        if self._film is None:
            raise CnnError("the film has no frames: training never started")
        return self._film.to_bytes()


def portable(dataset):
    """What the child gets of a dataset: arrays are sent as they are; a streamed (class-folder) dataset's
    tf.data stream cannot cross a process, so the child reads its folder again (`source`, a path this server
    wrote) and keeps as many training images as the parent's had."""
    if not dataset.streamed:
        return dataset
    return replace(dataset, train_stream=None)


def restored(dataset):
    """The child's dataset: the parent's own, or a class-folder dataset read again from its source."""
    if dataset.x_train is not None or dataset.train_stream is not None:
        return dataset
    again = load_dataset(dataset.source, **({"split": dataset.split} if dataset.split else {}))
    if list(again.class_names) != list(dataset.class_names) or tuple(again.input_shape) != tuple(dataset.input_shape):
        raise TrainingError(f"{dataset.name} changed on disk since it was loaded; load it again and restart")
    if dataset.streamed_count < again.streamed_count or len(dataset.y_test) < len(again.y_test):
        again = apply_limit(again, (dataset.streamed_count, len(dataset.y_test)))
    return again


def work(pipe, stop, spec, dataset, name, models_dir: str, progress_interval: float, film: bool) -> None:
    """The child process: train, evaluate and save as train_and_save does, telling the parent as it goes."""
    import keras

    registry.use_models_dir(models_dir)  # the visitor's registry folder (a context variable in the parent)
    send = pipe.send
    try:
        dataset = restored(dataset)
        recorder = film_recorder(dataset) if film else None

        class FilmSender(keras.callbacks.Callback):
            """Sends each new frame as the next epoch begins (the recorder, after it, has recorded it by then)."""

            sent = 0

            def _send(self):
                if recorder is not None and len(recorder) > self.sent:
                    self.sent = len(recorder)
                    send(("film", recorder.film()))

            def on_epoch_begin(self, epoch, logs=None):
                self._send()

            def on_train_end(self, logs=None):
                self._send()

        result, evaluation, info = train_and_save(
            spec, dataset, name, on_progress=lambda p: send(("progress", p)), stop=stop,
            on_eval_progress=lambda done, total: send(("eval", done, total)),
            on_calibration_progress=lambda done, total: send(("calibrate", done, total)),
            progress_interval=progress_interval, callbacks=(FilmSender(),), film=False if recorder is None else recorder)
        if info is None:  # failed (e.g. NaN loss): keep the last good weights for "save them anyway"
            path = Path(tempfile.gettempdir()) / f"cnn-kept-{uuid.uuid4().hex}.keras"
            result.model.save(path)
            send(("kept", str(path), result.history, result.seconds))
            send(("done", "failed", result.message, None))
        else:
            send(("done", result.status, f"{result.message}; test accuracy {evaluation.accuracy:.2%} — "
                                         f"{saved_as_message(name, info.name)}", info.name))
    except CnnError as exc:
        send(("done", "failed", str(exc), None))
    except Exception as exc:  # noqa: BLE001 — the page must get a message; the server log gets the traceback
        import traceback

        traceback.print_exc()
        send(("done", "failed", f"training failed unexpectedly: {type(exc).__name__}: {exc}", None))


def serve(pipe, stop) -> None:
    """The warm child: import TensorFlow once, then train each job the parent sends until it sends None."""
    import gc

    import keras

    pipe.send(("ready",))
    while True:
        try:
            task = pipe.recv()
        except (EOFError, OSError):  # the parent went away
            return
        if task is None:
            return
        work(pipe, stop, *task)
        keras.backend.clear_session()  # the finished model's graph and variables go before the next job
        gc.collect()


def resident_mb(pid: int) -> float | None:
    """A process's resident memory in MB (Linux /proc; None elsewhere)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return None


class Worker:
    """One warm child process and its end of the pipe."""

    def __init__(self):
        context = multiprocessing.get_context("spawn")  # never fork a process that runs TensorFlow's threads
        self.pipe, child_end = context.Pipe(duplex=True)
        self.stop = context.Event()
        self.process = context.Process(target=serve, name="cnn-training-worker", daemon=True,
                                       args=(child_end, self.stop))
        self.process.start()
        child_end.close()
        self.trainings, self.idle_since, self.ready = 0, time.monotonic(), False

    def alive(self) -> bool:
        return self.process.is_alive()

    def worn(self) -> bool:
        """Time to recycle: enough trainings, too much memory, idle too long, or dead."""
        rss = resident_mb(self.process.pid) if self.alive() else None
        return (not self.alive() or self.trainings >= WORKER_TRAININGS or (rss is not None and rss > WORKER_MAX_MB)
                or time.monotonic() - self.idle_since > WORKER_IDLE_SECONDS)

    def close(self) -> None:
        """Ask the child to exit (or end it), and wait for it."""
        try:
            if self.alive():
                self.pipe.send(None)
        except (OSError, ValueError):
            pass
        self.process.join(10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)
        self.pipe.close()


class WorkerPool:
    """Idle warm workers of this server process, handed out one per training."""

    def __init__(self):
        self._idle: list[Worker] = []
        self._lock = threading.Lock()
        self._timer = None

    def acquire(self) -> tuple[Worker, bool]:
        """An idle warm worker (True) or a freshly started one (False)."""
        with self._lock:
            while self._idle:
                worker = self._idle.pop()
                if not worker.worn():
                    return worker, True
                worker.close()
        return Worker(), False

    def prewarm(self) -> bool:
        """Start a worker ahead of a training that is likely soon (someone is making classes to train on), so
        that it has imported TensorFlow by then; at most one waits, and it exits when idle too long. True when
        one was started."""
        with self._lock:
            worn = [w for w in self._idle if w.worn()]  # recycled now, not kept beside the new one
            self._idle = [w for w in self._idle if w not in worn]
            started = not self._idle
            if started:
                self._idle.append(Worker())
                self._arm_timer()
        if worn:  # closing waits for the child: not in the page's run
            threading.Thread(target=lambda: [w.close() for w in worn], daemon=True, name="close-worn").start()
        return started

    def release(self, worker: Worker, healthy: bool) -> None:
        """Take a worker back after its training: kept warm, or recycled when worn or unhealthy."""
        worker.trainings += 1
        worker.idle_since = time.monotonic()
        if not healthy or worker.worn():
            worker.close()
            return
        with self._lock:
            self._idle.append(worker)
            self._arm_timer()

    def _arm_timer(self) -> None:
        if self._timer is None or not self._timer.is_alive():
            self._timer = threading.Timer(WORKER_IDLE_SECONDS + 1, self.close_idle)
            self._timer.daemon = True
            self._timer.start()

    def close_idle(self, everything: bool = False) -> int:
        """Recycle the idle workers that are worn (idle too long), or all of them; returns how many."""
        with self._lock:
            going = [w for w in self._idle if everything or w.worn()]
            self._idle = [w for w in self._idle if w not in going]
            if self._idle:
                self._timer = None
                self._arm_timer()
        for worker in going:
            worker.close()
        return len(going)

    def idle_count(self) -> int:
        with self._lock:
            return len(self._idle)


WORKERS = WorkerPool()  # this server process's warm training workers


class ProcessTrainingJob(TrainingJob):
    """A TrainingJob that trains in a child process; its thread in this process only relays messages."""

    def __init__(self, spec, dataset, name=None, progress_interval: float = 0.25, callbacks=(), film: bool = True,
                 on_finish=None):
        if callbacks:
            raise ValueError("a ProcessTrainingJob cannot run callbacks of this process: use TrainingJob")
        super().__init__(spec, dataset, name, progress_interval, film=False, on_finish=on_finish)
        self.film = ReceivedFilm() if film else None
        self._message = "starting a training process (it loads TensorFlow first, a few seconds)…"
        self._kept = None  # (path, history, seconds) of a failed run's last good weights
        self.worker = self.process = None  # the Worker this job ran on, and its process
        self.warm = False  # whether that worker was warm (TensorFlow already imported) when this job began

    def preload(self) -> None:
        """Nothing heavy to import here: the child process imports TensorFlow itself."""

    def _train(self) -> None:
        try:
            worker, warm = WORKERS.acquire()
        except Exception as exc:  # noqa: BLE001 — e.g. no memory left for a process: say so, keep the server
            self._finish("failed", f"the training process could not start: {type(exc).__name__}: {exc}")
            return
        self.worker, self.process, self.warm = worker, worker.process, warm
        if warm:
            self._message = "starting on a warm training process…"
        worker.stop.clear()
        done = False
        try:
            worker.pipe.send((self.spec, portable(self.dataset), self.name, str(models_dir()), self.progress_interval,
                              self.film is not None))
        except (OSError, ValueError):
            pass  # the child is gone: reported below
        while not done:
            if self._stop.is_set():
                worker.stop.set()
            try:
                if not worker.pipe.poll(POLL_SECONDS):
                    if not worker.alive() and not worker.pipe.poll(0):
                        break
                    continue
                done = self._handle(worker.pipe.recv())
            except (EOFError, OSError):
                break
        WORKERS.release(worker, healthy=done)
        if not done:
            worker.process.join(30)
            code = worker.process.exitcode
            self._finish("failed", f"the training process ended without a result (exit code {code}"
                                   f"{', killed: out of memory?' if code is not None and code < 0 else ''}); "
                                   "nothing was saved")
        if self._model_name:  # saved: the images are no longer needed (a failed run keeps them to save its weights)
            self.dataset = None

    def _handle(self, message) -> bool:
        """Apply one message from the child; True once it says the job is done."""
        kind, *values = message
        if kind == "ready":  # a fresh worker has imported TensorFlow
            return False
        if kind == "progress":
            self._on_progress(*values)
        elif kind == "eval":
            self._on_eval(*values)
        elif kind == "calibrate":
            self._on_calibrate(*values)
        elif kind == "film" and self.film is not None:
            self.film.update(*values)
        elif kind == "kept":
            self._kept = tuple(values)
        elif kind == "done":
            self._finish(*values)
            return True
        return False

    def save_last_good(self, name: str | None = None):
        """After a failed run: load the weights the child kept, then evaluate and save them here."""
        if self._kept is None or self.snapshot().running:
            raise TrainingError("there are no kept weights to save: the job is running or ended before training")
        import keras

        path, history, seconds = self._kept
        model = keras.saving.load_model(path, compile=False)
        self.result = TrainResult(model, history, "failed", "", seconds)
        info = super().save_last_good(name)
        Path(path).unlink(missing_ok=True)
        self._kept, self.result = None, None
        return info

    def __del__(self):
        kept = getattr(self, "_kept", None)  # absent when __init__ refused the job
        if kept is not None:
            Path(kept[0]).unlink(missing_ok=True)


"""Background jobs for the app: the worker thread never touches the UI; pages poll snapshot().
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

from cnn.core.errors import CnnError, TrainingError
from cnn.core.jobs import BackgroundJob
from cnn.data.datasets import Dataset
from cnn.model.spec import ModelSpec
from cnn.run.train import Progress, TrainResult
from cnn.run.workflows import evaluate_and_save, film_recorder, saved_as_message, train_and_save

# ---------------------------------------------------------------------------
# Background jobs for the app: the worker thread never touches the UI; pages poll snapshot()
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class JobSnapshot:
    """A consistent copy of a job's state at one moment."""

    state: str  # 'queued', 'running', 'evaluating', 'completed', 'stopped' or 'failed'
    progress: Progress | None  # the latest report (None before the first batch ends)
    curve: dict  # batch-level points: step (fractional epoch), loss, accuracy
    epochs: dict  # per-epoch lists: epoch, loss, accuracy, val_loss, val_accuracy, lr
    message: str  # what happened, for people
    model_name: str | None  # the saved model's name, once saved
    started: float  # time.time() at start
    finished: float | None
    film: object = None  # cnn.explain.film.Film: the frames recorded so far (None without a film or before any)

    @property
    def running(self) -> bool:
        return self.state in ("queued", "running", "evaluating")


class TrainingJob(BackgroundJob):
    """Runs train_and_save in a daemon thread; stop() asks it to end after the current batch."""

    thread_name = "cnn-training"

    def __init__(self, spec: ModelSpec, dataset: Dataset, name: str | None = None, progress_interval: float = 0.25,
                 callbacks=(), film: bool = True, on_finish=None):
        super().__init__()
        self.spec, self.dataset, self.name = spec, dataset, name
        self.on_finish = on_finish  # called in the worker thread once the job has ended, however it ended
        self.progress_interval, self.callbacks = progress_interval, tuple(callbacks)
        self.film = film_recorder(dataset) if film else None  # its frames show in snapshot().film
        self.result: TrainResult | None = None  # kept after failures too: the last good weights
        self._state, self._message, self._model_name = "running", "starting…", None
        self._progress = None
        self._curve = {"step": [], "loss": [], "accuracy": []}
        self._epochs = {k: [] for k in ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr")}
        self._started, self._finished = time.time(), None

    def preload(self) -> None:
        # What the worker thread imports first (see cnn.core.jobs).
        import keras  # noqa: F401
        import pandas  # noqa: F401
        import scipy.optimize  # noqa: F401
        import scipy.special  # noqa: F401
        import sklearn.covariance  # noqa: F401
        import sklearn.metrics  # noqa: F401
        import tensorflow  # noqa: F401

    def snapshot(self) -> JobSnapshot:
        with self._lock:
            return JobSnapshot(self._state, self._progress, {k: list(v) for k, v in self._curve.items()},
                               {k: list(v) for k, v in self._epochs.items()}, self._message, self._model_name,
                               self._started, self._finished, self.film.film() if self.film is not None else None)

    # -- the worker thread ----------------------------------------------------
    def _on_progress(self, p: Progress) -> None:
        with self._lock:
            self._progress = p
            m = p.metrics
            if p.phase == "batch":
                self._curve["step"].append(p.step)
                self._curve["loss"].append(m.get("loss", math.nan))
                self._curve["accuracy"].append(m.get("accuracy", math.nan))
                self._message = f"training: epoch {p.epoch}/{p.epochs}, batch {p.batch}/{p.batches}"
            else:
                self._epochs["epoch"].append(p.epoch)
                for key in ("loss", "accuracy", "val_loss", "val_accuracy", "lr"):
                    self._epochs[key].append(m.get(key, math.nan))

    def _on_eval(self, done: int, total: int) -> None:
        with self._lock:
            self._state, self._message = "evaluating", f"evaluating on the test split: {done:,}/{total:,} images"

    def _on_calibrate(self, done: int, total: int | None) -> None:
        with self._lock:
            of = f"/{total:,}" if total else ""
            self._state, self._message = "evaluating", f"calibrating: features of {done:,}{of} training images"

    def _finish(self, state: str, message: str, model_name: str | None = None) -> None:
        with self._lock:
            self._state, self._message, self._model_name = state, message, model_name
            self._finished = time.time()

    def _work(self) -> None:
        try:
            self._train()
        finally:
            if self.on_finish is not None:
                self.on_finish()

    def _train(self) -> None:
        try:
            result, evaluation, info = train_and_save(
                self.spec, self.dataset, self.name, on_progress=self._on_progress, stop=self._stop,
                on_eval_progress=self._on_eval, progress_interval=self.progress_interval, keep=self._keep,
                callbacks=self.callbacks, on_calibration_progress=self._on_calibrate,
                film=False if self.film is None else self.film)
        except CnnError as exc:
            self._finish("failed", str(exc))
        except Exception as exc:  # noqa: BLE001 — the page must get a message, the log gets the traceback
            import traceback

            traceback.print_exc()
            self._finish("failed", f"training failed unexpectedly: {type(exc).__name__}: {exc}")
        else:
            if info is None:
                self._finish("failed", result.message)
            else:
                self._finish(result.status, f"{result.message}; test accuracy {evaluation.accuracy:.2%} — "
                                            f"{saved_as_message(self.name, info.name)}", info.name)
                # Saved: the trained model and the images in memory are no longer needed (only a failed run's
                # are, to save it on request) — a server keeps finished jobs' snapshots, not their models.
                self.result, self.dataset = None, None

    def _keep(self, result: TrainResult) -> None:
        self.result = result

    def save_last_good(self, name: str | None = None):
        """After a failed run (e.g. NaN loss): evaluate and save the weights training kept. ModelInfo."""
        if self.result is None or self.snapshot().running:
            raise TrainingError("there are no kept weights to save: the job is running or ended before training")
        # No progress callback: the job has ended and its state must stay 'failed'.
        evaluation, info = evaluate_and_save(self.result, self.spec, self.dataset, name, film=self.film)
        with self._lock:
            self._model_name = info.name
            self._message += f" — the last good weights were saved as {info.name!r} " \
                             f"(test accuracy {evaluation.accuracy:.2%})"
        return info

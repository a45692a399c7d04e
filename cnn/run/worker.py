"""Training in a worker process: a TrainingJob whose training runs in a child process of its own.

Why: a process that has trained once keeps ~110 MB of TensorFlow runtime state whatever Python lets go
(measured: dropping every object, `clear_session()`, `gc` and `malloc_trim` return none of it). A hosted server
that trains in its own process therefore idles bigger after every first training; a child process gives all of
its memory back when it exits, and a crash inside TensorFlow ends the child, not every visitor's server.

The cost: the child imports TensorFlow (2–7 s) before its first batch. The parent keeps the same face as a
TrainingJob (snapshot(), stop(), save_last_good()); a thread in the parent turns the child's messages into
that snapshot. Messages are (kind, *values) tuples over a one-way pipe:
    progress (Progress) · eval (done, total) · calibrate (done, total) · film (Film) ·
    kept (path of the last good weights, history, seconds; a failed run only) · done (state, message, name)
"""
from __future__ import annotations

import multiprocessing
import tempfile
import uuid
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
    again = load_dataset(dataset.source)
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
    finally:
        pipe.close()


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
        self.process = None

    def preload(self) -> None:
        """Nothing heavy to import here: the child process imports TensorFlow itself."""

    def _train(self) -> None:
        context = multiprocessing.get_context("spawn")  # never fork a process that runs TensorFlow's threads
        receiver, sender = context.Pipe(duplex=False)
        stop = context.Event()
        self.process = context.Process(
            target=work, name="cnn-training-worker", daemon=True,
            args=(sender, stop, self.spec, portable(self.dataset), self.name, str(models_dir()),
                  self.progress_interval, self.film is not None))
        try:
            self.process.start()
        except Exception as exc:  # noqa: BLE001 — e.g. no memory left for a process: say so, keep the server
            self._finish("failed", f"the training process could not start: {type(exc).__name__}: {exc}")
            return
        finally:
            sender.close()  # ours closed: the pipe ends (EOFError) when the child's end closes
        done = False
        while not done:
            if self._stop.is_set():
                stop.set()
            try:
                if not receiver.poll(POLL_SECONDS):
                    if not self.process.is_alive() and not receiver.poll(0):
                        break
                    continue
                done = self._handle(receiver.recv())
            except (EOFError, OSError):
                break
        receiver.close()
        self.process.join(30)
        if not done:
            code = self.process.exitcode
            self._finish("failed", f"the training process ended without a result (exit code {code}"
                                   f"{', killed: out of memory?' if code is not None and code < 0 else ''}); "
                                   "nothing was saved")
        if self._model_name:  # saved: the images are no longer needed (a failed run keeps them to save its weights)
            self.dataset = None

    def _handle(self, message) -> bool:
        """Apply one message from the child; True once it says the job is done."""
        kind, *values = message
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


"""Training in a worker process (cnn/run/worker.py): the same job face as a thread, the same model; the child stays
warm for the next training (TensorFlow imported once) and is recycled when worn, dead or idle."""
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from cnn.store.registry import load_model, model_info, using_models_dir
from cnn.model.spec import AveragePooling2D, Conv2D, Dense, Flatten, ModelSpec, TrainConfig
from cnn.run.jobs import TrainingJob
from cnn.run import worker
from cnn.run.worker import WORKERS, ProcessTrainingJob

TINY = ModelSpec(layers=[Conv2D(4, 3), AveragePooling2D(2), Conv2D(6, 3), Flatten(), Dense(16)],
                 train=TrainConfig(epochs=2, batch_size=64, learning_rate=3e-3, validation_split=0.1, seed=3),
                 preset="test-tiny")


def finished(job, timeout: float = 300):
    job.join(timeout)
    assert not job.snapshot().running, "the job did not end in time"
    return job.snapshot()


def test_a_process_job_trains_the_same_model_as_a_thread_and_saves_in_the_callers_folder(tmp_path, small_data):
    # The visitor's folder is a context variable here: the child must save there, not in CNN_MODELS_DIR.
    with using_models_dir(tmp_path / "visitor"):
        job = ProcessTrainingJob(TINY, small_data, "in-a-process").start()
        films, states = [], set()
        while job.snapshot().running:
            snap = job.snapshot()
            states.add(snap.state)
            films.append(0 if snap.film is None else len(snap.film))
            time.sleep(0.05)
        snap = finished(job)
        assert snap.state == "completed" and "saved as 'in-a-process'" in snap.message, snap.message
        assert job.process.exitcode is None and job.dataset is None  # kept warm; the images are let go once saved
        assert snap.epochs["epoch"] == [1, 2] and len(snap.curve["loss"]) >= 2 and snap.progress.epoch == 2
        assert {"running", "evaluating"} <= states
        assert len(snap.film) == 3 and films == sorted(films) and len(set(films)) >= 2  # frames arrived live
        info = model_info("in-a-process")
        assert info.path.parent == tmp_path / "visitor" and (info.path / "film.npz").is_file()
        in_process = load_model("in-a-process")
        TrainingJob(TINY, small_data, "in-a-thread").start().join()
        in_thread = load_model("in-a-thread")
    for a, b in zip(in_process.get_weights(), in_thread.get_weights()):  # same seed, same data: same weights
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert not (Path(os.environ["CNN_MODELS_DIR"]) / "in-a-process").exists()  # not in the default registry


def test_stop_ends_the_child_after_the_current_batch(tmp_path, small_data):
    spec = ModelSpec(layers=TINY.layers, train=TrainConfig(epochs=20, batch_size=16, validation_split=0.1))
    with using_models_dir(tmp_path):
        job = ProcessTrainingJob(spec, small_data, "stopped", progress_interval=0).start()
        while job.snapshot().progress is None and job.snapshot().running:
            time.sleep(0.05)
        job.stop()
        snap = finished(job)
        assert snap.state == "stopped" and "stopped on request during epoch 1 of 20" in snap.message, snap.message
        assert model_info("stopped").metrics["status"] == "stopped"  # kept and saved, as in a thread


def test_a_failed_run_keeps_its_last_good_weights_for_saving_here(tmp_path, small_data):
    spec = ModelSpec(layers=[Conv2D(8, 3, activation="linear"), Flatten(), Dense(256, "linear"),
                             Dense(256, "linear")], train=TrainConfig(optimizer="sgd", learning_rate=1.0, epochs=2))
    with using_models_dir(tmp_path):
        job = ProcessTrainingJob(spec, small_data, "diverged", film=False).start()
        snap = finished(job)
        assert snap.state == "failed" and "loss became nan" in snap.message and snap.model_name is None
        kept = job._kept[0]
        assert os.path.isfile(kept)
        info = job.save_last_good("diverged-kept")
        assert info.name == "diverged-kept" and "last good weights were saved" in job.snapshot().message
        assert all(np.isfinite(w).all() for w in load_model("diverged-kept").get_weights())
        assert not os.path.exists(kept)  # the temporary copy is gone once saved


def test_a_streamed_folder_dataset_is_read_again_in_the_child(tmp_path):
    from cnn.data.datasets import apply_limit
    from cnn.data.load import load_dataset
    from tests.engine.test_data import make_class_folders

    ds = load_dataset(str(make_class_folders(tmp_path / "f", per_class=10)))
    ds = apply_limit(ds, (ds.streamed_count - 3, len(ds.y_test)))  # a limit the child must keep too
    spec = ModelSpec(input_shape=ds.input_shape, num_classes=3, layers=[Conv2D(4, 3), Flatten()],
                     train=TrainConfig(epochs=1, batch_size=4, validation_split=0.0))
    with using_models_dir(tmp_path / "models"):
        job = ProcessTrainingJob(spec, ds, "folders", progress_interval=0).start()
        snap = finished(job)
        assert snap.state == "completed", snap.message
        assert snap.progress.batches == int(np.ceil(ds.streamed_count / 4))


def test_callbacks_of_this_process_are_refused(small_data):
    with pytest.raises(ValueError, match="callbacks"):
        ProcessTrainingJob(TINY, small_data, callbacks=(object(),))


def test_the_next_training_runs_on_the_warm_child_which_is_recycled_when_worn_or_idle(tmp_path, small_data,
                                                                                      monkeypatch):
    """…and a worker started ahead (prewarm: at most one waits) takes the next training."""
    one_epoch = ModelSpec(layers=TINY.layers, train=TrainConfig(epochs=1, batch_size=64, validation_split=0.0))
    with using_models_dir(tmp_path):
        first = ProcessTrainingJob(one_epoch, small_data, "first", film=False).start()
        assert finished(first).state == "completed"
        second = ProcessTrainingJob(one_epoch, small_data, "second", film=False).start()
        assert finished(second).state == "completed", second.snapshot().message
        assert second.warm and second.process.pid == first.process.pid  # TensorFlow was not imported again
        # Worn by its number of trainings: the next one still runs there, then the child is asked to exit.
        monkeypatch.setattr(worker, "WORKER_TRAININGS", second.worker.trainings + 1)
        third = ProcessTrainingJob(one_epoch, small_data, "third", film=False).start()
        assert finished(third).state == "completed" and third.warm and third.process.pid == first.process.pid
        assert third.process.exitcode == 0 and WORKERS.idle_count() == 0
        monkeypatch.setattr(worker, "WORKER_TRAININGS", 10)
        fourth = ProcessTrainingJob(one_epoch, small_data, "fourth", film=False).start()
        assert finished(fourth).state == "completed" and not fourth.warm and fourth.process.pid != first.process.pid
        assert [model_info(n).epochs for n in ("first", "second", "third", "fourth")] == [1, 1, 1, 1]  # all saved
    # Worn by its memory: a child past WORKER_MAX_MB resident is recycled.
    assert not fourth.worker.worn()
    monkeypatch.setattr(worker, "resident_mb", lambda pid: worker.WORKER_MAX_MB + 1.0)
    assert fourth.worker.worn()
    monkeypatch.undo()
    # Idle: an idle server gives the child's memory back.
    assert WORKERS.close_idle() == 0 and fourth.process.is_alive()  # not idle long enough yet
    monkeypatch.setattr(worker, "WORKER_IDLE_SECONDS", 0.0)
    assert WORKERS.close_idle() == 1 and WORKERS.idle_count() == 0 and fourth.process.exitcode == 0
    monkeypatch.setattr(worker, "WORKER_IDLE_SECONDS", 300.0)
    # A worker started ahead: at most one waits, a worn one is not kept beside it, and it takes the next training.
    assert WORKERS.prewarm() is True and WORKERS.idle_count() == 1
    assert WORKERS.prewarm() is False and WORKERS.idle_count() == 1  # one waiting is enough
    waiting = WORKERS._idle[0]
    worn = WornWorker()
    WORKERS._idle.insert(0, worn)  # as if a second one had waited too long (a real one would cost an import)
    assert WORKERS.prewarm() is False and WORKERS.idle_count() == 1 and WORKERS._idle == [waiting]
    assert worn.closed.wait(10)  # recycled (closing waits for the child: it is done beside the page's run)
    with using_models_dir(tmp_path):
        ahead = ProcessTrainingJob(one_epoch, small_data, "after-prewarm", film=False).start()
        assert finished(ahead).state == "completed" and ahead.warm and ahead.process.pid == waiting.process.pid
    assert WORKERS.idle_count() == 1  # kept warm for the next training (the next test's)


class WornWorker:
    """Stands for an idle worker past its time (WorkerPool only asks it worn() and close())."""

    def __init__(self):
        self.closed = threading.Event()

    def worn(self) -> bool:
        return True

    def close(self) -> None:
        self.closed.set()


def test_a_child_that_dies_fails_the_job_with_a_message(tmp_path, small_data):
    """(After the warm-worker test, on the child it left warm, when run in file order.)"""
    spec = ModelSpec(layers=TINY.layers, train=TrainConfig(epochs=20, batch_size=16))
    with using_models_dir(tmp_path):
        job = ProcessTrainingJob(spec, small_data, "killed", progress_interval=0).start()
        while job.snapshot().progress is None and job.snapshot().running:
            time.sleep(0.05)
        os.kill(job.process.pid, signal.SIGKILL)  # as the kernel's out-of-memory killer would
        snap = finished(job)
        assert snap.state == "failed" and "ended without a result" in snap.message and "killed" in snap.message
        assert not (tmp_path / "killed").exists()  # nothing half-saved


def test_a_worker_setting_that_is_not_a_positive_number_keeps_its_default(monkeypatch):
    monkeypatch.setenv("CNN_WORKER_TRAININGS", "many")
    with pytest.warns(UserWarning, match="CNN_WORKER_TRAININGS='many' is not a positive number; using 10"):
        assert worker.setting("CNN_WORKER_TRAININGS", 10) == 10
    monkeypatch.setenv("CNN_WORKER_TRAININGS", "4")
    assert worker.setting("CNN_WORKER_TRAININGS", 10) == 4

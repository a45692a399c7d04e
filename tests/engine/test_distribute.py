"""Training on tf.distribute: two worker processes on loopback ports end with the same weights as one
process trained on the same global batches; only the chief saves; strategies and TF_CONFIG by name."""
import json
import os
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest

from cnn.core.errors import TrainingError
from tests.conftest import ROOT
from tests.machine import free_ports

WORKER_TIMEOUT = 300  # seconds for a whole two-worker run (about 30 s on 2 busy cores)


def run_workers(command, registry, n: int = 2, attempts: int = 2):
    """Run `command(addresses, index)` as `n` worker processes at once; [CompletedProcess-like (code, out, err)].

    Each worker runs in its own process group, killed whole on timeout or failure, so no worker outlives
    the test. A port taken between choosing and binding it (a race with other programs) gets one more try.
    """
    env = {**os.environ, "CNN_MODELS_DIR": str(registry), "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("TF_CONFIG", None)
    for attempt in range(attempts):
        addresses = ",".join(f"localhost:{p}" for p in free_ports(n))
        procs = [subprocess.Popen(command(addresses, i), cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, start_new_session=True) for i in range(n)]
        results = []
        try:
            for proc in procs:
                out, err = proc.communicate(timeout=WORKER_TIMEOUT)
                results.append((proc.returncode, out, err))
        except subprocess.TimeoutExpired:
            pytest.fail(f"the {n} workers did not finish within {WORKER_TIMEOUT} s")
        finally:
            for proc in procs:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        taken = any("already in use" in err.lower() for _, _, err in results)
        if not taken or attempt == attempts - 1:
            return results


def test_two_workers_train_like_one_process_and_only_the_chief_saves(tmp_path, registry):
    from cnn.run.train import train
    from cnn.store.registry import list_models, load_model
    from tests.distributed_worker import data, spec_for

    results = run_workers(lambda addresses, i: [sys.executable, "-m", "tests.distributed_worker",
                                                str(tmp_path / f"w{i}.npz"), "--workers", addresses,
                                                "--worker-index", str(i)], registry)
    for code, out, err in results:
        assert code == 0, err[-3000:]
    assert "status=completed chief=True saved=distributed batches=16" in results[0][1]  # 2 epochs × 8 steps
    assert "status=completed chief=False saved=None batches=16" in results[1][1]
    assert [i.name for i in list_models()] == ["distributed"]  # one model, from the chief
    saved = list_models()[0].path
    # The film callback (weights each epoch) ran under the strategy; calibration ran on the chief.
    assert (saved / "film.npz").is_file() and (saved / "calibration.json").is_file()

    # Both workers end with identical weights…
    w0, w1 = (np.load(tmp_path / f"w{i}.npz") for i in range(2))
    weights = [w0[k] for k in w0.files]
    for k in w0.files:
        np.testing.assert_array_equal(w0[k], w1[k])
    # …equal (to float tolerance: sums run in another order) to one process fed the same global batches…
    single = train(spec_for(data()), data()).model.get_weights()
    assert len(single) == len(weights)
    for ours, theirs in zip(weights, single):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)
    # …and the chief's saved model is that model.
    for saved, ours in zip(load_model("distributed").get_weights(), weights):
        np.testing.assert_array_equal(saved, ours)


def test_two_workers_share_a_streamed_class_folder(tmp_path, registry):
    """A class folder streams from disk; each worker keeps its slice of each global batch (auto-shard DATA)."""
    from tests.engine.test_data import make_class_folders

    folder = make_class_folders(tmp_path / "shapes", per_class=40, size=(28, 28), mode="L")
    results = run_workers(lambda addresses, i: [sys.executable, "-m", "tests.distributed_worker",
                                                str(tmp_path / f"w{i}.npz"), "--workers", addresses,
                                                "--worker-index", str(i), "--folder", str(folder)], registry)
    for code, out, err in results:
        assert code == 0, err[-3000:]
    # 120 images, 20% held out: 96 streamed training images = 2 steps of 64 + 32 per epoch, 2 epochs.
    assert "status=completed chief=True saved=distributed batches=4" in results[0][1]
    env = {**os.environ, "CNN_MODELS_DIR": str(tmp_path / "single"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("TF_CONFIG", None)
    alone = subprocess.run([sys.executable, "-m", "tests.distributed_worker", str(tmp_path / "single.npz"),
                            "--folder", str(folder)], cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=WORKER_TIMEOUT)
    assert alone.returncode == 0 and "chief=True" in alone.stdout, alone.stderr[-3000:]
    w0, w1, single = (np.load(tmp_path / f"{n}.npz") for n in ("w0", "w1", "single"))
    for k in w0.files:
        np.testing.assert_array_equal(w0[k], w1[k])
        np.testing.assert_allclose(w0[k], single[k], rtol=1e-4, atol=1e-5)


def test_a_stop_asked_of_one_worker_stops_both_together(tmp_path, registry):
    from cnn.store.registry import list_models

    results = run_workers(lambda addresses, i: [sys.executable, "-m", "tests.distributed_worker",
                                                str(tmp_path / f"w{i}.npz"), "--workers", addresses,
                                                "--worker-index", str(i)] + (["--stop-after", "3"] if i else []),
                          registry)
    for code, out, err in results:
        assert code == 0, err[-3000:]
    # Worker 1 was asked after its 3rd batch; the request rode on the 4th step's all-reduce: both did 4.
    assert "status=stopped chief=True saved=distributed batches=4" in results[0][1]
    assert "status=stopped chief=False saved=None batches=4" in results[1][1]
    w0, w1 = (np.load(tmp_path / f"w{i}.npz") for i in range(2))
    for k in w0.files:
        np.testing.assert_array_equal(w0[k], w1[k])
    assert [i.name for i in list_models()] == ["distributed"]


def test_cli_two_workers_one_saved_model(registry):
    from cnn.store.registry import list_models, model_info

    def command(addresses, i):
        return [sys.executable, "-m", "cnn", "train", "--preset", "keras-mnist-convnet", "--dataset", "mnist-sample",
                "--limit", "1500", "--epochs", "1", "--batch-size", "64", "--name", "two-workers",
                "--workers", addresses, "--worker-index", str(i)]

    (code0, out0, err0), (code1, out1, err1) = run_workers(command, registry)
    assert code0 == 0 and code1 == 0, err0[-2000:] + err1[-2000:]
    assert "saved as 'two-workers'" in out0 and "as worker 0 of 2" in err0
    assert out1.strip().splitlines() == [out1.strip()]  # one line…
    assert out1.startswith("worker 1 of 2: trained 1 epoch(s)") and "the chief (worker 0)" in out1  # …saying so
    assert [i.name for i in list_models()] == ["two-workers"]
    assert model_info("two-workers").test_accuracy > 0.6  # 1 epoch on 1,350 images (chance: 0.1)


def test_stop_and_nan_under_a_multi_worker_strategy(small_data):
    """A MultiWorkerMirroredStrategy without TF_CONFIG is a one-worker cluster: its stop and NaN decisions
    go through the all-reduce like a real cluster's."""
    import tensorflow as tf

    from cnn.model.spec import Conv2D, Dense, Flatten, ModelSpec, TrainConfig
    from cnn.run.train import train

    os.environ.pop("TF_CONFIG", None)
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    spec = ModelSpec(layers=[Conv2D(4, 3), Flatten(), Dense(16)], train=TrainConfig(epochs=2, batch_size=64))
    stop, seen = threading.Event(), []

    def on_progress(report):
        seen.append(report)
        if report.batch == 3:
            stop.set()

    result = train(spec, small_data, strategy=strategy, stop=stop, on_progress=on_progress, progress_interval=0)
    assert result.status == "stopped" and result.chief and "epoch 1 of 2" in result.message
    assert max(r.batch for r in seen if r.phase == "batch") == 4  # the request rides on the next step
    diverging = ModelSpec(layers=[Conv2D(8, 3, activation="linear"), Flatten(), Dense(256, "linear"),
                                  Dense(256, "linear")],
                          train=TrainConfig(optimizer="sgd", learning_rate=1.0, epochs=2))
    failed = train(diverging, small_data, strategy=strategy)
    assert failed.status == "failed" and "loss became nan" in failed.message
    assert all(np.isfinite(w).all() for w in failed.model.get_weights())


def test_mirrored_strategy_trains(small_spec, small_data):
    from cnn.run.distribute import make_strategy
    from cnn.run.train import train

    result = train(small_spec, small_data, strategy=make_strategy("mirrored"))
    assert result.status == "completed" and result.history["val_accuracy"][-1] > 0.6  # chance: 0.1
    assert make_strategy("one") is None


def test_worker_addresses_and_tf_config(monkeypatch):
    from cnn.run.distribute import parse_workers, read_tf_config, set_tf_config, tf_config

    assert parse_workers(" localhost:1234, 10.0.0.2:80 ") == ["localhost:1234", "10.0.0.2:80"]
    for bad, words in (("localhost", "host:port"), ("a:0", "1…65535"), ("a:1,a:1", "twice"), (",", "at least")):
        with pytest.raises(TrainingError, match=words):
            parse_workers(bad)
    assert tf_config(["a:1", "b:2"], 1) == {"cluster": {"worker": ["a:1", "b:2"]},
                                            "task": {"type": "worker", "index": 1}}
    with pytest.raises(TrainingError, match="out of range: the cluster has 2 worker"):
        tf_config(["a:1", "b:2"], 2)
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(TrainingError, match="set TF_CONFIG, or pass --workers"):
        read_tf_config()
    set_tf_config(["a:1", "b:2"], 0)
    assert json.loads(os.environ["TF_CONFIG"])["task"] == {"type": "worker", "index": 0}
    assert read_tf_config()["cluster"]["worker"] == ["a:1", "b:2"]
    for text, words in (("{", "not valid JSON"), ('{"cluster": {}}', 'needs "cluster"'),
                        ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}', "not a member")):
        monkeypatch.setenv("TF_CONFIG", text)
        with pytest.raises(TrainingError, match=words):
            read_tf_config()


def test_cli_refuses_inconsistent_worker_flags(registry):
    env = {**os.environ, "CNN_MODELS_DIR": str(registry)}
    env.pop("TF_CONFIG", None)
    for args, words in ((["--workers", "localhost:1"], "go together"),
                        (["--workers", "localhost:1,localhost:2", "--worker-index", "0", "--strategy", "mirrored"],
                         "is for --strategy multi-worker"),
                        (["--strategy", "multi-worker"], "set TF_CONFIG"),
                        (["--workers", "localhost:1", "--worker-index", "5"], "out of range")):
        out = subprocess.run([sys.executable, "-m", "cnn", "train", "--epochs", "1", *args], capture_output=True,
                             text=True, env=env, cwd=ROOT, timeout=120)
        assert out.returncode == 2 and words in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_keras_callbacks_are_driven_as_fit_drives_them(small_spec, small_data):
    """Extra callbacks (a benchmark's clock, a film of the weights) see fit's events, params and logs, and can
    stop training by setting model.stop_training."""
    import keras

    from cnn.run.train import train

    class Recorder(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.events, self.weights = [], []

        def on_train_begin(self, logs=None):
            self.events.append(("train_begin", self.params["epochs"], self.params["steps"]))

        def on_epoch_end(self, epoch, logs=None):
            self.events.append(("epoch_end", epoch, sorted(logs)))
            self.weights.append(self.model.get_weights()[0].copy())

        def on_train_batch_end(self, batch, logs=None):
            if batch == 0:
                self.events.append(("batch_end", sorted(logs)))
            if self.model.optimizer.iterations.numpy() == 40:  # 1.4 epochs in: stop, as any Keras callback may
                self.model.stop_training = True

        def on_train_end(self, logs=None):
            self.events.append(("train_end",))

    recorder = Recorder()
    config = small_spec.train.__class__(epochs=3, batch_size=64)
    result = train(small_spec, small_data, config, callbacks=[recorder])
    steps = -(-1800 // 64)
    assert recorder.events[0] == ("train_begin", 3, steps)
    assert recorder.events[1] == ("batch_end", ["accuracy", "loss"])
    epoch_ends = [e for e in recorder.events if e[0] == "epoch_end"]
    assert [e[1] for e in epoch_ends] == [0, 1]  # stopped in the second epoch, which still ends and validates
    assert epoch_ends[0][2] == ["accuracy", "loss", "lr", "seconds", "val_accuracy", "val_loss"]
    assert recorder.events[-1] == ("train_end",)
    assert result.history["epoch"] == [1, 2] and len(result.history["val_accuracy"]) == 2
    assert not np.array_equal(recorder.weights[0], recorder.weights[1])  # the weights it filmed moved

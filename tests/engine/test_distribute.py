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

WORKER_TIMEOUT = 300  # seconds for the cluster's three trainings (about 20 s alone, 40 s on 2 busy cores)


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


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """One two-worker cluster running the three trainings the tests below read (a streamed class folder, the
    sample, the sample stopped by worker 1), with the folder's one-process reference started beside it.
    The trainings share the cluster so that its start and TensorFlow's import are paid once:
    {"dir", "registry", "out": [worker 0's stdout, worker 1's], "alone": the reference's stdout}; each training's
    final weights are in dir/<w0|w1|single>-<run>.npz."""
    from tests.engine.test_data import make_class_folders

    tmp = tmp_path_factory.mktemp("cluster")
    registry = tmp / "models"
    folder = make_class_folders(tmp / "shapes", per_class=40, size=(28, 28), mode="L")
    env = {**os.environ, "CNN_MODELS_DIR": str(tmp / "single"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("TF_CONFIG", None)
    alone = subprocess.Popen([sys.executable, "-m", "tests.distributed_worker", str(tmp / "single"), "--run",
                              "folder", "--folder", str(folder)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        results = run_workers(lambda addresses, i: [
            sys.executable, "-m", "tests.distributed_worker", str(tmp / f"w{i}"), "--workers", addresses,
            "--worker-index", str(i), "--folder", str(folder), "--run", "folder", "--run", "sample", "--run", "stop",
            *(["--stop-after", "3"] if i else [])], registry)
        alone_out, alone_err = alone.communicate(timeout=WORKER_TIMEOUT)
    finally:
        if alone.poll() is None:
            os.killpg(alone.pid, signal.SIGKILL)
            alone.wait()
    for code, out, err in results:
        assert code == 0, err[-3000:]
    assert alone.returncode == 0 and "chief=True" in alone_out, alone_err[-3000:]
    return {"dir": tmp, "registry": registry, "out": [out for _, out, _ in results], "alone": alone_out}


def weights(cluster, run, *who):
    """The final weights of `run` on each of `who` ("w0", "w1", "single"), as lists of arrays."""
    loaded = [np.load(cluster["dir"] / f"{w}-{run}.npz") for w in who]
    return [[f[k] for k in f.files] for f in loaded]


def test_two_workers_train_like_one_process_and_only_the_chief_saves(cluster, monkeypatch):
    from cnn.run.train import train
    from cnn.store.registry import list_models, load_model
    from tests.distributed_worker import data, spec_for

    monkeypatch.setenv("CNN_MODELS_DIR", str(cluster["registry"]))
    assert "run=sample status=completed chief=True saved=distributed batches=16" in cluster["out"][0]  # 2 × 8 steps
    assert "run=sample status=completed chief=False saved=None batches=16" in cluster["out"][1]
    # One model per training, each from the chief: worker 1 saved none.
    assert sorted(i.name for i in list_models()) == ["distributed", "distributed-folder", "distributed-stopped"]
    assert all("saved=None" in line for line in cluster["out"][1].splitlines() if line.startswith("run="))
    saved = next(i for i in list_models() if i.name == "distributed").path
    # The film callback (weights each epoch) ran under the strategy; calibration ran on the chief.
    assert (saved / "film.npz").is_file() and (saved / "calibration.json").is_file()

    # Both workers end with identical weights…
    w0, w1 = weights(cluster, "sample", "w0", "w1")
    for a, b in zip(w0, w1):
        np.testing.assert_array_equal(a, b)
    # …equal (to float tolerance: sums run in another order) to one process fed the same global batches…
    single = train(spec_for(data()), data()).model.get_weights()
    assert len(single) == len(w0)
    for ours, theirs in zip(w0, single):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)
    # …and the chief's saved model is that model.
    for saved, ours in zip(load_model("distributed").get_weights(), w0):
        np.testing.assert_array_equal(saved, ours)


def test_two_workers_share_a_streamed_class_folder(cluster):
    """A class folder streams from disk; each worker keeps its slice of each global batch (auto-shard DATA)."""
    # 120 images, 20% held out: 96 streamed training images = 2 steps of 64 + 32 per epoch, 2 epochs.
    assert "run=folder status=completed chief=True saved=distributed-folder batches=4" in cluster["out"][0]
    w0, w1, single = weights(cluster, "folder", "w0", "w1", "single")
    for a, b, c in zip(w0, w1, single, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(a, c, rtol=1e-4, atol=1e-5)


def test_a_stop_asked_of_one_worker_stops_both_together(cluster):
    # Worker 1 was asked after its 3rd batch; the request rode on the 4th step's all-reduce: both did 4.
    assert "run=stop status=stopped chief=True saved=distributed-stopped batches=4" in cluster["out"][0]
    assert "run=stop status=stopped chief=False saved=None batches=4" in cluster["out"][1]
    w0, w1 = weights(cluster, "stop", "w0", "w1")
    for a, b in zip(w0, w1, strict=True):
        np.testing.assert_array_equal(a, b)
    # The stopped weights are not the completed run's: the stop really cut the training short.
    assert not all(np.array_equal(a, b) for a, b in zip(w0, weights(cluster, "sample", "w0")[0]))


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

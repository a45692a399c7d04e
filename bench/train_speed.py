"""Training speed on full MNIST, as ratios measured in one run (lower time ratio = faster).

    CNN_DATA_DIR=../shared/datasets python bench/train_speed.py

1. Time to 99.0% test accuracy: the `default` preset through cnn.train.train() vs the reference, the
   keras-io "Simple MNIST convnet" recipe as published (float32 inputs scaled to 0…1, Adam 1e-3,
   batch 128). Test accuracy is checked every quarter epoch with the clock paused. Target ≤ 0.5.
2. Overhead of train() (progress reports every 0.25 s, stop checks, NaN checks) vs bare model.fit on the
   same model and data pipeline: throughput ratio over epochs 2–3 (median of 3). Target ≥ 0.95.
3. Overhead of the app's path: a TrainingJob in a background thread, polled every 0.5 s as the Train page
   does, vs bare model.fit. Target ≥ 0.95.

The reference is fed numpy arrays, so Keras makes a new tf.data iterator every epoch; with the accuracy
checks' garbage around, that stalled some of its epochs by ~8 s (train() avoids it with one repeating
pipeline, see cnn.train.make_train_data). So the reference's fit runs with automatic garbage collection
paused: the ratio compares the recipes, not that artifact of the measurement.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["CNN_MODELS_DIR"] = tempfile.mkdtemp(prefix="bench-models-")  # TrainingJob saves; keep models/ clean

import numpy as np  # noqa: E402

from cnn.quiet import import_tensorflow  # noqa: E402

tf = import_tensorflow()
import keras  # noqa: E402

from cnn.builder import build_model  # noqa: E402
from cnn.data import load_dataset  # noqa: E402
from cnn.inference import predict_proba  # noqa: E402
from cnn.spec import preset  # noqa: E402
from cnn.train import TrainingJob, make_optimizer, make_train_data, train  # noqa: E402

TARGET = 0.99


@contextlib.contextmanager
def paused_gc():
    """Automatic garbage collection off for the duration (the reference's fit: see the docstring)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class TimeToAccuracy(keras.callbacks.Callback):
    """Stops when test accuracy ≥ TARGET; `seconds` counts training time only (checks excluded)."""

    def __init__(self, x_test, y_test, checks_per_epoch=4, scale=1.0):
        super().__init__()
        self.x_test, self.y_test, self.checks, self.scale = x_test, y_test, checks_per_epoch, scale
        self.seconds, self.hit, self.trace = 0.0, None, []

    def on_train_begin(self, logs=None):
        self.batches = self.params["steps"]
        self.every = max(1, self.batches // self.checks)
        self.t0 = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (batch + 1) % self.every and batch + 1 != self.batches:
            return
        self.seconds += time.perf_counter() - self.t0
        accuracy = float(np.mean(predict_proba(self.model, self.x_test * self.scale).argmax(1) == self.y_test))
        self.trace.append((round(self.epoch + (batch + 1) / self.batches, 2), round(self.seconds, 1), accuracy))
        if accuracy >= TARGET and self.hit is None:
            self.hit = self.seconds
            self.model.stop_training = True
        self.t0 = time.perf_counter()


def reference_model():
    """The keras-io 'Simple MNIST convnet', verbatim: float inputs in 0…1, no rescaling layer."""
    return keras.Sequential([
        keras.Input(shape=(28, 28, 1)),
        keras.layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
        keras.layers.MaxPooling2D(pool_size=(2, 2)),
        keras.layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
        keras.layers.MaxPooling2D(pool_size=(2, 2)),
        keras.layers.Flatten(),
        keras.layers.Dropout(0.5),
        keras.layers.Dense(10, activation="softmax"),
    ])


def time_reference(data, max_epochs=15):
    keras.utils.set_random_seed(0)
    x = data.x_train.astype("float32") / 255  # as keras-io does it
    model = reference_model()
    model.compile(loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    clock = TimeToAccuracy(data.x_test, data.y_test, scale=1 / 255)
    with paused_gc():  # see the module docstring
        model.fit(x, data.y_train, batch_size=128, epochs=max_epochs, verbose=0, callbacks=[clock])
    return clock


def time_preset(name, data):
    spec = preset(name)
    clock = TimeToAccuracy(data.x_test, data.y_test)
    train(spec, data, callbacks=[clock], on_progress=lambda p: None)
    return clock


EPOCHS = 3  # overhead runs: epochs 2…3 are timed (the first includes tracing)


def bare_epochs(spec, data) -> float:
    """Seconds of epochs 2…EPOCHS of plain model.fit (same model, optimizer, data pipeline, batch size)."""
    keras.utils.set_random_seed(0)
    model = build_model(spec)
    steps = int(np.ceil(len(data.y_train) / spec.train.batch_size))
    model.compile(optimizer=make_optimizer(spec.train, steps * EPOCHS), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    times = []
    timer = keras.callbacks.LambdaCallback(on_epoch_begin=lambda e, l: times.append(time.perf_counter()),
                                           on_epoch_end=lambda e, l: times.append(time.perf_counter()))
    fit_data, steps = make_train_data(data.x_train, data.y_train, spec.train.batch_size, spec.train.seed)
    model.fit(fit_data, steps_per_epoch=steps, epochs=EPOCHS, verbose=0, callbacks=[timer])
    return times[-1] - times[2]


def job_epochs(spec, data, poll=0.5) -> float:
    """Seconds of epochs 2…EPOCHS through the app's path: a TrainingJob thread polled like the Train page."""
    job = TrainingJob(spec, data).start()
    while job.snapshot().running:
        time.sleep(poll)
    return sum(job.result.history["seconds"][1:])


def overhead(name, data, repeats=3):
    """Throughput (epochs 2…EPOCHS) of train() and of a TrainingJob vs bare model.fit, medians of repeats."""
    spec = preset(name)
    spec.train.epochs, spec.train.validation_split = EPOCHS, 0.0
    direct, job = [], []
    for _ in range(repeats):
        bare = bare_epochs(spec, data)
        direct.append(bare / sum(train(spec, data, on_progress=lambda p: None).history["seconds"][1:]))
        job.append(bare / job_epochs(spec, data))
    return (statistics.median(direct), direct), (statistics.median(job), job)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="default")
    parser.add_argument("--skip-overhead", action="store_true")
    args = parser.parse_args()
    data = load_dataset("mnist")
    print(f"full MNIST: {data.num_train:,} train / {data.num_test:,} test; {os.cpu_count()} CPU cores; "
          f"TensorFlow {tf.__version__}, Keras {keras.__version__}")

    ref = time_reference(data)
    print(f"reference keras-mnist-convnet (keras-io recipe): {ref.hit or float('nan'):.1f} s to {TARGET:.1%}"
          f"  trace (epoch, s, acc): {ref.trace}")
    ours = time_preset(args.preset, data)
    print(f"preset {args.preset!r} via cnn.train: {ours.hit or float('nan'):.1f} s to {TARGET:.1%}"
          f"  trace: {ours.trace}")
    if ref.hit and ours.hit:
        print(f"time-to-{TARGET:.0%} ratio {args.preset}/reference = {ours.hit / ref.hit:.2f} (target ≤ 0.5, goal 0.33)")
    else:
        print(f"time-to-{TARGET:.0%} ratio: not reached (reference {ref.hit}, {args.preset} {ours.hit})")

    if not args.skip_overhead:
        (direct, d_all), (job, j_all) = overhead(args.preset, data)
        print(f"train() throughput / bare model.fit = {direct:.3f} (median of {[round(r, 3) for r in d_all]}; "
              "target ≥ 0.95)")
        print(f"TrainingJob (thread, polled every 0.5 s) throughput / bare model.fit = {job:.3f} "
              f"(median of {[round(r, 3) for r in j_all]}; target ≥ 0.95)")


if __name__ == "__main__":
    main()

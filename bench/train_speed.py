"""Training speed on full MNIST, as ratios measured in one run (lower time ratio = faster).

    CNN_DATA_DIR=../shared/datasets python bench/train_speed.py

1. Time to 99.0% test accuracy: the `default` preset through cnn.run.train.train() vs the reference, the
   keras-io "Simple MNIST convnet" recipe as published (float32 inputs scaled to 0…1, Adam 1e-3,
   batch 128). Test accuracy is checked every quarter epoch with the clock paused; the preset trains on to
   the end of its schedule, whose final test accuracy is printed too. Goal ≤ 0.10, the default still ≥ 99.2% at the end.
2. Overhead of train() (progress reports every 0.25 s, stop checks, NaN checks) vs bare model.fit on the
   same model and data pipeline: ratio of median epoch times over epochs 2–4 of 3 interleaved rounds,
   on the epochs the host did not steal CPU from (see overhead()). Target ≥ 0.95.
3. Overhead of the app's path: a TrainingJob in a background thread, polled every 0.5 s as the Train page
   does, vs bare model.fit. Target ≥ 0.95.
4. With --levers: each choice behind the `default` preset, one at a time, from the previous default to the
   current one and away from it (time to 99.0% and the test accuracy at the end of the schedule, same seed),
   and the threading and oneDNN settings as step times of the default's training step (each in a fresh
   process: they are fixed when TensorFlow starts).

The reference is fed numpy arrays, so Keras makes a new tf.data iterator every epoch; with the accuracy
checks' garbage around, that stalled some of its epochs by ~8 s (train() avoids it with one repeating
pipeline, see cnn.run.train.make_train_data). So the reference's fit runs with automatic garbage collection
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
from dataclasses import replace as swap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.machine import cpu_stat  # noqa: E402
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["CNN_MODELS_DIR"] = tempfile.mkdtemp(prefix="bench-models-")  # TrainingJob saves; keep models/ clean

import numpy as np  # noqa: E402

from cnn.core.quiet import import_tensorflow  # noqa: E402

tf = import_tensorflow()
import keras  # noqa: E402

from cnn.model.builder import build_model  # noqa: E402
from cnn.model.layers import BatchNormalization, Conv2D, Dense, Dropout, Flatten, MaxPooling2D  # noqa: E402
from cnn.data.load import load_dataset  # noqa: E402
from cnn.analysis.inference import predict_proba  # noqa: E402
from cnn.model.spec import preset  # noqa: E402
from cnn.run.jobs import TrainingJob
from cnn.run.train import make_optimizer, make_train_data, train  # noqa: E402

TARGET = 0.99


class Clock:
    """Wall time, this process's CPU time and the machine's CPU steal share over a stretch of work."""

    def __enter__(self):
        self.wall, self.cpu, self.stat = time.perf_counter(), time.process_time(), cpu_stat()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu
        busy, steal = (b - a for a, b in zip(self.stat, cpu_stat()))
        self.steal = steal / max(busy + steal, 1)


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
        self.seconds, self.cpu, self.hit, self.hit_cpu, self.trace = 0.0, 0.0, None, None, []

    def on_train_begin(self, logs=None):
        self.batches = self.params["steps"]
        self.every = max(1, self.batches // self.checks)
        self.t0, self.c0 = time.perf_counter(), time.process_time()

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (batch + 1) % self.every and batch + 1 != self.batches:
            return
        self.seconds += time.perf_counter() - self.t0
        self.cpu += time.process_time() - self.c0
        accuracy = float(np.mean(predict_proba(self.model, self.x_test * self.scale).argmax(1) == self.y_test))
        self.trace.append((round(self.epoch + (batch + 1) / self.batches, 2), round(self.seconds, 1), accuracy))
        if accuracy >= TARGET and self.hit is None:
            self.hit, self.hit_cpu = self.seconds, self.cpu
            self.model.stop_training = True
        self.t0, self.c0 = time.perf_counter(), time.process_time()


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
    with paused_gc(), Clock() as machine:  # GC: see the module docstring
        model.fit(x, data.y_train, batch_size=128, epochs=max_epochs, verbose=0, callbacks=[clock])
    clock.steal = machine.steal
    return clock


def time_spec(spec, data):
    """Train `spec` to the end of its schedule: its ToTheEnd clock, with .steal and .final (the test accuracy
    at the end) set."""
    clock = ToTheEnd(data.x_test, data.y_test)
    with Clock() as machine:
        train(spec, data, callbacks=[clock], on_progress=lambda p: None)
    clock.steal, clock.final = machine.steal, clock.trace[-1][2]
    return clock


class ToTheEnd(TimeToAccuracy):
    """A TimeToAccuracy that lets the schedule finish after reaching TARGET (to read the final accuracy)."""

    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(batch, logs)
        self.model.stop_training = False


EPOCHS = 4  # overhead runs: epochs 2…EPOCHS are timed one by one (the first includes tracing)
CLEAN_STEAL = 0.05  # an epoch during which the host stole more than this share of the CPU is not compared


class EpochClock(keras.callbacks.Callback):
    """A Clock (wall, CPU, steal share) for each of epochs 2…EPOCHS of a fit."""

    def __init__(self):
        super().__init__()
        self.epochs: list[Clock] = []

    def on_epoch_begin(self, epoch, logs=None):
        self.clock = Clock().__enter__() if epoch >= 1 else None

    def on_epoch_end(self, epoch, logs=None):
        if self.clock is not None:
            self.clock.__exit__(None, None, None)
            self.epochs.append(self.clock)


def bare_epochs(spec, data) -> list[Clock]:
    """Plain model.fit: same model, optimizer, data pipeline and batch size."""
    keras.utils.set_random_seed(0)
    model = build_model(spec)
    steps = int(np.ceil(len(data.y_train) / spec.train.batch_size))
    model.compile(optimizer=make_optimizer(spec.train, steps * EPOCHS), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    timer = EpochClock()
    fit_data, steps = make_train_data(data.x_train, data.y_train, spec.train.batch_size, spec.train.seed)
    model.fit(fit_data, steps_per_epoch=steps, epochs=EPOCHS, verbose=0, callbacks=[timer], shuffle=False)
    return timer.epochs


def train_epochs(spec, data) -> list[Clock]:
    """cnn.run.train.train() with its progress reports (the CLI's path)."""
    timer = EpochClock()
    train(spec, data, on_progress=lambda p: None, callbacks=[timer])
    return timer.epochs


def job_epochs(spec, data, poll=0.5) -> list[Clock]:
    """The app's path: a TrainingJob thread, its snapshot polled every `poll` s like the Train page."""
    timer = EpochClock()
    job = TrainingJob(spec, data, callbacks=[timer]).start()
    while job.snapshot().running:
        time.sleep(poll)
    return timer.epochs


def overhead(name, data, repeats=3):
    """Epoch times of bare model.fit, train() and a TrainingJob, interleaved over `repeats` rounds.

    This VM's host steals CPU in bursts (seen: 0–50% of a run), which slows whichever run it hits by far
    more than any overhead, so throughput is compared on the epochs with steal ≤ CLEAN_STEAL (median epoch
    time); the all-epochs medians are printed beside them."""
    spec = preset(name)
    spec.train.epochs, spec.train.validation_split = EPOCHS, 0.0
    runs = {"bare": bare_epochs, "train()": train_epochs, "TrainingJob": job_epochs}
    epochs = {label: [] for label in runs}
    for _ in range(repeats):
        for label, run in runs.items():
            epochs[label] += run(spec, data)
    return epochs


def median_epoch(clocks: list[Clock], clean: bool) -> float:
    walls = [c.wall for c in clocks if not clean or c.steal <= CLEAN_STEAL]
    return statistics.median(walls) if walls else float("nan")


def lever_specs() -> list[tuple[str, object]]:
    """(what changed, spec): the previous default, each step to the current one, then single changes away."""
    def model(bn_after_pool=True, head=128, bn=True, lr=8e-3, first=(8, 5), second=(32, 3), **train):
        norm = [BatchNormalization()] if bn else []
        conv = lambda filters, kernel: ([Conv2D(filters, kernel), MaxPooling2D(2), *norm] if bn_after_pool
                                        else [Conv2D(filters, kernel), *norm, MaxPooling2D(2)])
        spec = preset("default")
        spec.layers = [*conv(*first), *conv(*second), Flatten(), Dense(head), Dropout(0.25)]
        spec.train = swap(spec.train, learning_rate=lr, **train)
        return spec

    before = dict(first=(16, 5), second=(32, 5))
    return [
        ("previous default (16@5×5, 32@5×5, BN after each conv, Dense 64, peak rate 3e-3)",
         model(False, 64, lr=3e-3, **before)),
        ("+ BN after each pool instead", model(True, 64, lr=3e-3, **before)),
        ("+ Dense 128", model(True, 128, lr=3e-3, **before)),
        ("+ peak rate 8e-3", model(**before)),
        ("+ 8 kernels in the first conv", model(second=(32, 5))),
        ("+ 3×3 kernels in the second (= the default)", model()),
        ("default without batch norm", model(bn=False)),
        ("default with a constant rate (no warm-up/cosine)", model(lr_schedule="constant", lr=2e-3)),
        ("default with batch 512, peak rate 1.2e-2", model(batch_size=512, lr=1.2e-2)),
        ("default with batch 128, peak rate 5e-3", model(batch_size=128, lr=5e-3)),
        ("default with 2 epochs", model(epochs=2)),
        ("default with seed 1", model(seed=1)),
    ]


STEP_PROBE = """
import os, time, numpy as np
from cnn.core.quiet import import_tensorflow
tf = import_tensorflow()
{threads}
import keras
from cnn.model.builder import build_model
from cnn.model.spec import preset
from cnn.run.train import make_optimizer
spec = preset("default")
model = build_model(spec)
optimizer = make_optimizer(spec.train, 1000)
lose = keras.losses.SparseCategoricalCrossentropy()
x = tf.constant(np.random.default_rng(0).integers(0, 256, (256, 28, 28, 1)).astype("uint8"))
y = tf.constant(np.random.default_rng(1).integers(0, 10, 256))
@tf.function
def step():
    with tf.GradientTape() as tape:
        loss = lose(y, model(x, training=True))
    optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
    return loss
for _ in range(10): step().numpy()
times = []
for _ in range(5):
    t = time.perf_counter()
    for _ in range(20): step().numpy()
    times.append((time.perf_counter() - t) / 20)
print(sorted(times)[2] * 1000)
"""


def step_ms(threads: str = "", **env) -> float:
    """The default's median training-step time (batch 256) in a fresh process with `env` and `threads` code."""
    import subprocess

    out = subprocess.run([sys.executable, "-c", STEP_PROBE.format(threads=threads)], capture_output=True, text=True,
                         env={**os.environ, **env}, cwd=Path(__file__).resolve().parent.parent, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def levers(data, reference_seconds):
    print("levers (one change at a time; same seed; time to 99.0% / test accuracy after the whole schedule):")
    for label, spec in lever_specs():
        clock = time_spec(spec, data)
        hit, final = clock.hit, clock.final
        ratio = f", {hit / reference_seconds:.3f}× the reference" if hit and reference_seconds else ""
        print(f"  {label}: {'not reached' if hit is None else f'{hit:.1f} s'}{ratio}; final {final:.2%}", flush=True)
    base = step_ms()
    print(f"  training step of the default, batch 256: {base:.1f} ms with TensorFlow's thread defaults and oneDNN")
    for label, threads, env in [
        ("intra-op 2, inter-op 1", "tf.config.threading.set_intra_op_parallelism_threads(2); "
                                   "tf.config.threading.set_inter_op_parallelism_threads(1)", {}),
        ("intra-op 1, inter-op 2", "tf.config.threading.set_intra_op_parallelism_threads(1); "
                                   "tf.config.threading.set_inter_op_parallelism_threads(2)", {}),
        ("oneDNN off (TF_ENABLE_ONEDNN_OPTS=0)", "", {"TF_ENABLE_ONEDNN_OPTS": "0"}),
    ]:
        ms = step_ms(threads, **env)
        print(f"  {label}: {ms:.1f} ms ({ms / base:.2f}× the defaults)", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="default")
    parser.add_argument("--skip-overhead", action="store_true", help="only the time-to-accuracy part")
    parser.add_argument("--only-overhead", action="store_true", help="only the overhead part")
    parser.add_argument("--levers", action="store_true", help="also each choice behind the default (part 4)")
    args = parser.parse_args()
    data = load_dataset("mnist")
    print(f"full MNIST: {data.num_train:,} train / {data.num_test:,} test; {os.cpu_count()} CPU cores; "
          f"TensorFlow {tf.__version__}, Keras {keras.__version__}")

    if not args.only_overhead:
        ref = time_reference(data)
        print(f"reference keras-mnist-convnet (keras-io recipe): {ref.hit or float('nan'):.1f} s "
              f"({ref.hit_cpu or float('nan'):.1f} CPU-s) to {TARGET:.1%}, CPU steal {ref.steal:.0%}"
              f"  trace (epoch, s, acc): {ref.trace}")
        ours = time_spec(preset(args.preset), data)
        print(f"preset {args.preset!r} via cnn.run.train: {ours.hit or float('nan'):.1f} s "
              f"({ours.hit_cpu or float('nan'):.1f} CPU-s) to {TARGET:.1%}, {ours.final:.2%} at the end of its "
              f"schedule (goal ≥ 99.2%), CPU steal {ours.steal:.0%}"
              f"  trace: {ours.trace}")
        if ref.hit and ours.hit:
            print(f"time-to-{TARGET:.0%} ratio {args.preset}/reference = {ours.hit / ref.hit:.2f} wall, "
                  f"{ours.hit_cpu / ref.hit_cpu:.2f} CPU (goal ≤ 0.10)")
        else:
            print(f"time-to-{TARGET:.0%} ratio: not reached (reference {ref.hit}, {args.preset} {ours.hit})")
        if args.levers:
            levers(data, ref.hit)

    if not args.skip_overhead:
        epochs = overhead(args.preset, data)
        bare = epochs.pop("bare")
        for label, clocks in [("bare model.fit", bare)] + list(epochs.items()):
            clean = sum(c.steal <= CLEAN_STEAL for c in clocks)
            print(f"{label}: median epoch {median_epoch(clocks, True):.2f} s on {clean}/{len(clocks)} epochs with "
                  f"steal ≤ {CLEAN_STEAL:.0%} ({median_epoch(clocks, False):.2f} s on all; steal per epoch: "
                  f"{', '.join(f'{c.steal:.0%}' for c in clocks)})")
        for label, clocks in epochs.items():
            print(f"{label} throughput / bare model.fit = "
                  f"{median_epoch(bare, True) / median_epoch(clocks, True):.3f} on low-steal epochs, "
                  f"{median_epoch(bare, False) / median_epoch(clocks, False):.3f} on all (target ≥ 0.95)")


if __name__ == "__main__":
    main()

"""Distributed training speed, as ratios measured in one run.

    CNN_DATA_DIR=../shared/datasets python bench/distributed.py [--limit 20000] [--epochs 4] [--rounds 2]

1. The training loop's single-process speed: cnn.run.train.train() (a custom step under the default strategy —
   the path every strategy takes) vs the fit path it replaced (model.fit with train()'s progress and NaN
   callback) and vs bare `model.fit`, on the same model, optimizer, data pipeline and batch size. Epoch
   times over epochs 2…E of interleaved rounds (the first epoch includes tracing): median, best, and median
   CPU time. Goal: throughput ratio ≥ 0.95 against the fit path.
2. Steps per second of 1 vs 2 worker processes on this machine (MultiWorkerMirroredStrategy over loopback,
   the same global batch size, so a step is the same amount of work split over the workers). On a machine
   whose cores one process already keeps busy, 2 workers are NOT faster: they share the same cores and add
   an all-reduce per step. The figure that matters on real clusters is measured the same way with one
   worker per machine.

This VM's host steals CPU in bursts and other jobs may be running: re-measure on a quiet machine before
quoting figures. The script prints the CPU steal share of every run beside it.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.machine import cpu_stat, free_ports, steal_since  # noqa: E402
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CNN_MODELS_DIR", tempfile.mkdtemp(prefix="bench-models-"))  # never the project's models/


def epoch_clock():
    """A Keras callback recording (wall seconds, process CPU seconds) of every epoch after the first."""
    import keras

    class EpochClock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds: list[tuple[float, float]] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter(), time.process_time()

        def on_epoch_end(self, epoch, logs=None):
            if epoch >= 1:
                self.seconds.append((time.perf_counter() - self.start[0], time.process_time() - self.start[1]))

    return EpochClock()


def bench_spec(epochs: int, batch_size: int):
    from cnn.model.spec import preset

    spec = preset("default")
    spec.train.epochs, spec.train.batch_size, spec.train.validation_split = epochs, batch_size, 0.0
    return spec


def load(limit: int):
    from cnn.data.load import load_dataset

    name = "mnist" if os.environ.get("CNN_DATA_DIR") else "mnist-sample"
    return load_dataset(name, limit=(limit, 1000))


# ---------------------------------------------------------------------------
# 1. Single process: the custom distributed step vs model.fit
# ---------------------------------------------------------------------------

def fit_epochs(spec, data, with_reports: bool = False) -> list[float]:
    """model.fit on the same model, optimizer, pipeline and batch size as train(): bare, or as train() ran
    before this custom step (`with_reports`: its progress callback, which reads the loss of every batch for
    the NaN check and reports every 0.25 s)."""
    import keras

    from cnn.model.builder import build_model
    from cnn.run.train import _progress_callback, make_optimizer, make_train_data

    keras.utils.set_random_seed(spec.train.seed)
    fit_data, steps = make_train_data(data.x_train, data.y_train, spec.train.batch_size, spec.train.seed)
    model = build_model(spec)
    model.compile(optimizer=make_optimizer(spec.train, steps * spec.train.epochs),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    clock = epoch_clock()
    reports = [_progress_callback(lambda p: None, None, spec.train.epochs, steps, 0.25)] if with_reports else []
    model.fit(fit_data, steps_per_epoch=steps, epochs=spec.train.epochs, verbose=0, callbacks=[*reports, clock],
              shuffle=False)
    return clock.seconds


def train_epochs(spec, data, strategy=None) -> list[float]:
    """cnn.run.train.train() with progress reports, as the CLI runs it."""
    from cnn.run.train import train

    clock = epoch_clock()
    train(spec, data, on_progress=lambda p: None, callbacks=[clock], strategy=strategy)
    return clock.seconds


def single_process(args) -> None:
    from cnn.core.quiet import import_tensorflow

    tf = import_tensorflow()
    import keras

    data = load(args.limit)
    spec = bench_spec(args.epochs, args.batch_size)
    steps = -(-data.num_train // args.batch_size)
    print(f"{data.name}: {data.num_train:,} training images, batch {args.batch_size} ({steps} steps/epoch), "
          f"{args.epochs} epochs × {args.rounds} rounds; {os.cpu_count()} CPU cores; TensorFlow {tf.__version__}, "
          f"Keras {keras.__version__}")
    runs = {"bare model.fit": fit_epochs,
            "the fit path (model.fit + train()'s progress/NaN callback)": lambda s, d: fit_epochs(s, d, True),
            "train() (custom step)": train_epochs}
    times = {label: [] for label in runs}
    start = cpu_stat()
    for _ in range(args.rounds):
        for label, run in runs.items():
            times[label] += run(spec, data)
    steal = steal_since(start)
    # Three estimates: the median wall time, the best (least disturbed) wall time, and the median CPU time
    # (the work done, which other programs on the machine disturb least).
    stats = {label: (statistics.median(w for w, _ in values), min(w for w, _ in values),
                     statistics.median(c for _, c in values)) for label, values in times.items()}
    for label, values in times.items():
        wall, best, cpu = stats[label]
        print(f"  {label}: median epoch {wall:.2f} s = {steps / wall:.1f} steps/s, best {best:.2f} s, median CPU "
              f"{cpu:.2f} s (wall per epoch: {', '.join(f'{w:.2f}' for w, _ in values)})")
    ours = stats["train() (custom step)"]
    for label in list(runs)[:2]:
        ratios = [a / b for a, b in zip(stats[label], ours)]
        print(f"single-process throughput train() / {label.split(' (')[0]} = {ratios[0]:.3f} median wall, "
              f"{ratios[1]:.3f} best wall, {ratios[2]:.3f} median CPU (goal ≥ 0.95 against the fit path)")
    print(f"machine CPU steal {steal:.0%}, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores "
          "(above the core count: re-measure when quiet)")


# ---------------------------------------------------------------------------
# 2. 1 vs 2 worker processes on this machine
# ---------------------------------------------------------------------------


def worker(args) -> None:
    """One worker process: train under MultiWorkerMirroredStrategy, print its epoch times as JSON."""
    from cnn.core.quiet import import_tensorflow

    import_tensorflow()
    from cnn.run.distribute import make_strategy, parse_workers, set_tf_config

    set_tf_config(parse_workers(args.workers), args.worker_index)
    strategy = make_strategy("multi-worker")
    data = load(args.limit)
    seconds = train_epochs(bench_spec(args.epochs, args.batch_size), data, strategy)
    print(json.dumps({"index": args.worker_index, "seconds": [wall for wall, _ in seconds], "images": data.num_train}))


def run_workers(n: int, args) -> tuple[list[dict], float]:
    """Start `n` worker processes on loopback ports and wait for their reports: ([report], CPU steal)."""
    addresses = ",".join(f"localhost:{p}" for p in free_ports(n))
    command = [sys.executable, __file__, "--worker-index", "{i}", "--workers", addresses, "--limit", str(args.limit),
               "--epochs", str(args.epochs), "--batch-size", str(args.batch_size)]
    start = cpu_stat()
    procs = [subprocess.Popen([c.replace("{i}", str(i)) for c in command], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True) for i in range(n)]
    reports = []
    try:
        for proc in procs:
            out, _ = proc.communicate(timeout=args.timeout)
            if proc.returncode != 0:
                raise SystemExit(f"a worker failed (exit {proc.returncode}); run it by hand to see why: "
                                 f"{' '.join(command)}")
            reports.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return reports, steal_since(start)


def workers_compared(args) -> None:
    rates = {}
    for n in (1, 2):
        reports, steal = run_workers(n, args)
        median = statistics.median(s for r in reports for s in r["seconds"])
        steps = -(-reports[0]["images"] // args.batch_size)
        rates[n] = steps / median
        print(f"  {n} worker(s): median epoch {median:.2f} s = {rates[n]:.1f} global steps/s of "
              f"{args.batch_size} images ({args.batch_size // n} per worker); CPU steal {steal:.0%}")
    print(f"2 workers / 1 worker steps per second = {rates[2] / rates[1]:.2f} on this {os.cpu_count()}-core "
          f"machine, load average {os.getloadavg()[0]:.1f} (both workers share its cores: not expected to be "
          "faster here)")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=20_000, help="training images (default 20,000)")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per run; the first is not timed")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds of the single-process part")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--only", choices=("single", "workers"), help="run one part only")
    parser.add_argument("--timeout", type=float, default=900, help="seconds a worker run may take")
    parser.add_argument("--workers", help=argparse.SUPPRESS)  # set when this script runs as a worker
    parser.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.workers:
        return worker(args)
    if args.only != "workers":
        single_process(args)
    if args.only != "single":
        print("worker processes (MultiWorkerMirroredStrategy over loopback):")
        workers_compared(args)


if __name__ == "__main__":
    main()

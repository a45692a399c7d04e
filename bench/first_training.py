"""The app's first training (issue 24, item 2): the `default` preset on the embedded sample with the Train
page's defaults, from pressing Train to a saved model — and how well that model reads drawn digits.

    CNN_DATA_DIR=../shared/datasets python bench/first_training.py [--runs 3]

Two paths, as the app takes them:
  local   a TrainingJob thread in this process, TensorFlow already imported (Predict has loaded it);
  hosted  a ProcessTrainingJob in a new worker process: spawn and TensorFlow's import included (the first
          training after a hosted server starts; later ones find the worker warm, see cnn/run/worker.py).
Each counts training, evaluation on the sample's test split, calibration, the film and the save. The saved
model then reads 500 digits drawn as canvas strokes (MNIST *test* digits re-drawn, tests/ood_images.py)
through Predict's preprocessing, beside models/mnist-default. Goal: ≤ 15 s, and drawn digits read well
(≥ 90%).
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["CNN_MODELS_DIR"] = tempfile.mkdtemp(prefix="bench-first-")  # the jobs save here, not in models/
shutil.copytree(ROOT / "models" / "mnist-default", Path(os.environ["CNN_MODELS_DIR"]) / "mnist-default")

import numpy as np  # noqa: E402

from cnn.core.quiet import import_tensorflow  # noqa: E402

import_tensorflow()

from cnn.analysis.inference import predict_proba  # noqa: E402
from cnn.data.load import load_dataset  # noqa: E402
from cnn.model.spec import preset  # noqa: E402
from cnn.run.jobs import TrainingJob  # noqa: E402
from cnn.run.worker import WORKERS, ProcessTrainingJob  # noqa: E402
from cnn.store.registry import load_model  # noqa: E402
from tests import ood_images  # noqa: E402
from tests.real_digits import read_all  # noqa: E402

GOAL_SECONDS = 15.0
GOAL_DRAWN = 0.90


def drawn_digits(n: int, seed: int = 0):
    """`n` MNIST test digits (full MNIST's if present, else the sample's) re-drawn as canvas strokes."""
    data = load_dataset("mnist")  # the sample stands in without full MNIST: its test digits are test digits too
    rng = np.random.default_rng([seed, 24])
    pick = rng.choice(data.num_test, n, replace=False)
    read = read_all([ood_images.redrawn_mnist(data.x_test[i].reshape(28, 28), rng) for i in pick])
    return read.inputs, data.y_test[pick][read.kept]  # none is refused as blank (bench/real_inputs.py checks)


def accuracy(model, x, y) -> float:
    return float(np.mean(predict_proba(model, x).argmax(1) == y))


def run_job(kind, spec, dataset, name: str):
    """(seconds from start() to the saved model, the job's final message, the saved model's name)."""
    start = time.perf_counter()
    job = kind(spec, dataset, name).start()
    while job.snapshot().running:
        time.sleep(0.05)
    seconds = time.perf_counter() - start
    snap = job.snapshot()
    if snap.model_name is None:
        raise SystemExit(f"the training did not save a model: {snap.message}")
    return seconds, snap.message, snap.model_name


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="trainings per path (medians are printed)")
    parser.add_argument("--drawn", type=int, default=500, help="drawn digits to read")
    args = parser.parse_args()
    sample = load_dataset("mnist-sample")
    spec = preset("default", sample.input_shape, sample.num_classes)
    cfg = spec.train
    print(f"{sample.name}: {sample.num_train:,} train / {sample.num_test:,} test images; preset 'default': "
          f"{cfg.epochs} epochs, batch {cfg.batch_size}, peak rate {cfg.learning_rate:g}, validation "
          f"{cfg.validation_split:.0%}; {os.cpu_count()} CPU cores")
    x_drawn, y_drawn = drawn_digits(args.drawn)
    shipped = accuracy(load_model("mnist-default"), x_drawn, y_drawn)

    results = {}
    for label, kind in (("local", TrainingJob), ("hosted", ProcessTrainingJob)):
        runs = []
        for i in range(args.runs):
            if kind is ProcessTrainingJob:
                WORKERS.close_idle(everything=True)  # a cold worker: spawn + TensorFlow import, every run
            seconds, message, name = run_job(kind, spec, sample, f"first-{label}-{i}")
            model = load_model(name)
            runs.append((seconds, accuracy(model, sample.x_test, sample.y_test), accuracy(model, x_drawn, y_drawn)))
            print(f"  {label} run {i + 1}: {seconds:.1f} s — {message}")
        results[label] = runs
    WORKERS.close_idle(everything=True)

    ok = True
    for label, runs in results.items():
        seconds = statistics.median(r[0] for r in runs)
        test = statistics.median(r[1] for r in runs)
        drawn = statistics.median(r[2] for r in runs)
        ok &= seconds <= GOAL_SECONDS and drawn >= GOAL_DRAWN
        print(f"{label}: press Train → saved model in {seconds:.1f} s median (max {max(r[0] for r in runs):.1f} s; "
              f"goal ≤ {GOAL_SECONDS:.0f} s); sample test accuracy {test:.1%}; drawn digits read {drawn:.1%} "
              f"(goal ≥ {GOAL_DRAWN:.0%}; models/mnist-default reads {shipped:.1%})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""What the network learned (cnn.explain and cnn.teach.hierarchy): costs measured as ratios within one run.

    python bench/features.py            # parts 1 and 2
    python bench/features.py --tsne     # also part 3 (several minutes)

1. Activation maximisation of every filter of every conv layer of the committed default model (and of its
   10 classes): the whole layer in one compiled batched ascent vs one filter at a time through the same
   compiled function (traced once beforehand for both). Median of interleaved rounds. Lower = faster.
2. The film of training: median epoch time of cnn.run.train.train() on the embedded sample (default preset)
   with the FilmRecorder callback vs without, interleaved rounds in ABBA order; epochs with host CPU steal above 5% are
   left out as in bench/train_speed.py (steal printed per epoch). Throughput ratio target ≥ 0.95. Also the
   one-off costs: the frame before training and writing film.npz.
3. (--tsne) t-SNE (scikit-learn) on 2,000 / 3,000 / 5,000 / 10,000 test points of the default model's
   penultimate features, and the share of its time spent before the iterations: the basis of
   cnn.explain.embedding.TSNE_SIZE and of its progress reports.

Timings on a shared machine are noisy: re-measure on a quiet one before quoting.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# train_speed sets CNN_MODELS_DIR to a temporary folder and imports TensorFlow quietly.
from train_speed import CLEAN_STEAL, Clock, EpochClock, median_epoch  # noqa: E402

import keras  # noqa: E402

from cnn.data.load import load_dataset  # noqa: E402
from cnn.explain.maximise import Ascent, maximise
from cnn.explain.film import film_probe, film_recorder_class
from cnn.explain.embedding import penultimate_features, project_tsne, stratified_sample
from cnn.analysis.inference import conv_layers  # noqa: E402
from cnn.model.spec import preset  # noqa: E402
from cnn.run.train import train  # noqa: E402


def load_default_model():
    return keras.saving.load_model(ROOT / "models" / "mnist-default" / "model.keras", compile=False,
                                   safe_mode=True)


def maximisation(rounds: int = 3) -> None:
    model = load_default_model()
    layers = [*conv_layers(model), "output"]
    ascent = Ascent()
    for layer in layers:
        maximise(model, layer, units=[0], ascent=Ascent(steps=1))  # trace once, outside the clock
    batched, single = {name: [] for name in layers}, {name: [] for name in layers}
    for _ in range(rounds):
        for layer in layers:
            with Clock() as clock:
                result = maximise(model, layer, ascent=ascent)
            batched[layer].append(clock.wall)
            with Clock() as clock:
                for unit in result.units:
                    maximise(model, layer, units=[unit], ascent=ascent)
            single[layer].append(clock.wall)
    print(f"1. activation maximisation, {ascent.steps} steps, default model, median of {rounds} rounds:")
    for layer in layers:
        count = len(maximise(model, layer, units=None, ascent=Ascent(steps=1)).units)
        b, s = statistics.median(batched[layer]), statistics.median(single[layer])
        print(f"   {layer}: {count} units batched {b:.2f} s, one at a time {s:.2f} s: ratio {b / s:.2f}")
    b = sum(statistics.median(v) for name, v in batched.items() if name != "output")
    s = sum(statistics.median(v) for name, v in single.items() if name != "output")
    print(f"   all filters of every conv layer: batched {b:.2f} s vs one at a time {s:.2f} s: "
          f"ratio {b / s:.2f} (lower = faster)")


EPOCHS = 4  # per run; epochs 2…EPOCHS are timed (the first includes tracing), as in bench/train_speed.py


class FilmCost(keras.callbacks.Callback):
    """Wall time of the film's own work: the frame before training and each epoch-end frame."""

    def __init__(self, film):
        super().__init__()
        self.film, self.seconds = film, []

    def set_model(self, model):
        super().set_model(model)
        self.film.set_model(model)

    def set_params(self, params):
        super().set_params(params)
        self.film.set_params(params)

    def on_train_begin(self, logs=None):
        start = time.perf_counter()
        self.film.on_train_begin(logs)
        self.seconds.append(time.perf_counter() - start)

    def on_epoch_begin(self, epoch, logs=None):
        self.film.on_epoch_begin(epoch, logs)

    def on_train_batch_end(self, batch, logs=None):
        self.film.on_train_batch_end(batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        start = time.perf_counter()
        self.film.on_epoch_end(epoch, logs)
        self.seconds.append(time.perf_counter() - start)


def film_cost(rounds: int = 3) -> None:
    data = load_dataset("mnist-sample")
    spec = preset("default")
    spec.train.epochs, spec.train.validation_split = EPOCHS, 0.0
    epochs = {"without film": [], "with film": []}
    frame_seconds, save_seconds, sizes = [], [], []
    for round_ in range(rounds):
        # ABBA order: whichever runs second in a round (warmer caches, a different neighbour load) alternates.
        for label in list(epochs)[::1 if round_ % 2 == 0 else -1]:
            timer = EpochClock()
            if label == "with film":
                # The film runs before the clock's epoch end, so its per-epoch frame is inside the timed epoch.
                cost = FilmCost(film_recorder_class()(*film_probe(data)))
                train(spec, data, callbacks=[cost, timer])
                frame_seconds += cost.seconds[1:]
                start = time.perf_counter()
                sizes.append(len(cost.film.to_bytes()))
                save_seconds.append(time.perf_counter() - start)
                first_frame = cost.seconds[0]
            else:
                train(spec, data, callbacks=[timer])
            epochs[label] += timer.epochs
    print(f"2. the film on {data.num_train:,} embedded-sample images, default preset, {rounds} rounds of "
          f"{EPOCHS} epochs (epochs 2–{EPOCHS} timed):")
    for label, clocks in epochs.items():
        clean = sum(c.steal <= CLEAN_STEAL for c in clocks)
        print(f"   {label}: median epoch {median_epoch(clocks, True):.3f} s on {clean}/{len(clocks)} epochs with "
              f"steal ≤ {CLEAN_STEAL:.0%} ({median_epoch(clocks, False):.3f} s on all; steal per epoch: "
              f"{', '.join(f'{c.steal:.0%}' for c in clocks)})")
    without, with_ = epochs["without film"], epochs["with film"]
    print(f"   throughput with film / without = {median_epoch(without, True) / median_epoch(with_, True):.3f} on "
          f"low-steal epochs, {median_epoch(without, False) / median_epoch(with_, False):.3f} on all (target ≥ 0.95)")
    work, epoch = statistics.median(frame_seconds), median_epoch(without, True)
    print(f"   the film's own work per epoch (timed inside the callback, so free of the run-to-run noise above): "
          f"median {work * 1000:.1f} ms, implying a throughput ratio epoch / (epoch + work) = "
          f"{epoch / (epoch + work):.3f}; once per run: the frame before training {first_frame * 1000:.0f} ms, "
          f"writing film.npz ({sizes[-1] / 1000:.0f} KB for {EPOCHS + 1} frames) "
          f"{statistics.median(save_seconds) * 1000:.0f} ms")


def tsne_times(sizes=(2000, 3000, 5000, 10000)) -> None:
    model = load_default_model()
    data = load_dataset("mnist")  # CNN_DATA_DIR/mnist.npz if set, else Keras's cache
    features, _ = penultimate_features(model, data.x_test)
    print(f"3. t-SNE (scikit-learn, 1,000 iterations) of the default model's {features.shape[1]}-wide penultimate "
          "features:")
    for size in sizes:
        keep = stratified_sample(data.y_test, size)
        marks = []
        with Clock() as clock:
            project_tsne(features[keep], on_progress=lambda f, m: marks.append((time.perf_counter(), m)))
        start = marks[0][0]
        before = next(t for t, m in marks if "neighbours found" in m) - start
        print(f"   {size:,} points: {clock.wall:.1f} s ({clock.cpu:.1f} CPU-s, steal {clock.steal:.0%}); finding "
              f"neighbours {before:.1f} s = {before / clock.wall:.1%} of it")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--tsne", action="store_true", help="also time t-SNE on 2,000–10,000 points")
    parser.add_argument("--only", choices=("maximise", "film", "tsne"), help="run one part only")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPU cores; Keras {keras.__version__}")
    if args.only in (None, "maximise"):
        maximisation(args.rounds)
    if args.only in (None, "film"):
        film_cost(args.rounds)
    if args.tsne or args.only == "tsne":
        tsne_times()


if __name__ == "__main__":
    main()

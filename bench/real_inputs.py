"""Real pictures, not our own: does the preprocessing read real digits at least as well as a plain resize?
(issue 21's benchmark — a measurement, not a timed test)

Families (tests/real_digits.py): MNIST *test* digits cropped tight, brought down to 8/12/16 px with 16 grey
levels and enlarged again, dilated to thick ink — each as it is, on light grey paper and as JPEG q30 —, the
UCI 8×8 digits that ship with scikit-learn (43 writers) and the families the tests already had (canvas
drawings re-drawn from MNIST test digits, photos, camera frames). Each picture goes through three recipes with
models/mnist-default:
  recipe    cnn.data.preprocess.prepare_image as Predict, the CLI and class-folder datasets use it ("mnist");
  resize    a plain resize to 28×28 (grayscale, auto-invert by the border, resize: the "resize" recipe);
  textbook  the textbook MNIST recipe: auto-invert, crop to the ink, fit 20×20, centre by mass in 28×28.
Printed per family: accuracy and share refused as blank for each, the recipe's lead over the resize, the
share the out-of-distribution check flags, how often the recipe fell back to the plain resize, and any
picture with visible ink (a channel spanning ≥ 10 grey levels) that was called blank.

    CNN_DATA_DIR=../shared/datasets python bench/real_inputs.py [--per-family 500] [--seed 1]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cnn.core.quiet import import_tensorflow  # noqa: E402

import_tensorflow()

from cnn.analysis import calibration as cal  # noqa: E402
from cnn.data.load import load_dataset  # noqa: E402
from cnn.store.registry import load_model, model_info  # noqa: E402
from tests import real_digits  # noqa: E402
from tests.real_digits import read_all  # noqa: E402

LEAD = 0.05  # the recipe must beat the plain resize by this much on every family…
ROOM = 0.95  # …where the plain resize reads less than this (above it, the recipe must simply not lose)
GOALS = {"tight crop": 0.97, "low-res 8×8": 0.90}  # family-name prefix → least accuracy of the recipe
OOD_GOAL = 0.10  # at most this share of real digits flagged as unusual


def extra_families(x_test, y_test, n: int, seed: int) -> dict:
    """The families the tests already had: canvas drawings, photos and camera frames of MNIST test digits."""
    from tests import ood_images
    from tests.engine.test_camera import camera_frame
    from tests.engine.test_photo import phone_photo

    x_test = x_test.reshape(-1, 28, 28)
    rng = np.random.default_rng([seed, 99])
    pick = rng.choice(len(y_test), 3 * n, replace=False)
    canvas, photo, camera = pick[:n], pick[n:2 * n], pick[2 * n:]
    return {
        "canvas (MNIST re-drawn as strokes)": ([ood_images.redrawn_mnist(x_test[i], rng) for i in canvas],
                                               y_test[canvas]),
        "photo (dark ink, uneven light)": ([phone_photo(x_test[i], seed=int(i)) for i in photo], y_test[photo]),
        "camera frame (pen on paper)": ([camera_frame(x_test[i], seed=int(i)) for i in camera], y_test[camera]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="mnist-default")
    parser.add_argument("--per-family", type=int, default=500, help="pictures per family")
    parser.add_argument("--seed", type=int, default=1, help="which test digits and transforms (tests use 0)")
    parser.add_argument("--only", nargs="*", help="family names (prefixes) to run")
    args = parser.parse_args()
    start = time.monotonic()

    info = model_info(args.model)
    model = load_model(args.model)
    calibration = cal.load_calibration(info)
    data = load_dataset("mnist")
    print(f"model {args.model}; digits from the MNIST test split ({data.source}), {args.per_family} per family\n")

    families = {}
    rng = np.random.default_rng(args.seed)
    for name in real_digits.FAMILIES:
        pick = rng.choice(len(data.y_test), args.per_family, replace=False)
        families[name] = (real_digits.make_family(name, data.x_test[pick], args.seed), data.y_test[pick])
    families[real_digits.UCI] = real_digits.uci_digits(min(args.per_family, 1797), args.seed)
    families.update(extra_families(data.x_test, data.y_test, args.per_family, args.seed))
    if args.only:
        families = {k: v for k, v in families.items() if any(k.startswith(p) for p in args.only)}

    header = f"{'family':44s}{'recipe':>16s}{'resize':>16s}{'textbook':>16s}{'lead':>7s}{'OOD':>7s}{'fell back':>10s}"
    print(header + "\n" + f"{'':44s}{'acc  blank':>16s}{'acc  blank':>16s}{'acc  blank':>16s}")
    failures, inked_blank = [], 0
    for name, (pictures, labels) in families.items():
        row, ours = {}, None
        for recipe in ("mnist", "resize", "textbook"):
            result = read_all(pictures, recipe)
            predicted = np.full(len(labels), -1)
            if result.kept.any():
                scored = cal.score_batch(model, calibration, result.inputs)
                predicted[result.kept] = scored.probabilities.argmax(axis=1)
                if recipe == "mnist":
                    ours = (result, scored)
            row[recipe] = (float(np.mean(predicted == labels)), float(np.mean(~result.kept)))
        result, scored = ours
        flagged = float(np.mean(scored.flagged)) if scored.flagged is not None else float("nan")
        inked_blank += int(result.inked_blank)
        lead = row["mnist"][0] - row["resize"][0]
        line = f"{name:44s}" + "".join(f"{a:9.1%}{b:7.1%}" for a, b in row.values())
        # Where the plain resize already reads ROOM or more, 5 points more do not exist: there it must not lose.
        roomy = row["resize"][0] < ROOM
        print(line + f"{lead * 100:+7.1f}{' ' if roomy else '*'}{flagged:7.1%}{np.mean(result.fell_back):10.1%}")
        if lead < (LEAD if roomy else 0.0):
            failures.append(f"{name}: recipe {row['mnist'][0]:.1%} is not {LEAD if roomy else 0:.0%} above "
                            f"resize {row['resize'][0]:.1%}")
        goal = next((g for prefix, g in GOALS.items() if name.startswith(prefix)), None)
        if goal is not None and row["mnist"][0] < goal:
            failures.append(f"{name}: recipe {row['mnist'][0]:.1%} < goal {goal:.0%}")
        if flagged > OOD_GOAL:
            failures.append(f"{name}: {flagged:.1%} flagged unusual > {OOD_GOAL:.0%}")
    if inked_blank:
        failures.append(f"{inked_blank} pictures with visible ink were called blank")
    print(f"\n* the plain resize reads ≥ {ROOM:.0%}: no room for a {LEAD:.0%} lead, the goal there is not to lose")
    print(f"{sum(len(v[1]) for v in families.values()):,} pictures in {time.monotonic() - start:.0f} s")
    print("every goal met" if not failures else "NOT MET:\n  " + "\n  ".join(failures))
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())

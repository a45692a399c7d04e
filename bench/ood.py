"""Does the default model know when it doesn't know? (issue 14's benchmark — a measurement, not a timed test)

On models/mnist-default with its committed calibration.json:
  1. non-digits flagged: the test families (tests/ood_images.NON_DIGITS: what the score was chosen with) and
     the held-out families (HELD_OUT: never used to choose or tune anything), per family;
  2. MNIST test digits flagged (goal ≤ 5%);
  3. digits drawn like the canvas flagged: hand-designed strokes (the tests' set) and, held out, MNIST test
     digits re-drawn as hard-edged canvas strokes (goal ≤ 10% each); typed digits are shown for information;
  4. ECE before/after the temperature on the MNIST test split (goal after ≤ 0.01);
  5. every candidate score (max softmax probability, energy, Mahalanobis on the penultimate or the early
     layer, and the sum the model uses), each with its own threshold at the 95th percentile of the model's
     validation images: AUROC against MNIST test digits and flag rates — why the sum.

Every canvas goes through cnn.data.preprocess.prepare_image exactly as the Predict page sends a drawing. Canvases
prepare_image refuses as blank are never predicted; they are counted as "refused" and left out of the shares.

    CNN_DATA_DIR=../shared/datasets python bench/ood.py [--per-family 150] [--seed 1]
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

from sklearn.metrics import roc_auc_score  # noqa: E402

from cnn.analysis import calibration as cal  # noqa: E402
from cnn.analysis import temperature  # noqa: E402
from cnn.data.load import load_dataset  # noqa: E402
from cnn.store.registry import load_model, model_info  # noqa: E402
from cnn.model.spec import ModelSpec  # noqa: E402
from cnn.data.splits import split_validation  # noqa: E402
from tests import ood_images as gen  # noqa: E402

GOALS = {"non-digits flagged": (">=", 0.90), "MNIST test digits flagged": ("<=", 0.05),
         "drawn digits flagged": ("<=", 0.10), "ECE after": ("<=", 0.01)}


def candidate_scores(calibration, features) -> dict:
    """Each candidate OOD score (higher = more unusual) for a batch's Features."""
    ood = calibration.ood
    raw = ood.raw_parts(features)
    scores = {"max softmax probability (−log p_max, calibrated)":
              -np.log(temperature.softmax(features.logits, calibration.temperature).max(axis=1)),
              "energy −logsumexp(logits)": raw["energy"],
              "Mahalanobis, penultimate layer": raw["penultimate"]}
    if "early" in raw:
        scores[f"Mahalanobis, early layer ({ood.early.layer} channel means)"] = raw["early"]
    scores["sum of z-scores (the model's OOD score)"] = ood.scores(features)
    return scores


def prepared_features(model, calibration, images):
    x, kept = gen.prepare_all(images)
    return calibration.features(model, x), kept


def share(mask) -> str:
    mask = np.asarray(mask)
    return f"{mask.mean():6.1%} ({int(mask.sum())}/{len(mask)})" if len(mask) else "   –"


def verdict(name: str, value: float) -> str:
    op, goal = GOALS[name]
    met = value >= goal if op == ">=" else value <= goal
    return f"goal {op} {goal:g}: {'met' if met else 'NOT MET'}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="mnist-default")
    parser.add_argument("--per-family", type=int, default=150, help="generated images per family")
    parser.add_argument("--seed", type=int, default=1, help="generator seed (the tests use other seeds)")
    args = parser.parse_args()
    start = time.monotonic()

    info = model_info(args.model)
    calibration = cal.load_calibration(info)
    if calibration is None:
        print(f"{args.model} has no calibration.json: run `python -m cnn calibrate {args.model}` first")
        return 2
    model = load_model(args.model)
    calibration.check_model(model)
    data = load_dataset(info.dataset)
    print(f"model {args.model}: temperature {calibration.temperature:.3f}, threshold {calibration.ood.threshold:.3f} "
          f"(flags {calibration.ood.flag_share:.0%} of its validation images); test split: {data.source}")

    # The validation images the calibration used: each candidate's threshold comes from them.
    spec = ModelSpec.from_dict(info.spec)
    _, (x_val, _) = split_validation(data.x_train, data.y_train, spec.train.validation_split, spec.train.seed)
    val = candidate_scores(calibration, calibration.features(model, x_val))
    thresholds = {k: float(np.quantile(v, 1 - calibration.ood.flag_share, method="higher")) for k, v in val.items()}
    ours = "sum of z-scores (the model's OOD score)"

    # In-distribution: MNIST test digits; calibration on them.
    test_features = calibration.features(model, data.x_test)
    test = candidate_scores(calibration, test_features)
    raw_p, cal_p = temperature.softmax(test_features.logits), temperature.softmax(test_features.logits, calibration.temperature)
    ece_before = temperature.expected_calibration_error(raw_p, data.y_test)
    ece_after = temperature.expected_calibration_error(cal_p, data.y_test)

    # Generated canvases, per family.
    n = args.per_family
    sets = {}
    for group, families in (("test families", gen.NON_DIGITS), ("held-out families", gen.HELD_OUT)):
        for offset, (family, draw) in enumerate(families.items()):
            rng = np.random.default_rng([args.seed, offset, len(group)])
            features, kept = prepared_features(model, calibration, [draw(rng) for _ in range(n)])
            sets[group, family] = (candidate_scores(calibration, features), kept)
    rng = np.random.default_rng([args.seed, 100])
    drawn, drawn_labels = gen.drawn_digits(10 * n, seed=args.seed + 1000)
    mnist_pick = rng.choice(len(data.y_test), 10 * n, replace=False)
    redrawn = [gen.redrawn_mnist(data.x_test[i], rng) for i in mnist_pick]
    typed_labels = np.arange(10 * n) % 10
    typed = [gen.typed_digit(rng, int(d)) for d in typed_labels]
    digit_sets = {}
    for name, images, labels in (("drawn digits (hand-designed strokes)", drawn, drawn_labels),
                                 ("drawn digits (MNIST test digits re-drawn, held out)", redrawn,
                                  data.y_test[mnist_pick]),
                                 ("typed digits (font, for information)", typed, typed_labels)):
        x, kept = gen.prepare_all(images)
        features = calibration.features(model, x)
        accuracy = float(np.mean(features.logits.argmax(axis=1) == np.asarray(labels)[kept]))
        digit_sets[name] = (candidate_scores(calibration, features), kept, accuracy)

    # Report 1: the model's score, per family and in total.
    print(f"\n{'':52s}flagged            refused as blank")
    rows = {}
    for (group, family), (scores, kept) in sets.items():
        flagged = scores[ours] > calibration.ood.threshold
        rows.setdefault(group, []).append(flagged)
        print(f"  non-digit {group[:-9]:9s} {family:30s} {share(flagged)}   {int((~kept).sum())}")
    totals = {group: np.concatenate(masks) for group, masks in rows.items()}
    everything = np.concatenate(list(totals.values()))
    test_flagged = test[ours] > calibration.ood.threshold
    print()
    for group, mask in totals.items():
        print(f"  non-digits, {group:38s}{share(mask)}   {verdict('non-digits flagged', mask.mean())}")
    print(f"  {'non-digits, all':50s}{share(everything)}   "
          f"{verdict('non-digits flagged', everything.mean())}")
    print(f"  {'MNIST test digits':50s}{share(test_flagged)}   "
          f"{verdict('MNIST test digits flagged', test_flagged.mean())}")
    for name, (scores, kept, accuracy) in digit_sets.items():
        flagged = scores[ours] > calibration.ood.threshold
        goal = "" if name.startswith("typed") else verdict("drawn digits flagged", flagged.mean())
        print(f"  {name:50s}{share(flagged)}   {goal}  (accuracy {accuracy:.1%}; {int((~kept).sum())} refused)")
    print(f"\n  ECE on the MNIST test split (15 bins): before {ece_before:.4f}, after {ece_after:.4f}   "
          f"{verdict('ECE after', ece_after)}")
    print(f"  test loss: before {temperature.nll(test_features.logits, data.y_test):.4f}, "
          f"after {temperature.nll(test_features.logits, data.y_test, calibration.temperature):.4f}")

    # Report 2: every candidate, so the choice can be checked.
    print("\nCandidates (threshold: 95th percentile of the validation images' scores). AUROC: non-digits vs MNIST "
          "test digits.")
    print(f"  {'score':58s}{'AUROC test':>11s}{'AUROC held':>11s}{'test fam':>9s}{'held fam':>9s}{'MNIST':>7s}"
          f"{'drawn':>7s}{'redrawn':>8s}")
    for key in val:
        per_group = {}
        for group in ("test families", "held-out families"):
            scores = np.concatenate([s[key] for (g, _), (s, _) in sets.items() if g == group])
            auroc = roc_auc_score(np.r_[np.zeros(len(test[key])), np.ones(len(scores))], np.r_[test[key], scores])
            per_group[group] = (auroc, float(np.mean(scores > thresholds[key])))
        drawn_rates = [float(np.mean(s[key] > thresholds[key])) for s, _, _ in list(digit_sets.values())[:2]]
        print(f"  {key:58s}{per_group['test families'][0]:11.3f}{per_group['held-out families'][0]:11.3f}"
              f"{per_group['test families'][1]:9.1%}{per_group['held-out families'][1]:9.1%}"
              f"{np.mean(test[key] > thresholds[key]):7.1%}{drawn_rates[0]:7.1%}{drawn_rates[1]:8.1%}")
    print(f"\n{10 * n * 3 + n * (len(gen.NON_DIGITS) + len(gen.HELD_OUT)):,} generated canvases; "
          f"{time.monotonic() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Knowing when it doesn't know: calibrated probabilities and an out-of-distribution ("OOD") score.

Softmax turns any ten scores into ten numbers that add up to 1, so a scribble can be "8 · 99.9%": the
probabilities say which digit an input is most like, never whether it is like a digit at all. Two fixes,
both fitted once per model and stored beside it in `calibration.json`:

1. Temperature scaling (Guo et al. 2017, "On Calibration of Modern Neural Networks"): probabilities are
   softmax(logits / T), with the one number T chosen to minimise the negative log-likelihood of the model's
   validation images. The predicted class never changes (dividing by T > 0 keeps the order); the confidence
   comes to mean what it says — of the images predicted at 90%, about 90% are right. The expected
   calibration error (ECE, equal-width bins) measures that before and after.

2. An OOD score: how unlike the training images an input is, as the sum of three z-scores (each part
   standardised by its own mean and spread over the training images), chosen by measurement (bench/ood.py):
     - penultimate: Mahalanobis distance of the features the classifier reads (the input of the Dense
       softmax head) to the nearest class mean, with one shared covariance (Lee et al. 2018);
     - early: the same for the first pooling block's per-channel mean activations — stroke and texture
       statistics (noise, dots, checkerboards are far from digits here even when the classifier is sure);
     - energy: −logsumexp(logits) (Liu et al. 2020), low when some class has strong evidence.
   On the default model (bench/ood.py) each part alone flags 43–80% of generated non-digits at its own
   threshold (max softmax probability: 62%), their sum 94% of the families it was chosen with and 93% of
   held-out ones (AUROC 0.99 against MNIST test digits), while 4.2% of MNIST test digits and 3.1% of digits
   drawn on the canvas are flagged. The parts fail on different inputs — the penultimate distance misses
   noise (the classifier's features of noise look ordinary), the early statistics miss scribbles (their
   strokes are digit-like), the energy misses rings and letters — which is why their sum works.
   The threshold is the (1 − FLAG_SHARE) quantile of the scores of the model's own validation images: by
   construction FLAG_SHARE (5%) of images like the training data are flagged.

Means, covariances and the parts' spreads come from the training split (a seeded sample of at most
MAX_FIT_IMAGES images); the temperature and the threshold from the validation split the run held out (for
streamed class-folder datasets, the held-out test split their training validated on).
"""
from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from cnn.analysis.checks import checked_field
from cnn.analysis.inference import as_batch, has_softmax_head
from cnn.analysis.ood import PARTS, Features, OodScore, Verdict, early_layer, extract_features, fit_class_gaussians
from cnn.analysis.temperature import TEMPERATURE_RANGE, expected_calibration_error, fit_temperature, nll, softmax
from cnn.core.compiled import batches
from cnn.core.errors import CalibrationError

FILE = "calibration.json"  # stored in the model's folder (registry.EXTRA_FILES)
VERSION = 1
FLAG_SHARE = 0.05  # the share of the model's own validation images the threshold flags
LOW_CONFIDENCE = 0.6  # a top probability below this is reported as the model being unsure
MAX_FIT_IMAGES = 20_000  # training images whose features give the class means and covariances
MIN_VALIDATION = 20  # held-out images the temperature and the threshold need at least
# ---------------------------------------------------------------------------
# The calibration of one model
# ---------------------------------------------------------------------------

@dataclass
class Calibration:
    """Everything calibration.json holds."""

    temperature: float  # probabilities = softmax(logits / temperature)
    ood: OodScore
    validation: dict  # images, accuracy, nll/ece before and after the temperature, on the validation images
    fitted_on: dict  # dataset, where the fit and validation images came from, how many
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    version: int = VERSION  # of the file format

    def to_json(self) -> str:
        return json.dumps({"version": self.version, "created": self.created, "temperature": self.temperature,
                           "validation": self.validation, "fitted_on": self.fitted_on, "ood": self.ood.to_dict()})

    @classmethod
    def from_json(cls, text) -> "Calibration":
        """Parse and check a calibration.json (it may come from an upload): CalibrationError naming the problem."""
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError, TypeError, RecursionError) as exc:
            raise CalibrationError(f"calibration.json is not valid JSON ({type(exc).__name__})") from None
        if not isinstance(data, dict):
            raise CalibrationError("calibration.json must hold an object")
        version = data.get("version")
        if version != VERSION:
            raise CalibrationError(f"calibration.json has format version {version!r}; this CNN Studio reads "
                                   f"version {VERSION}: run `python -m cnn calibrate NAME` to refit it")
        temperature = checked_field(data, "temperature", float)
        if not TEMPERATURE_RANGE[0] <= temperature <= TEMPERATURE_RANGE[1]:
            raise CalibrationError(f"temperature {temperature} is outside {TEMPERATURE_RANGE[0]}…"
                                   f"{TEMPERATURE_RANGE[1]}")
        return cls(temperature, OodScore.from_dict(data.get("ood")), checked_field(data, "validation", dict),
                   checked_field(data, "fitted_on", dict), str(data.get("created", "")), version)

    def check_model(self, model) -> None:
        """CalibrationError unless this calibration fits `model` (layers, feature widths, classes)."""
        classes = int(model.output_shape[-1])
        parts = [self.ood.penultimate] + ([self.ood.early] if self.ood.early is not None else [])
        if not has_softmax_head(model):
            raise CalibrationError("the model does not end in a Dense softmax layer, so its logits cannot be read")
        widths = {"penultimate": int(model.layers[-1].input.shape[-1])}
        if self.ood.early is not None:
            names = {l.name for l in model.layers}
            if self.ood.early.layer not in names:
                raise CalibrationError(f"the calibration uses layer {self.ood.early.layer!r}, which this model lacks")
            widths["early"] = int(model.get_layer(self.ood.early.layer).output.shape[-1])
        for part, gaussians in zip(("penultimate", "early"), parts):
            if gaussians.means.shape != (classes, widths[part]):
                raise CalibrationError(f"the calibration's {part} centres are {gaussians.means.shape[0]}×"
                                       f"{gaussians.means.shape[1]} but the model has {classes} classes × "
                                       f"{widths[part]} features: refit it with `python -m cnn calibrate`")

    def features(self, model, x, batch_size: int = 1000) -> Features:
        return extract_features(model, x, self.ood.early.layer if self.ood.early is not None else None, batch_size)


def _fit_features(model, fit, early, num_classes, max_images, seed, on_progress):
    """Features and labels of at most `max_images` training images: a seeded stratified-by-chance sample of an
    array split, or the first `max_images` of a stream."""
    if isinstance(fit, tuple):
        x_fit, y_fit = fit
        if len(y_fit) > max_images:
            keep = np.sort(np.random.default_rng(seed).choice(len(y_fit), max_images, replace=False))
            x_fit, y_fit = x_fit[keep], y_fit[keep]
        parts = [extract_features(model, chunk, early) for chunk in batches(x_fit, 2000, on_progress)]
        labels = np.asarray(y_fit, dtype=np.int64)
    else:
        parts, labels, done = [], [], 0
        for images, batch_labels in fit.batch(500).take(math.ceil(max_images / 500)):
            parts.append(extract_features(model, images.numpy(), early))
            labels.append(batch_labels.numpy())
            done += len(labels[-1])
            if on_progress is not None:
                on_progress(done, None)
        labels = np.concatenate(labels).astype(np.int64) if labels else np.zeros(0, np.int64)
    if not parts:
        raise CalibrationError("no training images to fit the class centres on")
    features = Features(np.concatenate([p.penultimate for p in parts]),
                        None if early is None else np.concatenate([p.early for p in parts]),
                        np.concatenate([p.logits for p in parts]))
    if labels.min() < 0 or labels.max() >= num_classes:
        raise CalibrationError(f"training labels must be 0…{num_classes - 1}, got {labels.min()}…{labels.max()}")
    return features, labels


def fit_calibration(model, fit, validation, flag_share: float = FLAG_SHARE, max_images: int = MAX_FIT_IMAGES,
                    seed: int = 0, fitted_on: dict | None = None, on_progress=None) -> Calibration:
    """Fit the temperature (on `validation`) and the OOD score (centres and spreads on `fit`, threshold on
    `validation`) for `model`.

    `fit` is (x, y) training arrays or a tf.data stream of (image, label); `validation` is (x, y) arrays the
    model did not train on. on_progress(done, total or None) reports the training images' features.
    """
    if not 0 < flag_share < 0.5:
        raise CalibrationError(f"the flagged share must be between 0 and 0.5, got {flag_share}")
    if not has_softmax_head(model):
        raise CalibrationError("calibration needs a model that ends in a Dense softmax layer")
    x_val, y_val = validation
    if len(y_val) < MIN_VALIDATION:
        raise CalibrationError(f"calibration needs at least {MIN_VALIDATION} held-out images, got {len(y_val)}")
    num_classes = int(model.output_shape[-1])
    early = early_layer(model)
    # Step 1: features of the training images → class centres, shared covariances, the parts' spreads.
    train_features, train_labels = _fit_features(model, fit, early, num_classes, max_images, seed, on_progress)
    penultimate = fit_class_gaussians(model.layers[-2].name, train_features.penultimate, train_labels, num_classes)
    gaussians_early = None if early is None else \
        fit_class_gaussians(early, train_features.early, train_labels, num_classes)
    unscaled = OodScore(penultimate, gaussians_early, {p: (0.0, 1.0) for p in PARTS if p != "early" or early},
                        math.inf, flag_share, np.array([0.0, 1.0]), {"p50": 0.0, "p95": 0.0, "p99": 0.0})
    raw = unscaled.raw_parts(train_features)
    scale = {}
    for part, values in raw.items():
        spread = float(np.std(values))
        if not spread > 1e-12:
            # A part that never varies (e.g. every logit equal) tells nothing: leave it out.
            continue
        scale[part] = (float(np.mean(values)), spread)
    if "penultimate" not in scale:
        raise CalibrationError("the penultimate features do not vary over the training images: the model has "
                               "not learned anything to calibrate")
    if "early" not in scale:
        gaussians_early = None
    distances = raw["penultimate"]
    typical = {f"p{q}": float(np.percentile(distances, q)) for q in (50, 95, 99)}
    ood = OodScore(penultimate, gaussians_early, scale, math.inf, flag_share, np.array([0.0, 1.0]), typical)
    # Step 2: the validation images → temperature, and the threshold that flags `flag_share` of them.
    val_features = extract_features(model, x_val, ood.early.layer if ood.early is not None else None)
    y_val = np.asarray(y_val, dtype=np.int64)
    temperature = fit_temperature(val_features.logits, y_val)
    val_scores = ood.scores(val_features)
    ood.threshold = float(np.quantile(val_scores, 1 - flag_share, method="higher"))
    ood.quantiles = np.quantile(val_scores, np.linspace(0, 1, 101))
    raw_probs, probs = softmax(val_features.logits), softmax(val_features.logits, temperature)
    validation_stats = {
        "images": int(len(y_val)),
        "accuracy": float(np.mean(probs.argmax(axis=1) == y_val)),
        "nll_before": nll(val_features.logits, y_val), "nll_after": nll(val_features.logits, y_val, temperature),
        "ece_before": expected_calibration_error(raw_probs, y_val),
        "ece_after": expected_calibration_error(probs, y_val),
        "flagged": float(np.mean(val_scores > ood.threshold)),
    }
    fitted = {"fit_images": int(len(train_labels)), "validation_images": int(len(y_val)), **(fitted_on or {})}
    return Calibration(temperature, ood, validation_stats, fitted)


# ---------------------------------------------------------------------------
# Using it: probabilities, scores and verdicts
# ---------------------------------------------------------------------------

@dataclass
class Scored:
    """A batch through a calibrated (or uncalibrated) model."""

    probabilities: np.ndarray  # (N, classes) softmax(logits / T): calibrated (raw when uncalibrated)
    raw_probabilities: np.ndarray  # (N, classes) softmax(logits): what the model's own output layer says
    logits: np.ndarray  # (N, classes)
    scores: np.ndarray | None  # (N,) OOD scores (None when uncalibrated)
    flagged: np.ndarray | None  # (N,) bool: score > threshold (None when uncalibrated)
    temperature: float  # 1.0 when uncalibrated
    threshold: float | None


def score_batch(model, calibration: Calibration | None, x, batch_size: int = 1000, on_progress=None) -> Scored:
    """Calibrated and raw probabilities and OOD scores of prepared images (N, H, W, C), in batched passes."""
    batch, _ = as_batch(model, x)
    early = calibration.ood.early.layer if calibration is not None and calibration.ood.early is not None else None
    parts = [extract_features(model, chunk, early, batch_size) for chunk in batches(batch, batch_size, on_progress)]
    if not parts:
        parts = [extract_features(model, batch, early)]
    features = Features(np.concatenate([p.penultimate for p in parts]),
                        None if early is None else np.concatenate([p.early for p in parts]),
                        np.concatenate([p.logits for p in parts]))
    raw = softmax(features.logits)
    if calibration is None:
        return Scored(raw, raw, features.logits, None, None, 1.0, None)
    scores = calibration.ood.scores(features)
    return Scored(softmax(features.logits, calibration.temperature), raw, features.logits, scores,
                  scores > calibration.ood.threshold, calibration.temperature, calibration.ood.threshold)


@dataclass
class Assessment:
    """One input: calibrated and raw probabilities, and the verdict (None when uncalibrated)."""

    probabilities: np.ndarray  # (classes,) calibrated
    raw_probabilities: np.ndarray  # (classes,) the output layer's softmax
    logits: np.ndarray  # (classes,)
    temperature: float
    verdict: Verdict | None


def features_from_activations(model, activations: dict, early: str | None) -> Features:
    """The OOD score's Features of ONE image from the activations `explain()` already computed (no second
    forward pass): penultimate = the head's input, early = channel means, logits = penultimate @ W + b."""
    penultimate = np.asarray(activations[model.layers[-2].name], dtype=np.float64).reshape(1, -1)
    kernel, bias = (np.asarray(w, dtype=np.float64) for w in model.layers[-1].get_weights())
    early_means = None
    if early is not None:
        maps = np.asarray(activations[early], dtype=np.float64)
        early_means = maps.reshape(-1, maps.shape[-1]).mean(axis=0)[None]
    return Features(penultimate, early_means, penultimate @ kernel + bias)


def assess(model, calibration: Calibration | None, x, activations: dict | None = None) -> Assessment:
    """Calibrated probabilities and the verdict for ONE prepared image (H, W, C). Pass the `activations` of
    cnn.analysis.inference.explain(model, x) to reuse its forward pass instead of running another."""
    batch, single = as_batch(model, x)
    if not single:
        raise ValueError("assess() takes one image (H, W, C); use score_batch for batches")
    early = calibration.ood.early.layer if calibration is not None and calibration.ood.early is not None else None
    if activations is not None and has_softmax_head(model):
        features = features_from_activations(model, activations, early)
    else:
        features = extract_features(model, batch, early)
    logits = features.logits[0]
    if calibration is None:
        raw = softmax(logits)
        return Assessment(raw, raw, logits, 1.0, None)
    ood = calibration.ood
    z = {p: float(v[0]) for p, v in ood.z_parts(features).items()}
    score = float(sum(z.values()))
    distance, nearest = ood.penultimate.nearest(features.penultimate)
    verdict = Verdict(score, ood.threshold, score > ood.threshold, ood.percentile(score), z, int(nearest[0]),
                      float(distance[0]), dict(ood.typical_distance))
    return Assessment(softmax(logits, calibration.temperature), softmax(logits), logits, calibration.temperature,
                      verdict)


# ---------------------------------------------------------------------------
# Stored with the model
# ---------------------------------------------------------------------------

def calibration_path(info) -> Path:
    return Path(info.path) / FILE


def load_calibration(info) -> Calibration | None:
    """The model's calibration, or None when it has none (uncalibrated). A damaged file is a
    CalibrationError saying how to refit it. Cached by the file's time, so a refit is picked up."""
    path = calibration_path(info)
    if not path.is_file():
        return None
    return _load_cached(str(path), path.stat().st_mtime)


@functools.lru_cache(maxsize=16)
def _load_cached(path: str, mtime: float) -> Calibration:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise CalibrationError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return Calibration.from_json(text)
    except CalibrationError as exc:
        raise CalibrationError(f"{path}: {exc}; run `python -m cnn calibrate {Path(path).parent.name}` to refit "
                               "it") from None


def calibration_summary(info) -> dict:
    """For the Models page and `models`: {'calibrated': bool, 'temperature', 'threshold', 'flag_share',
    'ece_before', 'ece_after', 'note'} — never raises for a damaged file (note says what is wrong)."""
    try:
        calibration = load_calibration(info)
    except CalibrationError as exc:
        return {"calibrated": False, "note": str(exc)}
    if calibration is None:
        why = info.metrics.get("calibration_note") if isinstance(getattr(info, "metrics", None), dict) else None
        return {"calibrated": False, "note": "uncalibrated: probabilities are the raw softmax and there is no "
                                             "out-of-distribution check; " + (
                                                 why if isinstance(why, str) and why else
                                                 f"run `python -m cnn calibrate {info.name}`")}
    return {"calibrated": True, "temperature": calibration.temperature, "threshold": calibration.ood.threshold,
            "flag_share": calibration.ood.flag_share, "ece_before": calibration.validation.get("ece_before"),
            "ece_after": calibration.validation.get("ece_after"),
            "note": f"temperature {calibration.temperature:.2f}; flags {calibration.ood.flag_share:.0%} of its "
                    f"validation images as unusual"}

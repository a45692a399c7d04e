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

from cnn.core.errors import CnnError

FILE = "calibration.json"  # stored in the model's folder (registry.EXTRA_FILES)
VERSION = 1
FLAG_SHARE = 0.05  # the share of the model's own validation images the threshold flags
BINS = 15  # equal-width confidence bins of the reliability diagram and the ECE (Guo et al. use 15)
MAX_FIT_IMAGES = 20_000  # training images whose features give the class means and covariances
MAX_FULL_COVARIANCE = 256  # wider features (e.g. a Flatten before the head) get a diagonal covariance: the file
#                            stays small (a 1600×1600 precision would be 30 MB of JSON) and the fit fast
TEMPERATURE_RANGE = (0.05, 20.0)  # the search interval of the temperature
PARTS = ("penultimate", "early", "energy")  # the OOD score's components, in display order
PART_TITLES = {
    "penultimate": "distance of its features to the nearest class centre (the layer the classifier reads)",
    "early": "distance of its stroke statistics (first block's channel means) to the nearest class's",
    "energy": "lack of evidence for any class (energy: −log Σ exp(logits))",
}


class CalibrationError(CnnError):
    """A calibration that cannot be fitted, read or applied to this model."""


# ---------------------------------------------------------------------------
# Temperature scaling
# ---------------------------------------------------------------------------

def softmax(logits, temperature: float = 1.0) -> np.ndarray:
    """softmax(logits / T) along the last axis, in float64 (the max is subtracted first: no overflow)."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def log_softmax(logits, temperature: float = 1.0) -> np.ndarray:
    from scipy.special import log_softmax as scipy_log_softmax

    return scipy_log_softmax(np.asarray(logits, dtype=np.float64) / float(temperature), axis=-1)


def nll(logits, labels, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood −log softmax(logits / T)[label] (the cross-entropy loss)."""
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) == 0:
        return float("nan")
    return float(-log_softmax(logits, temperature)[np.arange(len(labels)), labels].mean())


def fit_temperature(logits, labels) -> float:
    """The T > 0 that minimises nll(logits, labels, T) (Guo et al. 2017): a 1-D bounded search over log T."""
    from scipy.optimize import minimize_scalar

    logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels, dtype=np.int64)
    if len(labels) == 0:
        raise CalibrationError("cannot fit a temperature on 0 validation images")
    low, high = np.log(TEMPERATURE_RANGE)
    # log T: the loss is smooth in it, and T stays positive.
    result = minimize_scalar(lambda log_t: nll(logits, labels, math.exp(log_t)), bounds=(low, high),
                             method="bounded", options={"xatol": 1e-4})
    return float(math.exp(result.x))


# ---------------------------------------------------------------------------
# Calibration error and the reliability diagram
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Reliability:
    """Confidence vs accuracy in equal-width bins: what a reliability diagram draws."""

    edges: np.ndarray  # (bins + 1,) bin edges 0 … 1
    counts: np.ndarray  # (bins,) images whose confidence falls in each bin
    confidence: np.ndarray  # (bins,) mean confidence in each bin (NaN when empty)
    accuracy: np.ndarray  # (bins,) share predicted right in each bin (NaN when empty)
    ece: float  # Σ_b (n_b / N)·|accuracy_b − confidence_b|: expected calibration error

    @property
    def gaps(self) -> np.ndarray:
        """accuracy − confidence per bin: < 0 overconfident, > 0 underconfident (NaN when empty)."""
        return self.accuracy - self.confidence


def reliability(probabilities, labels, bins: int = BINS) -> Reliability:
    """Bin the top-class confidence into `bins` equal-width bins (right-closed: (a, b]; 0 goes to the first)."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if probabilities.ndim != 2 or len(probabilities) != len(labels):
        raise ValueError(f"probabilities must be (N, classes) with one label each, got {probabilities.shape} "
                         f"and {labels.shape}")
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    # Bin b holds confidences in (edges[b], edges[b+1]].
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(index, weights=confidence, minlength=bins) / counts
        mean_acc = np.bincount(index, weights=correct, minlength=bins) / counts
    total = max(len(labels), 1)
    ece = float(np.nansum(counts / total * np.abs(mean_acc - mean_conf))) if len(labels) else float("nan")
    return Reliability(edges, counts, mean_conf, mean_acc, ece)


def expected_calibration_error(probabilities, labels, bins: int = BINS) -> float:
    return reliability(probabilities, labels, bins).ece


# ---------------------------------------------------------------------------
# The OOD score's pieces
# ---------------------------------------------------------------------------

@dataclass
class ClassGaussians:
    """Class means with one shared covariance (its inverse, the precision): Mahalanobis distances to each class."""

    layer: str  # the layer whose output these are (channel means for feature maps)
    means: np.ndarray  # (classes, D)
    precision: np.ndarray  # (D, D) pseudo-inverse of the shared (Ledoit-Wolf shrunk) covariance; (D,) the
    #                        inverse variances when the covariance is diagonal (D > MAX_FULL_COVARIANCE)

    def squared_distances(self, features) -> np.ndarray:
        """(N, classes) squared Mahalanobis distances (f − μ_c)ᵀ Σ⁻¹ (f − μ_c)."""
        f = np.asarray(features, dtype=np.float64)
        # Expanded: fᵀPf − 2 fᵀPμ + μᵀPμ, one matrix product per term.
        fp = f * self.precision if self.precision.ndim == 1 else f @ self.precision
        mp = self.means * self.precision if self.precision.ndim == 1 else self.means @ self.precision
        quad_f = np.einsum("nd,nd->n", fp, f)
        quad_mu = np.einsum("cd,cd->c", mp, self.means)
        return np.maximum(quad_f[:, None] - 2 * fp @ self.means.T + quad_mu[None, :], 0.0)

    def nearest(self, features) -> tuple[np.ndarray, np.ndarray]:
        """(distance to the nearest class mean (N,), that class (N,)): distances, not squared."""
        d2 = self.squared_distances(features)
        return np.sqrt(d2.min(axis=1)), d2.argmin(axis=1)

    def to_dict(self) -> dict:
        return {"layer": self.layer, "means": _rounded(self.means), "precision": _rounded(self.precision)}

    @classmethod
    def from_dict(cls, data) -> "ClassGaussians":
        layer = _field(data, "layer", str)
        means = _matrix(_field(data, "means", list), f"{layer} means")
        rows = _field(data, "precision", list)
        diagonal = bool(rows) and not isinstance(rows[0], list)
        precision = _matrix([rows] if diagonal else rows, f"{layer} precision")
        precision = precision[0] if diagonal else precision
        width = means.shape[1]
        if precision.shape not in ((width,), (width, width)) or (diagonal and (precision < 0).any()):
            size = "×".join(map(str, precision.shape))
            raise CalibrationError(f"{layer} precision is {size} but its means have {width} features (expected "
                                   f"{width}×{width}, or {width} non-negative values for a diagonal one)")
        return cls(layer, means, precision)


def fit_class_gaussians(layer: str, features, labels, num_classes: int) -> ClassGaussians:
    """Class means and the inverse of one covariance shared by all classes (Lee et al. 2018), estimated with
    Ledoit-Wolf shrinkage on the class-centred features and inverted with a pseudo-inverse (stable even with
    dead ReLU units, whose variance is 0). Features wider than MAX_FULL_COVARIANCE get a diagonal one."""
    from sklearn.covariance import LedoitWolf

    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    present = np.bincount(labels, minlength=num_classes)
    if (present == 0).any():
        missing = ", ".join(str(c) for c in np.flatnonzero(present == 0))
        raise CalibrationError(f"cannot fit class centres: no training images of class(es) {missing}")
    means = np.stack([features[labels == c].mean(axis=0) for c in range(num_classes)])
    centred = features - means[labels]
    if features.shape[1] > MAX_FULL_COVARIANCE:
        # Per-feature variances; a unit that never varies (dead ReLU) gets weight 0, like the pseudo-inverse.
        variance = centred.var(axis=0)
        floor = 1e-6 * max(float(variance.max()), 1e-12)
        return ClassGaussians(layer, means, np.where(variance > floor, 1 / np.maximum(variance, floor), 0.0))
    covariance = LedoitWolf(assume_centered=True).fit(centred).covariance_
    return ClassGaussians(layer, means, np.linalg.pinv(covariance, hermitian=True))


def energy(logits, temperature: float = 1.0) -> np.ndarray:
    """−T·logsumexp(logits / T) per image (Liu et al. 2020): lower when some class has strong evidence."""
    from scipy.special import logsumexp

    return -temperature * logsumexp(np.asarray(logits, dtype=np.float64) / temperature, axis=-1)


def early_layer(model) -> str | None:
    """The OOD score's early layer: the first pooling layer after the first convolution, else the first
    convolution; None for a model without feature maps."""
    from cnn.analysis.inference import conv_layers, map_layers

    convs, maps = conv_layers(model), map_layers(model)
    if not convs:
        return None
    after = maps[maps.index(convs[0]):]
    pools = [n for n in after if "Pooling" in type(model.get_layer(n)).__name__]
    return pools[0] if pools else convs[0]


@dataclass
class Features:
    """What the OOD score needs from one forward pass."""

    penultimate: np.ndarray  # (N, D) the classifier head's input
    early: np.ndarray | None  # (N, C) channel means of the early layer (None without one)
    logits: np.ndarray  # (N, classes)


def extract_features(model, x, early: str | None, batch_size: int = 1000) -> Features:
    """Penultimate features, early channel means and logits of a batch, in batched compiled passes."""
    from cnn.analysis.inference import features_and_logits

    named, penultimate, logits = features_and_logits(model, x, layers=(early,) if early else (),
                                                     spatial_mean=True, batch_size=batch_size)
    return Features(penultimate.astype(np.float64), named[early].astype(np.float64) if early else None,
                    logits.astype(np.float64))


# ---------------------------------------------------------------------------
# The score and the verdict
# ---------------------------------------------------------------------------

@dataclass
class OodScore:
    """The fitted OOD score: parts, their training spreads, and the threshold."""

    penultimate: ClassGaussians
    early: ClassGaussians | None  # None for a model without feature maps
    scale: dict  # part → (mean, std) of the part's raw value over training images
    threshold: float  # scores above this are flagged
    flag_share: float  # the share of validation images above the threshold when it was set
    quantiles: np.ndarray  # (101,) validation scores at 0, 1, …, 100 percent: turns a score into a percentile
    typical_distance: dict  # 'p50', 'p95', 'p99' of training images' penultimate distance to their nearest centre

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(p for p in PARTS if p in self.scale)

    def raw_parts(self, features: Features) -> dict:
        """part → (N,) raw value: Mahalanobis distances (not squared) and the energy."""
        raw = {"penultimate": self.penultimate.nearest(features.penultimate)[0]}
        if self.early is not None and features.early is not None:
            raw["early"] = self.early.nearest(features.early)[0]
        raw["energy"] = energy(features.logits)
        return {p: raw[p] for p in self.parts}

    def z_parts(self, features: Features) -> dict:
        """part → (N,) z-score: (raw − training mean) / training spread."""
        return {p: (v - self.scale[p][0]) / self.scale[p][1] for p, v in self.raw_parts(features).items()}

    def scores(self, features: Features) -> np.ndarray:
        """(N,) the OOD score: the sum of the parts' z-scores (higher = less like the training images)."""
        z = self.z_parts(features)
        return np.sum([z[p] for p in self.parts], axis=0)

    def percentile(self, score: float) -> float:
        """The share (0…1) of the model's validation images that scored lower than `score`."""
        return float(np.interp(score, self.quantiles, np.linspace(0, 1, len(self.quantiles))))

    def to_dict(self) -> dict:
        return {"method": "sum of z-scores: " + " + ".join(self.parts), "threshold": self.threshold,
                "flag_share": self.flag_share, "penultimate": self.penultimate.to_dict(),
                "early": self.early.to_dict() if self.early is not None else None,
                "scale": {p: [float(m), float(s)] for p, (m, s) in self.scale.items()},
                "validation_quantiles": _rounded(self.quantiles),
                "typical_distance": {k: float(v) for k, v in self.typical_distance.items()}}

    @classmethod
    def from_dict(cls, data) -> "OodScore":
        if not isinstance(data, dict):
            raise CalibrationError("'ood' must be an object")
        penultimate = ClassGaussians.from_dict(_field(data, "penultimate", dict))
        early = None if data.get("early") is None else ClassGaussians.from_dict(_field(data, "early", dict))
        scale_data = _field(data, "scale", dict)
        scale = {}
        for part in PARTS:
            if part in scale_data:
                pair = _matrix([scale_data[part]], f"scale of {part}")[0]
                if pair.shape != (2,) or not pair[1] > 0:
                    raise CalibrationError(f"scale of {part} must be [mean, positive spread], got {scale_data[part]}")
                scale[part] = (float(pair[0]), float(pair[1]))
        if "penultimate" not in scale or ("early" in scale) != (early is not None):
            raise CalibrationError("the OOD parts' scales do not match its layers")
        quantiles = _matrix([_field(data, "validation_quantiles", list)], "validation quantiles")[0]
        if len(quantiles) < 2 or np.any(np.diff(quantiles) < 0):
            raise CalibrationError("validation quantiles must be an increasing list")
        typical = _field(data, "typical_distance", dict)
        if set(typical) != {"p50", "p95", "p99"} or not all(_finite(v) for v in typical.values()):
            raise CalibrationError("typical_distance must hold finite p50, p95 and p99")
        threshold, share = _field(data, "threshold", float), _field(data, "flag_share", float)
        if not 0 < share < 1:
            raise CalibrationError(f"flag_share must be between 0 and 1, got {share}")
        return cls(penultimate, early, scale, threshold, share, quantiles, {k: float(v) for k, v in typical.items()})


@dataclass(frozen=True)
class Verdict:
    """Whether one input looks like the images the model was trained on."""

    score: float  # the OOD score: the sum of the parts' z-scores (higher = less like the training images)
    threshold: float  # above it the input is flagged
    flagged: bool  # score > threshold: "doesn't look like anything this model was trained on"
    percentile: float  # share (0…1) of the model's validation images that scored lower
    parts: dict  # part → z-score (they add up to `score`)
    nearest_class: int  # the class whose centre is nearest in penultimate feature space
    distance: float  # Mahalanobis distance of the features to that centre
    typical_distance: dict  # training images' distance to their nearest centre: p50, p95, p99

    @property
    def message(self) -> str:
        """One sentence for people."""
        from cnn.core.text import probability_text

        unusual = f"more unusual than {probability_text(self.percentile)} of the images it was checked on"
        if self.flagged:
            return f"This doesn't look like anything the model was trained on (score {self.score:.1f} > " \
                   f"threshold {self.threshold:.1f}: {unusual}); its prediction means little here."
        return f"This looks like the images the model was trained on (score {self.score:.1f} ≤ threshold " \
               f"{self.threshold:.1f})."


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
        temperature = _field(data, "temperature", float)
        if not TEMPERATURE_RANGE[0] <= temperature <= TEMPERATURE_RANGE[1]:
            raise CalibrationError(f"temperature {temperature} is outside {TEMPERATURE_RANGE[0]}…"
                                   f"{TEMPERATURE_RANGE[1]}")
        return cls(temperature, OodScore.from_dict(data.get("ood")), _field(data, "validation", dict),
                   _field(data, "fitted_on", dict), str(data.get("created", "")), version)

    def check_model(self, model) -> None:
        """CalibrationError unless this calibration fits `model` (layers, feature widths, classes)."""
        from cnn.analysis.inference import has_softmax_head

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


def _split_for(dataset, train_config):
    """((x_fit, y_fit) or a stream, (x_val, y_val), description) as the training run split `dataset`."""
    from cnn.run.train import split_validation

    if dataset.streamed:
        # Folder datasets stream their training images and validate on the held-out test split.
        return dataset.train_stream, (dataset.x_test, dataset.y_test), "held-out test split (the run's validation)"
    (x_fit, y_fit), val = split_validation(dataset.x_train, dataset.y_train, train_config.validation_split,
                                           train_config.seed)
    if val is None:
        raise CalibrationError("training used every training image (validation split 0), so no image is left to "
                               "fit the temperature and the threshold on: train with a validation split "
                               "(e.g. 0.05) to calibrate")
    return (x_fit, y_fit), val, f"{train_config.validation_split:.0%} validation split (seed {train_config.seed})"


def _fit_features(model, fit, early, num_classes, max_images, seed, on_progress):
    """Features and labels of at most `max_images` training images: a seeded stratified-by-chance sample of an
    array split, or the first `max_images` of a stream."""
    if isinstance(fit, tuple):
        x_fit, y_fit = fit
        if len(y_fit) > max_images:
            keep = np.sort(np.random.default_rng(seed).choice(len(y_fit), max_images, replace=False))
            x_fit, y_fit = x_fit[keep], y_fit[keep]
        parts, step = [], 2000
        for i in range(0, len(y_fit), step):
            parts.append(extract_features(model, x_fit[i:i + step], early))
            if on_progress is not None:
                on_progress(min(i + step, len(y_fit)), len(y_fit))
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
    from cnn.analysis.inference import has_softmax_head

    if not 0 < flag_share < 0.5:
        raise CalibrationError(f"the flagged share must be between 0 and 0.5, got {flag_share}")
    if not has_softmax_head(model):
        raise CalibrationError("calibration needs a model that ends in a Dense softmax layer")
    x_val, y_val = validation
    if len(y_val) < 20:
        raise CalibrationError(f"calibration needs at least 20 validation images, got {len(y_val)}")
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
    from cnn.analysis.inference import as_batch

    batch, _ = as_batch(model, x)
    early = calibration.ood.early.layer if calibration is not None and calibration.ood.early is not None else None
    parts = []
    for i in range(0, len(batch), batch_size):
        parts.append(extract_features(model, batch[i:i + batch_size], early, batch_size))
        if on_progress is not None:
            on_progress(min(i + batch_size, len(batch)), len(batch))
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
    from cnn.analysis.inference import as_batch, has_softmax_head

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
# Teaching: why softmax always sums to 1, and what the score measures instead (Learn page)
# ---------------------------------------------------------------------------

@dataclass
class SoftmaxLesson:
    """Softmax and the OOD score on one input, step by step, for the Learn page to draw."""

    class_names: list  # the model's classes
    logits: np.ndarray  # (classes,) the output layer's scores before softmax: any real numbers
    exponentials: np.ndarray  # (classes,) exp(logit − max logit): positive, the largest is 1
    total: float  # Σ exponentials: softmax divides by it, so the probabilities ALWAYS add up to 1
    probabilities: np.ndarray  # (classes,) exponentials / total
    shifted_probabilities: np.ndarray  # softmax(logits − 10): the same — softmax sees only differences
    temperature: float  # the model's fitted temperature (1.0 when uncalibrated)
    calibrated: np.ndarray  # (classes,) softmax(logits / temperature)
    distances: np.ndarray | None  # (classes,) Mahalanobis distance of its features to each class centre
    typical_distance: dict | None  # training images' distance to their nearest centre: p50, p95, p99
    verdict: Verdict | None  # None when the model is uncalibrated

    @property
    def top(self) -> int:
        return int(self.probabilities.argmax())

    @property
    def sums(self) -> tuple[float, float]:
        """(Σ probabilities, Σ calibrated): 1 and 1, whatever the input."""
        return float(self.probabilities.sum()), float(self.calibrated.sum())


def softmax_lesson(model, calibration: Calibration | None, x, class_names,
                   activations: dict | None = None) -> SoftmaxLesson:
    """Why "99.9%" says nothing about whether an input makes sense, on the user's own prepared image (H, W, C)
    (`activations` of explain() on it, if at hand, spare a forward pass)."""
    result = assess(model, calibration, x, activations)
    logits = np.asarray(result.logits, dtype=np.float64)
    exponentials = np.exp(logits - logits.max())
    distances = typical = None
    if calibration is not None:
        early = calibration.ood.early.layer if calibration.ood.early is not None else None
        features = features_from_activations(model, activations, early) if activations is not None else \
            calibration.features(model, np.asarray(x)[None])
        distances = np.sqrt(calibration.ood.penultimate.squared_distances(features.penultimate)[0])
        typical = dict(calibration.ood.typical_distance)
    return SoftmaxLesson([str(c) for c in class_names], logits, exponentials, float(exponentials.sum()),
                         exponentials / exponentials.sum(), softmax(logits - 10.0), result.temperature,
                         np.asarray(result.probabilities), distances, typical, result.verdict)


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
        return {"calibrated": False, "note": "uncalibrated: probabilities are the raw softmax and there is no "
                                             f"out-of-distribution check; run `python -m cnn calibrate {info.name}`"}
    return {"calibrated": True, "temperature": calibration.temperature, "threshold": calibration.ood.threshold,
            "flag_share": calibration.ood.flag_share, "ece_before": calibration.validation.get("ece_before"),
            "ece_after": calibration.validation.get("ece_after"),
            "note": f"temperature {calibration.temperature:.2f}; flags {calibration.ood.flag_share:.0%} of its "
                    f"validation images as unusual"}


def calibrate_model(name: str, dataset=None, flag_share: float = FLAG_SHARE, max_images: int = MAX_FIT_IMAGES,
                    on_progress=None) -> Calibration:
    """Fit a calibration for the saved model `name` and add calibration.json to its folder (atomically; the
    model file is untouched). `dataset` (a Dataset or a name) defaults to the one the model was trained on,
    split exactly as its spec's training config split it."""
    from cnn.data.datasets import Dataset, is_folder, load_dataset
    from cnn.store.registry import load_model, model_info, write_extra_file
    from cnn.model.spec import ModelSpec

    info = model_info(name)
    if not isinstance(dataset, Dataset):
        source = dataset or (info.metrics.get("dataset_source") if is_folder(info.dataset) else info.dataset)
        if source in (None, "", "?", "unknown"):
            raise CalibrationError(f"model {name!r} does not say which dataset it was trained on: give one "
                                   "(--dataset NAME)")
        dataset = load_dataset(source)
    if tuple(dataset.input_shape) != info.input_shape or dataset.num_classes != len(info.class_names):
        raise CalibrationError(f"model {name!r} takes {info.input_shape} images in {len(info.class_names)} "
                               f"classes but {dataset.name} has {dataset.input_shape} and {dataset.num_classes}")
    spec = ModelSpec.from_dict(info.spec)
    fit, validation, how = _split_for(dataset, spec.train)
    model = load_model(name)
    calibration = fit_calibration(model, fit, validation, flag_share, max_images, seed=spec.train.seed,
                                  fitted_on={"dataset": dataset.name, "source": dataset.source, "split": how},
                                  on_progress=on_progress)
    write_extra_file(name, FILE, calibration.to_json().encode())
    return calibration


def calibrate_if_possible(name: str, dataset=None, on_progress=None) -> tuple[Calibration | None, str]:
    """For a model that arrived without a calibration (an upload): fit one when its dataset can be had here,
    else leave it uncalibrated: (calibration, '') or (None, the reason, for people)."""
    try:
        return calibrate_model(name, dataset, on_progress=on_progress), ""
    except CnnError as exc:
        return None, f"uncalibrated (raw softmax, no out-of-distribution check): {exc}"


def calibrate_trained(model, spec, dataset, on_progress=None) -> tuple[Calibration | None, str]:
    """After a training run: (the calibration, '') — or (None, why not) when it cannot be fitted (e.g. no
    validation split), so the model is saved uncalibrated instead of failing."""
    try:
        fit, validation, how = _split_for(dataset, spec.train)
        return fit_calibration(model, fit, validation, seed=spec.train.seed, on_progress=on_progress,
                               fitted_on={"dataset": dataset.name, "source": dataset.source, "split": how}), ""
    except CalibrationError as exc:
        return None, str(exc)


# ---------------------------------------------------------------------------
# JSON helpers: every value from a file is checked
# ---------------------------------------------------------------------------

def _rounded(array) -> list:
    """Float32 precision is plenty and keeps the file small."""
    return np.asarray(array, dtype=np.float32).astype(float).round(8).tolist()


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _field(data: dict, key: str, kind):
    if not isinstance(data, dict) or key not in data:
        raise CalibrationError(f"missing {key!r}")
    value = data[key]
    if kind is float:
        if not _finite(value):
            raise CalibrationError(f"{key!r} must be a finite number, got {value!r}")
        return float(value)
    if not isinstance(value, kind):
        raise CalibrationError(f"{key!r} must be a {kind.__name__}, got {type(value).__name__}")
    return value


def _matrix(rows, what: str) -> np.ndarray:
    """A non-empty 2-D array of finite numbers from nested lists."""
    try:
        array = np.array(rows, dtype=np.float64)
    except (ValueError, TypeError):
        raise CalibrationError(f"{what} must be a rectangular table of numbers") from None
    if array.ndim != 2 or array.size == 0 or not np.isfinite(array).all():
        raise CalibrationError(f"{what} must be a non-empty rectangular table of finite numbers")
    if array.shape[1] > 4096:
        raise CalibrationError(f"{what} has {array.shape[1]} columns; at most 4096 are allowed")
    return array

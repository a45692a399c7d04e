"""The out-of-distribution score's pieces (class Gaussians of features, energy), the score and the verdict:
see cnn.analysis.calibration for why these three parts.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cnn.analysis.checks import checked_field, checked_matrix, finite, rounded
from cnn.analysis.inference import conv_layers, features_and_logits, map_layers
from cnn.core.errors import CalibrationError
from cnn.core.text import probability_text

MAX_FULL_COVARIANCE = 256  # wider features (e.g. a Flatten before the head) get a diagonal covariance: the file
#                            stays small (a 1600×1600 precision would be 30 MB of JSON) and the fit fast
PARTS = ("penultimate", "early", "energy")  # the OOD score's components, in display order
PART_TITLES = {
    "penultimate": "distance of its features to the nearest class centre (the layer the classifier reads)",
    "early": "distance of its stroke statistics (first block's channel means) to the nearest class's",
    "energy": "lack of evidence for any class (energy: −log Σ exp(logits))",
}

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
        return {"layer": self.layer, "means": rounded(self.means), "precision": rounded(self.precision)}

    @classmethod
    def from_dict(cls, data) -> "ClassGaussians":
        layer = checked_field(data, "layer", str)
        means = checked_matrix(checked_field(data, "means", list), f"{layer} means")
        rows = checked_field(data, "precision", list)
        diagonal = bool(rows) and not isinstance(rows[0], list)
        precision = checked_matrix([rows] if diagonal else rows, f"{layer} precision")
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
                "validation_quantiles": rounded(self.quantiles),
                "typical_distance": {k: float(v) for k, v in self.typical_distance.items()}}

    @classmethod
    def from_dict(cls, data) -> "OodScore":
        if not isinstance(data, dict):
            raise CalibrationError("'ood' must be an object")
        penultimate = ClassGaussians.from_dict(checked_field(data, "penultimate", dict))
        early = None if data.get("early") is None else ClassGaussians.from_dict(checked_field(data, "early", dict))
        scale_data = checked_field(data, "scale", dict)
        scale = {}
        for part in PARTS:
            if part in scale_data:
                pair = checked_matrix([scale_data[part]], f"scale of {part}")[0]
                if pair.shape != (2,) or not pair[1] > 0:
                    raise CalibrationError(f"scale of {part} must be [mean, positive spread], got {scale_data[part]}")
                scale[part] = (float(pair[0]), float(pair[1]))
        if "penultimate" not in scale or ("early" in scale) != (early is not None):
            raise CalibrationError("the OOD parts' scales do not match its layers")
        quantiles = checked_matrix([checked_field(data, "validation_quantiles", list)], "validation quantiles")[0]
        if len(quantiles) < 2 or np.any(np.diff(quantiles) < 0):
            raise CalibrationError("validation quantiles must be an increasing list")
        typical = checked_field(data, "typical_distance", dict)
        if set(typical) != {"p50", "p95", "p99"} or not all(finite(v) for v in typical.values()):
            raise CalibrationError("typical_distance must hold finite p50, p95 and p99")
        threshold, share = checked_field(data, "threshold", float), checked_field(data, "flag_share", float)
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
        unusual = f"more unusual than {probability_text(self.percentile)} of the images it was checked on"
        if self.flagged:
            return f"This doesn't look like anything the model was trained on (score {self.score:.1f} > " \
                   f"threshold {self.threshold:.1f}: {unusual}); its prediction means little here."
        return f"This looks like the images the model was trained on (score {self.score:.1f} ≤ threshold " \
               f"{self.threshold:.1f})."

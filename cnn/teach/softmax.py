"""Teaching: why softmax always sums to 1, and what the out-of-distribution score measures instead (Learn).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cnn.analysis.calibration import Calibration, assess, features_from_activations
from cnn.analysis.ood import Verdict
from cnn.analysis.temperature import softmax

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

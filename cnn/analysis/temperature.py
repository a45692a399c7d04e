"""Temperature scaling (Guo et al. 2017): probabilities are softmax(logits / T), T chosen to minimise the
negative log-likelihood of held-out images; the expected calibration error and the reliability diagram's bins
measure it before and after.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cnn.core.errors import CalibrationError

BINS = 15  # equal-width confidence bins of the reliability diagram and the ECE (Guo et al. use 15)
TEMPERATURE_RANGE = (0.05, 20.0)  # the search interval of the temperature
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

"""Evaluation on a test split: accuracy, loss, confusion matrix, per-class metrics, per-image losses; with a
calibration (cnn.analysis.calibration), calibrated and raw probabilities, the reliability diagram and ECE before and
after the temperature, and each test image's out-of-distribution score."""
from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from cnn.analysis.calibration import calibration_path, score_batch
from cnn.analysis.inference import activations, conv_layers, predict_proba
from cnn.analysis.temperature import reliability
from cnn.core.compiled import batches


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    """(k, k) counts: rows = true class, columns = predicted class."""
    index = np.asarray(y_true, dtype=np.int64) * num_classes + np.asarray(y_pred, dtype=np.int64)
    return np.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


@dataclass
class Evaluation:
    class_names: list[str]
    y_true: np.ndarray  # (N,) true labels
    probabilities: np.ndarray  # (N, k) calibrated softmax(logits / T); the raw softmax when uncalibrated
    seconds: float  # wall time of the forward passes
    raw_probabilities: np.ndarray | None = None  # (N, k) the output layer's own softmax (None: uncalibrated)
    temperature: float = 1.0  # the calibration's temperature (1.0: uncalibrated)
    ood_scores: np.ndarray | None = None  # (N,) each image's OOD score (None: uncalibrated)
    ood_threshold: float | None = None  # scores above it are flagged (None: uncalibrated)

    @property
    def calibrated(self) -> bool:
        return self.raw_probabilities is not None

    @property
    def raw(self) -> np.ndarray:
        """The output layer's own softmax (the same as `probabilities` when uncalibrated)."""
        return self.probabilities if self.raw_probabilities is None else self.raw_probabilities

    @cached_property
    def raw_losses(self) -> np.ndarray:
        """Per-image cross-entropy of the raw softmax."""
        p = self.raw[np.arange(len(self.y_true)), self.y_true]
        return -np.log(np.clip(p, 1e-7, 1.0))

    @property
    def raw_loss(self) -> float:
        return float(self.raw_losses.mean()) if len(self.y_true) else float("nan")

    def reliability(self, calibrated: bool = True):
        """cnn.analysis.temperature.Reliability of the calibrated (or raw) probabilities: the reliability diagram."""
        return reliability(self.probabilities if calibrated else self.raw, self.y_true)

    @cached_property
    def ece_before(self) -> float:
        """Expected calibration error of the raw softmax."""
        return self.reliability(calibrated=False).ece

    @cached_property
    def ece_after(self) -> float:
        """Expected calibration error after temperature scaling (= ece_before when uncalibrated)."""
        return self.reliability(calibrated=True).ece

    @property
    def flagged(self) -> np.ndarray | None:
        """(N,) bool: images whose OOD score is above the threshold (None: uncalibrated)."""
        return None if self.ood_scores is None else self.ood_scores > self.ood_threshold

    @property
    def flagged_share(self) -> float | None:
        return None if self.ood_scores is None or not len(self.ood_scores) else float(self.flagged.mean())

    @cached_property
    def y_pred(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)

    @cached_property
    def confidence(self) -> np.ndarray:
        """Probability of the predicted class."""
        return self.probabilities.max(axis=1)

    @cached_property
    def losses(self) -> np.ndarray:
        """Per-image cross-entropy −log p(true class), clipped like Keras (ε = 1e-7)."""
        p = self.probabilities[np.arange(len(self.y_true)), self.y_true]
        return -np.log(np.clip(p, 1e-7, 1.0))

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.y_pred == self.y_true)) if len(self.y_true) else float("nan")

    @property
    def loss(self) -> float:
        return float(self.losses.mean()) if len(self.y_true) else float("nan")

    @cached_property
    def confusion(self) -> np.ndarray:
        return confusion_matrix(self.y_true, self.y_pred, len(self.class_names))

    def cell(self, true: int, predicted: int) -> np.ndarray:
        """Indices of test images of class `true` predicted as `predicted`, most confident first."""
        indices = np.flatnonzero((self.y_true == true) & (self.y_pred == predicted))
        return indices[np.argsort(-self.confidence[indices], kind="stable")]

    def misclassified(self) -> np.ndarray:
        """Indices of wrong predictions, most confident first."""
        wrong = np.flatnonzero(self.y_pred != self.y_true)
        return wrong[np.argsort(-self.confidence[wrong], kind="stable")]

    def hardest(self, n: int = 20) -> np.ndarray:
        """Indices of the `n` highest-loss images."""
        return np.argsort(-self.losses, kind="stable")[:n]

    def per_class(self) -> list[dict]:
        """Precision, recall, F1 and support per class (scikit-learn's numbers)."""
        from sklearn.metrics import precision_recall_fscore_support

        k = len(self.class_names)
        p, r, f, s = precision_recall_fscore_support(self.y_true, self.y_pred, labels=list(range(k)),
                                                     zero_division=0)
        return [{"class": str(self.class_names[i]), "precision": float(p[i]), "recall": float(r[i]),
                 "f1": float(f[i]), "support": int(s[i])} for i in range(k)]

    def to_csv(self) -> str:
        """One row per image: index, true, predicted, confidence, then every class's probability (calibrated
        when the model is); calibrated models add raw_confidence, every raw_p_<class>, ood_score and unusual."""
        import csv
        import io

        out = io.StringIO()
        writer = csv.writer(out)
        header = ["index", "true", "predicted", "confidence", *[f"p_{c}" for c in self.class_names]]
        if self.calibrated:
            header += ["raw_confidence", *[f"raw_p_{c}" for c in self.class_names]]
        if self.ood_scores is not None:
            header += ["ood_score", "unusual"]
        writer.writerow(header)
        for i, (t, p, c, probs) in enumerate(zip(self.y_true, self.y_pred, self.confidence, self.probabilities)):
            row = [i, self.class_names[t], self.class_names[p], f"{c:.6f}", *[f"{v:.6f}" for v in probs]]
            if self.calibrated:
                raw = self.raw_probabilities[i]
                row += [f"{raw.max():.6f}", *[f"{v:.6f}" for v in raw]]
            if self.ood_scores is not None:
                row += [f"{self.ood_scores[i]:.4f}", "yes" if self.ood_scores[i] > self.ood_threshold else "no"]
            writer.writerow(row)
        return out.getvalue()

    def summary(self) -> dict:
        """JSON-ready: what metrics.json and `evaluate --json` report."""
        return {"test_accuracy": self.accuracy, "test_loss": self.loss, "num_test": int(len(self.y_true)),
                "class_names": [str(c) for c in self.class_names],
                "confusion_matrix": self.confusion.tolist(), "per_class": self.per_class(),
                "eval_seconds": round(self.seconds, 3), **self.calibration_summary()}

    def calibration_summary(self) -> dict:
        """JSON-ready calibration numbers: {'calibrated': False} for an uncalibrated model."""
        if not self.calibrated:
            return {"calibrated": False}
        return {"calibrated": True, "temperature": self.temperature, "test_loss_raw": self.raw_loss,
                "ece_before": self.ece_before, "ece_after": self.ece_after, "ood_threshold": self.ood_threshold,
                "ood_flagged_share": self.flagged_share}


def evaluate(model, x, y, class_names, batch_size: int = 1000, on_progress=None,
             calibration=None) -> Evaluation:
    """Batched forward passes over (x, y); on_progress(done, total) after each batch. With a
    cnn.analysis.calibration.Calibration: calibrated and raw probabilities and every image's OOD score."""
    start = time.monotonic()
    if calibration is not None:
        scored = score_batch(model, calibration, x, batch_size=batch_size, on_progress=on_progress)
        return Evaluation(list(class_names), np.asarray(y, dtype=np.int64), scored.probabilities,
                          time.monotonic() - start, scored.raw_probabilities, scored.temperature, scored.scores,
                          scored.threshold)
    parts = [predict_proba(model, chunk, batch_size=batch_size) for chunk in batches(x, batch_size, on_progress)]
    probs = np.concatenate(parts) if parts else np.zeros((0, len(class_names)), np.float32)
    return Evaluation(list(class_names), np.asarray(y, dtype=np.int64), probs, time.monotonic() - start)


# ---------------------------------------------------------------------------
# Dead filters: conv filters whose ReLU output is zero on (almost) every image
# ---------------------------------------------------------------------------

def filter_report(model, x, batch_size: int = 500, dead_share: float = 0.99) -> list[dict]:
    """Per conv layer: each filter's mean activation, the share of images on which it fires at all, and
    the share of filters that are dead (silent on ≥ `dead_share` of the images)."""
    names = conv_layers(model)
    fired = {n: 0 for n in names}
    total = {n: 0.0 for n in names}
    for chunk in batches(x, batch_size):
        acts = activations(model, chunk)
        for n in names:
            a = acts[n]  # (batch, H, W, filters)
            fired[n] = fired[n] + (a.max(axis=(1, 2)) > 0).sum(axis=0)
            total[n] = total[n] + a.mean(axis=(1, 2)).sum(axis=0)
    report = []
    for n in names:
        activation = getattr(model.get_layer(n).activation, "__name__", "?")
        active = np.asarray(fired[n]) / max(len(x), 1)
        dead = active <= 1 - dead_share
        report.append({"layer": n, "activation": activation, "filters": int(len(active)),
                       "dead": int(dead.sum()), "dead_share": float(dead.mean()) if len(active) else 0.0,
                       "active_share": active, "mean_activation": np.asarray(total[n]) / max(len(x), 1)})
    return report


# ---------------------------------------------------------------------------
# A small cache: evaluations keyed by model file time, so a retrained or replaced model is re-evaluated
# ---------------------------------------------------------------------------

class EvaluationCache:
    """Least-recently-used evaluations (and other per-model results) keyed by (model name, model.keras mtime,
    dataset, split or kind)."""

    def __init__(self, size: int = 8):
        import threading
        from collections import OrderedDict

        self.size, self._items, self._lock = size, OrderedDict(), threading.Lock()

    @staticmethod
    def key(info, dataset_name: str, split: str = "test") -> tuple:
        # calibration.json's time too: a refit calibration changes the probabilities and scores.
        path = calibration_path(info)
        # The folder, not the name: two workspaces may each have a model of one name.
        return str(info.path), info.mtime, path.stat().st_mtime if path.is_file() else None, dataset_name, split

    def get(self, key):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        return None

    def put(self, key, evaluation) -> None:
        with self._lock:
            self._items[key] = evaluation
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

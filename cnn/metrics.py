"""Evaluation on a test split: accuracy, loss, confusion matrix, per-class metrics, per-image losses."""
from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from cnn.inference import predict_proba


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    """(k, k) counts: rows = true class, columns = predicted class."""
    index = np.asarray(y_true, dtype=np.int64) * num_classes + np.asarray(y_pred, dtype=np.int64)
    return np.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


@dataclass
class Evaluation:
    class_names: list[str]
    y_true: np.ndarray  # (N,) true labels
    probabilities: np.ndarray  # (N, k) softmax outputs
    seconds: float  # wall time of the forward passes

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
        """Indices of test images of class `true` predicted as `predicted`."""
        return np.flatnonzero((self.y_true == true) & (self.y_pred == predicted))

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

    def summary(self) -> dict:
        """JSON-ready: what metrics.json and `evaluate --json` report."""
        return {"test_accuracy": self.accuracy, "test_loss": self.loss, "num_test": int(len(self.y_true)),
                "class_names": [str(c) for c in self.class_names],
                "confusion_matrix": self.confusion.tolist(), "per_class": self.per_class(),
                "eval_seconds": round(self.seconds, 3)}


def evaluate(model, x, y, class_names, batch_size: int = 1000, on_progress=None) -> Evaluation:
    """Batched forward passes over (x, y); on_progress(done, total) after each batch."""
    start = time.monotonic()
    parts = []
    for i in range(0, len(x), batch_size):
        parts.append(predict_proba(model, x[i:i + batch_size], batch_size=batch_size))
        if on_progress is not None:
            on_progress(min(i + batch_size, len(x)), len(x))
    probs = np.concatenate(parts) if parts else np.zeros((0, len(class_names)), np.float32)
    return Evaluation(list(class_names), np.asarray(y, dtype=np.int64), probs, time.monotonic() - start)

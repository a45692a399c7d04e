"""Predictions for files: each image vetted and prepared as Predict prepares it, then one batched, calibrated
pass (the CLI's `predict` and Predict's several-files table).
"""
from __future__ import annotations

import numpy as np

from cnn.analysis.calibration import score_batch
from cnn.core.errors import CnnError
from cnn.data.preprocess import prepare_image


def predict_images(model, images, input_shape, class_names, invert="auto", recipe=None,
                   calibration=None) -> list[dict]:
    """Top class and all probabilities for each (name, image) pair, in order, in one batched pass.

    `image` is anything prepare_image accepts (path, bytes, PIL image, array). A file that cannot be read
    gets a row with its `error` message and no prediction, so one bad file never hides the others.
    With a cnn.analysis.calibration.Calibration the probabilities are calibrated and each row also has
    raw_probabilities, raw_confidence, temperature, ood_score, ood_threshold and unusual (score > threshold);
    without one those are the raw softmax / None, and `calibrated` says which.
    """
    rows, prepared = [], []
    for name, image in images:
        try:
            prepared.append((len(rows), prepare_image(image, input_shape, invert=invert, recipe=recipe)))
            rows.append({"file": name, "error": None})
        except CnnError as exc:
            rows.append({"file": name, "error": str(exc)})
    if prepared:
        scored = score_batch(model, calibration, np.stack([x for _, x in prepared]))
        for j, (i, _) in enumerate(prepared):
            probs, raw = scored.probabilities[j], scored.raw_probabilities[j]
            top = int(probs.argmax())
            rows[i].update(prediction=str(class_names[top]), class_index=top, confidence=float(probs[top]),
                           probabilities={str(n): float(p) for n, p in zip(class_names, probs)},
                           calibrated=calibration is not None, temperature=float(scored.temperature),
                           raw_confidence=float(raw[top]),
                           raw_probabilities={str(n): float(p) for n, p in zip(class_names, raw)},
                           ood_score=None if scored.scores is None else float(scored.scores[j]),
                           ood_threshold=scored.threshold,
                           unusual=None if scored.flagged is None else bool(scored.flagged[j]))
    return rows

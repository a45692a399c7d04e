"""Predict-page speed: one drawn digit through the whole look-inside path, as a ratio to model.predict.

    python bench/predict_speed.py

Measured in one run on the committed default model: the warm median latency of
    prepare_image (canvas RGBA → 28×28×1) + probabilities + every layer's activations + Grad-CAM
(cnn.analysis.inference.explain: one compiled forward+backward pass) for a synthetic 280×280 canvas drawing, against
the warm median of ONE plain `model.predict` call on an already prepared image. Target ≤ 0.25.
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from cnn.core.quiet import import_tensorflow  # noqa: E402

import_tensorflow()
import keras  # noqa: E402

from cnn.analysis.inference import explain  # noqa: E402
from cnn.data.preprocess import prepare_image  # noqa: E402
from cnn.data.datasets import PROJECT_ROOT  # noqa: E402

REPEATS = 50


def canvas_drawing() -> np.ndarray:
    """A 280×280 RGBA 'canvas' with a white 7 drawn off-centre on transparent black, like st_canvas."""
    image = Image.new("RGBA", (280, 280), (0, 0, 0, 0))
    ImageDraw.Draw(image).line([(40, 50), (170, 50), (90, 230)], fill=(255, 255, 255, 255), width=22)
    return np.asarray(image)


def median_ms(fn, repeats: int = REPEATS) -> float:
    fn()  # warm: traces and caches
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    model = keras.saving.load_model(PROJECT_ROOT / "models" / "mnist-default" / "model.keras", safe_mode=True)
    drawing = canvas_drawing()
    x = prepare_image(drawing, (28, 28, 1))
    batch = x[None].astype("float32")

    reference = median_ms(lambda: model.predict(batch, verbose=0))
    prepare = median_ms(lambda: prepare_image(drawing, (28, 28, 1)))
    inside = median_ms(lambda: explain(model, x))
    total = median_ms(lambda: explain(model, prepare_image(drawing, (28, 28, 1))))
    result = explain(model, x)
    print(f"one model.predict call (reference): {reference:.2f} ms")
    print(f"prepare_image: {prepare:.2f} ms; explain (probabilities + {len(result.activations)} layers' "
          f"activations + Grad-CAM + saliency): {inside:.2f} ms")
    print(f"prepare + explain: {total:.2f} ms → ratio to model.predict = {total / reference:.3f} (target ≤ 0.25); "
          f"predicted {int(result.probabilities.argmax())} ({result.probabilities.max():.1%})")


if __name__ == "__main__":
    main()

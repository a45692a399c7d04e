"""Photo-like uploads: digits as dark ink on unevenly lit paper, noisy, tilted, JPEG-compressed —
the preprocessing plus the committed model must read them like a phone photo of a handwritten digit."""
import io

import numpy as np
import pytest
from PIL import Image, ImageFilter

from cnn.data.load import load_dataset
from cnn.analysis.inference import predict_proba
from cnn.data.preprocess import prepare_image


def phone_photo(digit: np.ndarray, seed: int) -> bytes:
    """A 28×28 MNIST digit as a 640×480 JPEG 'photo' of dark ink on grey paper with a shadow."""
    rng = np.random.default_rng(seed)
    ink = np.asarray(Image.fromarray(digit).resize((220, 220), Image.Resampling.BICUBIC), dtype=float) / 255
    h, w = 480, 640
    yy, xx = np.mgrid[0:h, 0:w]
    paper = 205 - 60 * (xx / w) * (yy / h) + rng.normal(0, 4, (h, w))  # lit top-left, shadow bottom-right
    top, left = rng.integers(60, 200), rng.integers(120, 360)
    page = paper.copy()
    region = page[top:top + 220, left:left + 220]
    page[top:top + 220, left:left + 220] = region * (1 - 0.8 * ink)  # ink darkens the paper
    image = Image.fromarray(np.clip(page, 0, 255).astype(np.uint8)).convert("RGB")
    image = image.rotate(float(rng.uniform(-8, 8)), resample=Image.Resampling.BILINEAR, fillcolor=(190, 190, 190))
    image = image.filter(ImageFilter.GaussianBlur(1.2))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=70)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def default_model(default_model_dir):
    import keras

    return keras.saving.load_model(default_model_dir / "model.keras", safe_mode=True)


def test_photos_of_handwritten_digits_are_read(default_model):
    data = load_dataset("mnist-sample", limit=(10, 30))  # 3 test digits of every class
    inputs = np.stack([prepare_image(phone_photo(x[..., 0], seed=i), (28, 28, 1))
                       for i, x in enumerate(data.x_test)])
    assert inputs[:, 0, 0, 0].max() == 0  # auto-inverted: the paper became black
    predicted = predict_proba(default_model, inputs).argmax(axis=1)
    accuracy = float(np.mean(predicted == data.y_test))
    assert accuracy >= 0.9, f"{accuracy:.0%} of 30 photo-like digits read correctly"


def test_without_the_recipe_photos_fail(default_model):
    """The recipe matters: the naive whole-image resize of the same photos mostly fails."""
    data = load_dataset("mnist-sample", limit=(10, 30))
    naive = np.stack([prepare_image(phone_photo(x[..., 0], seed=i), (28, 28, 1), recipe="resize")
                      for i, x in enumerate(data.x_test)])
    accuracy = float(np.mean(predict_proba(default_model, naive).argmax(axis=1) == data.y_test))
    assert accuracy < 0.6

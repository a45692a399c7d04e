"""The phone camera as an input: a frame from `st.camera_input` is a JPEG like an upload and goes through the
same `prepare_image`. These frames imitate what a phone camera sends for a digit written on paper — colour
cast, blue or black pen, vignetting, a desk showing at one edge, sensor noise, defocus, perspective, strong
JPEG compression, in landscape or portrait — and the committed model must read them."""
import io

import numpy as np
import pytest
from PIL import Image, ImageFilter

from cnn.data.load import load_dataset
from cnn.analysis.inference import predict_proba
from cnn.data.preprocess import prepare_image, preprocess_steps

PENS = {"blue ballpoint": (40, 60, 150), "black marker": (25, 25, 30), "pencil": (90, 90, 95)}


def camera_frame(digit: np.ndarray, seed: int, pen: str = "blue ballpoint", portrait: bool = False,
                 digit_height: float = 0.4, quality: int = 60) -> bytes:
    """A 28×28 MNIST digit written with `pen` on paper, as a 640×480 (or 480×640) phone camera JPEG."""
    rng = np.random.default_rng(seed)
    w, h = (480, 640) if portrait else (640, 480)
    # Paper under warm indoor light: tinted, brighter in the middle (vignetting), a shadow gradient.
    yy, xx = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    light = 1 - 0.35 * ((xx - 0.5) ** 2 + (yy - 0.5) ** 2) - 0.15 * rng.uniform() * xx
    tint = np.array([235, 222, 195]) * rng.uniform(0.85, 1.05)
    frame = light[..., None] * tint
    # A strip of dark desk along one edge: the paper does not quite fill the picture.
    edge = rng.integers(0, 4)
    strip = int(rng.integers(10, 40))
    desk = np.array([70, 50, 35])
    if edge == 0:
        frame[:strip] = desk
    elif edge == 1:
        frame[-strip:] = desk
    elif edge == 2:
        frame[:, :strip] = desk
    else:
        frame[:, -strip:] = desk
    # The digit: pen colour where the MNIST stroke is, at `digit_height` of the frame, off-centre.
    size = int(digit_height * h)
    ink = np.asarray(Image.fromarray(digit).resize((size, size), Image.Resampling.BICUBIC), dtype=float) / 255
    top = int(rng.integers(h // 8, h - size - h // 8))
    left = int(rng.integers(w // 8, w - size - w // 8))
    region = frame[top:top + size, left:left + size]
    pen_rgb = np.array(PENS[pen], dtype=float)
    frame[top:top + size, left:left + size] = region * (1 - 0.85 * ink[..., None]) + pen_rgb * 0.85 * ink[..., None]
    # Sensor noise per channel, then the lens: a slight perspective tilt and defocus.
    frame += rng.normal(0, 6, frame.shape)
    image = Image.fromarray(np.clip(frame, 0, 255).astype(np.uint8), "RGB")
    skew = rng.uniform(-0.04, 0.04)
    image = image.transform(image.size, Image.Transform.AFFINE, (1, skew, -skew * h / 2, skew / 2, 1, 0),
                            resample=Image.Resampling.BILINEAR, fillcolor=tuple(int(c) for c in tint * 0.8))
    image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.8, 1.8)))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def default_model(default_model_dir):
    import keras

    return keras.saving.load_model(default_model_dir / "model.keras", safe_mode=True)


@pytest.fixture(scope="module")
def digits():
    """3 test digits of every class from the embedded sample."""
    data = load_dataset("mnist-sample", limit=(10, 30))
    return data.x_test[..., 0], data.y_test


@pytest.mark.parametrize("pen, portrait, digit_height, quality", [
    ("blue ballpoint", False, 0.4, 60),
    ("black marker", True, 0.3, 50),
    ("pencil", False, 0.25, 70),
    ("blue ballpoint", True, 0.15, 40),  # held at arm's length, heavily compressed
])
def test_camera_frames_of_written_digits_are_read(default_model, digits, pen, portrait, digit_height, quality):
    images, labels = digits
    frames = [camera_frame(x, seed=i, pen=pen, portrait=portrait, digit_height=digit_height, quality=quality)
              for i, x in enumerate(images)]
    assert Image.open(io.BytesIO(frames[0])).size == ((480, 640) if portrait else (640, 480))
    inputs = np.stack([prepare_image(frame, (28, 28, 1)) for frame in frames])
    assert inputs[:, 0, 0, 0].max() == 0 and inputs.max() > 200  # paper → black, ink → bright
    predicted = predict_proba(default_model, inputs).argmax(axis=1)
    accuracy = float(np.mean(predicted == labels))
    assert accuracy >= 0.9, f"{accuracy:.0%} of 30 camera frames ({pen}) read correctly"


def test_a_camera_frame_walks_the_inspectors_steps(digits):
    """The Predict page shows the same preprocessing steps for a camera frame as for an upload."""
    images, _ = digits
    steps = preprocess_steps(camera_frame(images[0], seed=1), (28, 28, 1))
    assert [s.name for s in steps] == ["original", "grayscale", "invert", "contrast", "crop", "strokes", "scale", "centre"]
    assert steps[0].image.shape == (480, 640, 3) and "640×480" in steps[0].note
    assert "inverted: background was light" in steps[2].note
    assert steps[-1].image.shape == (28, 28)


def test_marks_along_the_edge_are_ignored_beside_real_ink(digits):
    images, _ = digits
    crop = next(s for s in preprocess_steps(camera_frame(images[0], seed=0), (28, 28, 1)) if s.name == "crop")
    assert "along the picture's edge" in crop.note
    assert crop.image.shape[0] < 300 and crop.image.shape[1] < 300  # the digit (~190 px), not the frame


def test_a_drawing_that_touches_the_edge_is_kept():
    """Only ink away from the edge makes edge marks ignorable: a stroke drawn to the canvas's edge stays."""
    canvas = np.zeros((280, 280), np.uint8)
    canvas[0:200, 130:150] = 255  # a '1' drawn from the very top
    canvas[150:160, 20:30] = 255  # and a small separate mark well inside (under 2% of the ink)
    crop = next(s for s in preprocess_steps(canvas, (28, 28, 1)) if s.name == "crop")
    assert "edge" not in crop.note and crop.image.shape[0] >= 200


def test_fake_camera_video_for_browser_tests(tmp_path, digits, default_model):
    """The video files a browser test feeds Chromium as its camera hold the frame, readable as a digit."""
    from tests.fake_camera import read_y4m, write_mjpeg, write_y4m

    images, labels = digits
    frame = np.asarray(Image.open(io.BytesIO(camera_frame(images[0], seed=5))).convert("RGB"))
    path = write_y4m(tmp_path / "digit.y4m", [frame] * 3)
    assert path.read_bytes().startswith(b"YUV4MPEG2 W640 H480 F10:1 Ip A1:1 C420jpeg\n")
    assert path.stat().st_size == len("YUV4MPEG2 W640 H480 F10:1 Ip A1:1 C420jpeg\n") + 3 * (6 + 640 * 480 * 3 // 2)
    played = read_y4m(path)
    assert len(played) == 3 and np.abs(played[0].astype(float) - frame).mean() < 3  # 4:2:0 chroma loses little
    probs = predict_proba(default_model, prepare_image(played[0], (28, 28, 1)))
    assert probs.argmax() == labels[0]
    assert write_mjpeg(tmp_path / "digit.mjpeg", [frame] * 2).read_bytes().count(b"\xff\xd8\xff") == 2
    with pytest.raises(ValueError, match="even H and W"):
        write_y4m(tmp_path / "odd.y4m", [frame[:479]])

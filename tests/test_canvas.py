"""Predict's canvas: what the browser sends is checked, never trusted (the picture and the strokes)."""
import base64
import io

import numpy as np
from PIL import Image

from app.canvas import MAX_POINTS, clean_strokes, decode_png


def data_url(image: Image.Image, fmt: str = "PNG") -> str:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return f"data:image/{fmt.lower()};base64," + base64.b64encode(buffer.getvalue()).decode()


def test_a_drawing_is_decoded_to_rgba_pixels():
    image = Image.new("RGB", (280, 280), "black")
    image.putpixel((140, 100), (255, 255, 255))
    pixels = decode_png(data_url(image), 280)
    assert pixels.shape == (280, 280, 4) and pixels.dtype == np.uint8
    assert pixels[100, 140].tolist() == [255, 255, 255, 255] and pixels[0, 0].tolist() == [0, 0, 0, 255]


def test_anything_else_is_no_drawing():
    assert decode_png(None, 280) is None
    assert decode_png(12, 280) is None
    assert decode_png(data_url(Image.new("RGB", (100, 100))), 280) is None  # not this canvas's size
    assert decode_png(data_url(Image.new("RGB", (5000, 5000))), 280) is None  # refused from its header
    assert decode_png(data_url(Image.new("RGB", (280, 280)), "JPEG"), 280) is None  # not a PNG data URL
    assert decode_png("data:image/png;base64,not base64!", 280) is None
    assert decode_png("data:image/png;base64," + base64.b64encode(b"GIF89a....").decode(), 280) is None
    assert decode_png("data:image/png;base64," + "A" * (5 * 2 ** 20), 280) is None  # far too long


def test_strokes_are_kept_only_in_the_canvas_shape():
    good = [{"w": 22, "p": [[10, 20], [30.5, 40]]}, {"w": 8, "p": [[1, 1]]}]
    assert clean_strokes(good) == [{"w": 22.0, "p": [[10.0, 20.0], [30.5, 40.0]]}, {"w": 8.0, "p": [[1.0, 1.0]]}]
    for bad in (None, "x", [1], [{"w": 22}], [{"w": "22", "p": []}], [{"w": 1e9, "p": []}],
                [{"w": 22, "p": [[1, 2, 3]]}], [{"w": 22, "p": [["a", 2]]}],
                [{"w": 22, "p": [[1, 2]] * (MAX_POINTS + 1)}]):
        assert clean_strokes(bad) == [], bad

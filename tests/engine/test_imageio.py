"""cnn.data.imageio: check_image_header (sizes from the header alone), one mode ladder, one source check.

Loading, vetting messages and pixel conversion through the recipes are covered in test_preprocess.py.
"""
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from cnn.core.errors import ImageError
from cnn.data.imageio import MAX_BYTES, MAX_PIXELS, check_image_header, convert_mode, load_image, shrink_image, to_array

pytestmark = pytest.mark.filterwarnings("error")


def encode(image, fmt="PNG", **options):
    """Image → file bytes."""
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def png_header(width, height, colour_type=0, depth=1):
    """A PNG that only claims its dimensions (header + empty data): nothing to decode."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


class ReadOnly:
    """A file-like object with only .read()."""

    def __init__(self, data):
        self._data = data

    def read(self, size=-1):
        return self._data if size < 0 else self._data[:size]


def test_header_gives_size_mode_and_format_from_every_source_kind(tmp_path):
    data = encode(Image.new("RGBA", (30, 20)))
    path = tmp_path / "a.png"
    path.write_bytes(data)
    with open(path, "rb") as handle:
        for source in (data, bytearray(data), memoryview(data), str(path), path, io.BytesIO(data), ReadOnly(data), handle):
            assert check_image_header(source) == (30, 20, "RGBA", "PNG"), type(source)
    assert check_image_header(encode(Image.new("RGB", (8, 9)), "JPEG")) == (8, 9, "RGB", "JPEG")
    assert check_image_header(encode(Image.new("I;16", (5, 4)))) == (5, 4, "I;16", "PNG")


def test_header_reads_no_pixels():
    # A huge image that has no pixel data at all, and a PNG cut off after its header: only decoding would fail.
    assert check_image_header(png_header(6000, 5000)) == (6000, 5000, "1", "PNG")
    png = encode(Image.effect_noise((200, 200), 64))
    cut = png[: len(png) // 3]
    assert check_image_header(cut) == (200, 200, "L", "PNG")
    with pytest.raises(ImageError, match="truncated or corrupt"):
        load_image(cut)


def test_header_limits_are_load_image_limits():
    # One byte / one pixel over the default limits fails both; at the limit both checks pass.
    assert check_image_header(png_header(8000, 5000))[:2] == (8000, 5000)  # exactly MAX_PIXELS
    assert 8000 * 5000 == MAX_PIXELS
    for check in (check_image_header, load_image):
        with pytest.raises(ImageError, match="8001×5000 pixels"):
            check(png_header(8001, 5000))
        with pytest.raises(ImageError, match=f"limit is {MAX_BYTES / 1e6:g} MB"):
            check(b"\x89PNG" + bytes(MAX_BYTES))


@pytest.mark.parametrize(
    "source, options, words",
    [
        (png_header(12000, 12000), {}, ["12000×12000 pixels", "144 megapixels", "limit is 40 megapixels"]),
        (png_header(300, 200), {"max_pixels": 50_000}, ["300×200 pixels", "0.06 megapixels", "limit is 0.05 megapixels"]),
        (png_header(100, 100, colour_type=6, depth=8), {"max_decoded_bytes": 30_000},
         ["100×100 pixels in mode RGBA", "0.04 MB once decoded", "limit is 0.03 MB"]),
        (png_header(100, 100, colour_type=0, depth=16), {"max_decoded_bytes": 10_000},
         ["100×100 pixels in mode I;16", "0.02 MB once decoded", "limit is 0.01 MB"]),
        (bytes(5000), {"max_bytes": 1000}, ["0.0 MB", "limit is 0.001 MB"]),
        (b"", {}, ["empty", "0 bytes"]),
        (b"hello, this is text\n", {}, ["text"]),
        (encode(Image.new("L", (32, 32)), "ICO"), {}, ["ICO", "not supported"]),
        (png_header(100_000, 100_000), {}, ["10000 megapixels", "downscale"]),
    ],
)
def test_header_refusals_name_the_numbers(source, options, words):
    with pytest.raises(ImageError) as caught:
        check_image_header(source, **options)
    message = str(caught.value)
    for word in words:
        assert word in message, message
    assert message.endswith(".") and "—" in message and caught.value.__cause__ is None


def test_decoded_size_defaults_to_four_bytes_per_pixel_at_the_pixel_limit():
    # RGBA at the pixel limit fits; the same limit passed explicitly, minus one byte, does not.
    header = png_header(200, 100, colour_type=6, depth=8)
    assert check_image_header(header, max_pixels=20_000) == (200, 100, "RGBA", "PNG")
    with pytest.raises(ImageError, match="once decoded"):
        check_image_header(header, max_pixels=20_000, max_decoded_bytes=4 * 20_000 - 1)


def test_missing_files_and_wrong_types():
    with pytest.raises(ImageError, match="no file"):
        check_image_header("/nonexistent/digit.png")
    with pytest.raises(TypeError):
        check_image_header(12345)
    with pytest.raises(TypeError, match="binary"):
        check_image_header(io.StringIO("text mode"))


@pytest.mark.parametrize(
    "mode, working",
    [("1", "L"), ("L", "L"), ("LA", "LA"), ("La", "LA"), ("P", "RGB"), ("PA", "RGBA"), ("RGB", "RGB"),
     ("RGBA", "RGBA"), ("RGBa", "RGBA"), ("RGBX", "RGB"), ("CMYK", "RGB"), ("YCbCr", "RGB"), ("I;16", "I"),
     ("I;16B", "I"), ("I", "I"), ("F", "F")],
)
def test_one_mode_ladder_for_reading_and_downsizing(mode, working):
    image = Image.new(mode, (40, 30))
    assert convert_mode(image).mode == working
    # Downsizing goes through the same ladder, so every mode that can be read can also be shrunk.
    small = shrink_image(image, (15, 20))
    assert small.mode == working and small.size == (20, 15)
    assert to_array(small).shape[:2] == (15, 20) and to_array(image).shape[:2] == (30, 40)


def test_palette_with_transparency_keeps_its_alpha():
    image = Image.new("P", (4, 4), 0)
    image.info["transparency"] = 0
    assert convert_mode(image).mode == "RGBA"


def test_to_array_rescales_16_bit_the_same_whatever_the_byte_order():
    values = np.array([[1000, 3000, 2000]], np.uint16)
    little = Image.fromarray(values)
    big = Image.frombytes("I;16B", (3, 1), values.astype(">u2").tobytes())
    assert to_array(little).tolist() == to_array(big).tolist() == [[0, 255, 127.5]]

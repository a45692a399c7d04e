"""cnn.data.imageio's loading, vetting and pixel conversion as the recipes use them, and cnn.data.preprocess:
every step of every recipe.

All images are synthesised here with PIL.ImageDraw and numpy; any warning fails a test (none may escape).
"""
import dataclasses
import functools
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageDraw

from cnn.core.errors import EmptyImageError, ImageError
from cnn.data.imageio import load_image, to_array
from cnn.data.preprocess import Step, default_recipe, is_blank, prepare_image, preprocess_steps

pytestmark = pytest.mark.filterwarnings("error")

MNIST = (28, 28, 1)


# ---------------------------------------------------------------------------
# Synthetic images
# ---------------------------------------------------------------------------

def draw_seven(size=280, origin=(20, 25), scale=1.0, width=14, mode="RGBA",
               ink=(255, 255, 255, 255), background=(0, 0, 0, 0)):
    """A canvas-like "7" (white on transparent by default), drawn off-centre in the top-left."""
    image = Image.new(mode, (size, size), background)
    x, y = origin
    points = [(x, y), (x + 90 * scale, y), (x + 40 * scale, y + 105 * scale)]
    ImageDraw.Draw(image).line(points, fill=ink, width=width, joint="curve")
    return image


def encode(image, fmt="PNG", **options):
    """Image → file bytes."""
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


@functools.lru_cache(maxsize=None)
def photo_bytes(seed=0, size=(400, 300), ink=60, shadow=False):
    """A phone-photo-like JPEG: dark-grey "7" on light grey paper, lit unevenly, with noise."""
    rng = np.random.default_rng(seed)
    width, height = size
    ys, xs = np.mgrid[0:height, 0:width]
    paper = 150 + 70 * xs / width + 20 * ys / height  # darker towards the left/top
    if shadow:  # a soft-edged shadow (a hand, a phone) over the left third
        paper = paper - 60 / (1 + np.exp((xs - 170) / 12))
    image = Image.fromarray(np.clip(paper + rng.normal(0, 4, paper.shape), 0, 255).astype(np.uint8))
    if ink is not None:
        ImageDraw.Draw(image).line([(150, 80), (250, 80), (190, 230)], fill=ink, width=12)
    return encode(image.convert("RGB"), "JPEG", quality=85)


def png_header(width, height):
    """A PNG that only claims huge dimensions (header + empty data): tests the pixel check without the pixels."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def centre_of_mass(pixels):
    """(row, col) centre of mass of a 2-D or (H, W, 1) array."""
    values = np.asarray(pixels, dtype=float).reshape(pixels.shape[:2])
    total = values.sum()
    rows, cols = values.sum(axis=1), values.sum(axis=0)
    return (rows @ np.arange(len(rows))) / total, (cols @ np.arange(len(cols))) / total


def ink_box(pixels, threshold=0):
    """(height, width) of the bounding box of pixels above threshold."""
    values = np.asarray(pixels).reshape(pixels.shape[:2])
    ys, xs = np.nonzero(values > threshold)
    return ys.max() - ys.min() + 1, xs.max() - xs.min() + 1


def step(steps, name):
    """The step called name."""
    return next(s for s in steps if s.name == name)


class FakeUpload(io.BytesIO):
    """Like Streamlit's UploadedFile: a BytesIO with a name, possibly already read."""

    name = "digit.png"


class ReadOnly:
    """A file-like object with only .read()."""

    def __init__(self, data):
        self._data = data

    def read(self, size=-1):
        return self._data if size < 0 else self._data[:size]


# ---------------------------------------------------------------------------
# load_image
# ---------------------------------------------------------------------------

def test_load_image_from_bytes_paths_and_files(tmp_path):
    data = encode(draw_seven())
    path = tmp_path / "seven.png"
    path.write_bytes(data)
    upload = FakeUpload(data)
    upload.read()  # position at the end, as after a previous read
    with open(path, "rb") as handle:
        sources = [data, bytearray(data), str(path), path, upload, ReadOnly(data), handle]
        for source in sources:
            image, notes = load_image(source)
            assert isinstance(image, Image.Image)
            assert image.size == (280, 280) and image.mode == "RGBA"
            assert notes == []


def test_exif_orientation_is_honoured():
    stored = Image.new("L", (20, 40), 0)  # portrait as stored, white block top-left
    stored.paste(255, (0, 0, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    image, notes = load_image(encode(stored, "JPEG", exif=exif, quality=95))
    assert image.size == (40, 20)  # landscape once upright
    pixels = np.asarray(image.convert("L"), dtype=float)
    assert pixels[:10, -10:].mean() > 200 and pixels[:10, :10].mean() < 50
    assert any("EXIF" in note for note in notes)


def test_animated_gif_uses_first_frame_with_note():
    frames = []
    for left in (2, 22, 42):
        frame = Image.new("L", (64, 32), 0)
        frame.paste(255, (left, 8, left + 16, 24))
        frames.append(frame.convert("P"))
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    image, notes = load_image(data)
    pixels = np.asarray(image.convert("L"), dtype=float)
    assert pixels[8:24, 2:18].mean() > 200 and pixels[8:24, 42:58].mean() < 50
    assert notes == ["animated GIF: used the first of 3 frames"]


def test_multipage_tiff_uses_first_page_with_note():
    pages = [Image.new("L", (16, 16), value) for value in (200, 10)]
    image, notes = load_image(encode(pages[0], "TIFF", save_all=True, append_images=pages[1:]))
    assert np.asarray(image).mean() == 200
    assert notes == ["multi-page TIFF: used the first of 2 pages"]


def _bad_file(kind, tmp_path):
    """(source, load_image kwargs, words the message must contain) for each kind of bad file."""
    png = encode(draw_seven(size=120))
    jpeg = photo_bytes()
    if kind == "empty":
        return b"", {}, ["empty", "0 bytes"]
    if kind == "random":
        return np.random.default_rng(1).bytes(2000), {}, ["not an image", "png, jpg, webp, bmp, gif or tiff"]
    if kind == "text":
        path = tmp_path / "notes.png"
        path.write_text("these are my notes, not a picture\n" * 20)
        return path, {}, ["text", "png, jpg, webp, bmp, gif or tiff"]
    if kind == "truncated_png":
        return png[: len(png) // 2], {}, ["PNG", "truncated or corrupt"]
    if kind == "truncated_jpeg":
        return jpeg[: len(jpeg) // 2], {}, ["JPEG", "truncated or corrupt"]
    if kind == "too_many_bytes":
        return png, {"max_bytes": 100}, [f"{len(png) / 1e6:.1f} MB", "limit is 0.0001 MB"]
    if kind == "too_many_bytes_path":
        path = tmp_path / "big.jpg"
        path.write_bytes(jpeg)
        return path, {"max_bytes": 1000}, ["MB", "limit is 0.001 MB"]
    if kind == "huge_dimensions":
        words = ["3000×2500 pixels", "7.5 megapixels", "limit is 5 megapixels", "downscale"]
        return encode(Image.new("1", (3000, 2500), 1)), {"max_pixels": 5_000_000}, words
    if kind == "huge_header":
        return png_header(12000, 12000), {}, ["12000×12000 pixels", "144 megapixels", "limit is 40 megapixels"]
    if kind == "decompression_bomb":
        return png_header(100_000, 100_000), {}, ["10000 megapixels", "downscale"]
    if kind == "unsupported_format":
        return encode(Image.new("L", (32, 32)), "ICO"), {}, ["ICO", "not supported", "png, jpg, webp, bmp, gif or tiff"]
    if kind == "svg":
        return b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', {}, ["SVG", "PNG"]
    if kind == "heic":
        return b"\x00\x00\x00\x18ftypheic" + bytes(200), {}, ["HEIC", "JPEG"]
    if kind == "missing":
        return tmp_path / "nope.png", {}, ["no file", "nope.png"]
    if kind == "folder":
        return tmp_path, {}, ["folder"]
    raise AssertionError(kind)


BAD_FILES = [
    "empty", "random", "text", "truncated_png", "truncated_jpeg", "too_many_bytes", "too_many_bytes_path",
    "huge_dimensions", "huge_header", "decompression_bomb", "unsupported_format", "svg", "heic", "missing", "folder",
]


@pytest.mark.parametrize("kind", BAD_FILES)
def test_bad_files_raise_image_error_with_a_helpful_message(kind, tmp_path):
    source, options, words = _bad_file(kind, tmp_path)
    with pytest.raises(ImageError) as caught:
        load_image(source, **options)
    message = str(caught.value)
    for word in words:
        assert word in message, message
    # One sentence: what was wrong — what to do.
    assert "\n" not in message and message.endswith(".") and "—" in message
    assert caught.value.__cause__ is None and "Traceback" not in message
    # The same error surfaces from the full pipeline (default limits).
    if not options:
        with pytest.raises(ImageError):
            prepare_image(source, MNIST)


def test_huge_image_within_a_raised_limit_loads():
    image, _ = load_image(encode(Image.new("1", (3000, 2500), 1)), max_pixels=8_000_000)
    assert image.size == (3000, 2500)


def test_wrong_source_types_are_type_errors():
    with pytest.raises(TypeError):
        load_image(12345)
    with pytest.raises(TypeError):
        prepare_image(object(), MNIST)
    with pytest.raises(TypeError, match="binary"):
        load_image(io.StringIO("text mode"))


# ---------------------------------------------------------------------------
# to_array: modes, arrays, transparency
# ---------------------------------------------------------------------------

def _glyph(size=64):
    """A boolean "T" glyph mask, off-centre, for mode tests."""
    mask = np.zeros((size, size), bool)
    mask[8:14, 6:40] = True
    mask[8:50, 20:26] = True
    return mask


def _image_in_mode(mode):
    """(image as saved/loaded or in memory, file format or None): the glyph in `mode`."""
    glyph = _glyph()
    light_ink = np.where(glyph, 255, 0).astype(np.uint8)  # white on black
    dark_ink = 255 - light_ink  # black on white
    if mode == "1":
        return Image.fromarray(dark_ink).convert("1"), "PNG"
    if mode == "L":
        return Image.fromarray(light_ink), "PNG"
    if mode == "LA":
        # Black ink on a transparent background.
        return Image.fromarray(np.dstack([np.zeros_like(light_ink), light_ink]), "LA"), "PNG"
    if mode == "P":
        return Image.fromarray(np.dstack([light_ink] * 3)).convert("P", palette=Image.Palette.ADAPTIVE, colors=4), "PNG"
    if mode == "P+transparency":
        image = Image.fromarray(np.where(glyph, 1, 0).astype(np.uint8), "L").convert("P")
        image.putpalette([255, 255, 255, 0, 0, 0])  # index 0 white (transparent), index 1 black ink
        image.info["transparency"] = 0
        return image, "PNG"
    if mode == "RGB":
        return Image.fromarray(np.dstack([dark_ink, dark_ink, np.full_like(dark_ink, 255)])), "PNG"  # blue ink on white
    if mode == "RGBA":
        return Image.fromarray(np.dstack([np.full_like(light_ink, 255)] * 3 + [light_ink])), "PNG"  # white on transparent
    if mode == "CMYK":
        return Image.fromarray(np.dstack([dark_ink] * 3)).convert("CMYK"), "TIFF"
    if mode == "I;16":
        return Image.fromarray(np.where(glyph, 60000, 1000).astype(np.uint16)), "PNG"
    if mode == "I":
        return Image.fromarray(np.where(glyph, 70000, -5000).astype(np.int32)), None
    if mode == "F":
        return Image.fromarray(np.where(glyph, 0.9, 0.1).astype(np.float32)), None
    raise AssertionError(mode)


MODES = ["1", "L", "LA", "P", "P+transparency", "RGB", "RGBA", "CMYK", "I;16", "I", "F"]

# What to_array makes of each mode's glyph: (channels, ink level, background level) of the channel mean.
# Transparency is composited against the ink (dark ink over white, light ink over black); 16/32-bit
# images are stretched from their own range; float images ≤ 1 are read as 0..1; RGB's blue ink is (0, 0, 255).
READ_AS = {
    "1": (1, 0, 255), "L": (1, 255, 0), "LA": (1, 0, 255), "P": (3, 255, 0), "P+transparency": (3, 0, 255),
    "RGB": (3, 85, 255), "RGBA": (3, 255, 0), "CMYK": (3, 0, 255), "I;16": (1, 255, 0), "I": (1, 255, 0),
    "F": (1, 229.5, 25.5),
}


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_loads_and_gives_a_sensible_result(mode):
    image, fmt = _image_in_mode(mode)
    source = encode(image, fmt) if fmt else image
    if fmt:
        loaded, _ = load_image(source)
        expected = mode.split("+")[0]
        # Some Pillow versions open 16-bit grayscale PNGs as "I" rather than "I;16".
        assert loaded.mode == expected or (expected == "I;16" and loaded.mode == "I"), loaded.mode
    else:
        loaded = image
    pixels = to_array(loaded)
    channels, ink, background = READ_AS[mode]
    assert pixels.dtype == np.float32 and pixels.shape == (64, 64) + ((3,) if channels == 3 else ())
    # Each mode's values are read on the right scale (to_array clips to 0..255, so a range check proves nothing).
    gray = pixels if pixels.ndim == 2 else pixels.mean(axis=2)
    glyph = _glyph()
    assert np.allclose(gray[glyph], ink, atol=1) and np.allclose(gray[~glyph], background, atol=1)
    # Ink and background differ strongly whatever the mode.
    assert abs(gray[glyph].mean() - gray[~glyph].mean()) > 100
    # Through the whole pipeline: bright ink on a black background, centred.
    result = prepare_image(source, MNIST)
    assert result.dtype == np.uint8 and result.shape == MNIST
    assert result.max() >= 200 and result[0].max() == 0 and result[:, 0].max() == 0
    cy, cx = centre_of_mass(result)
    assert abs(cy - 14) <= 1 and abs(cx - 14) <= 1


@pytest.mark.parametrize(
    "array, shape",
    [
        (np.zeros((5, 7), np.uint8), (5, 7)),
        (np.zeros((5, 7, 1), np.uint8), (5, 7)),
        (np.zeros((5, 7, 3), np.uint8), (5, 7, 3)),
        (np.zeros((5, 7, 4), np.uint8), (5, 7, 3)),
        (np.zeros((5, 7), bool), (5, 7)),
        ([[0, 128], [255, 3]], (2, 2)),
    ],
)
def test_to_array_accepts_array_shapes(array, shape):
    pixels = to_array(array)
    assert pixels.shape == shape and pixels.dtype == np.float32


def test_to_array_value_ranges():
    assert to_array(np.array([[0.0, 0.5, 1.0]])).tolist() == [[0, 127.5, 255]]  # floats ≤ 1 are 0..1
    assert to_array(np.array([[0.0, 100.0, 255.0]])).tolist() == [[0, 100, 255]]  # already 0..255
    assert to_array(np.array([[True, False]])).tolist() == [[255, 0]]
    assert to_array(np.array([[0, 1000, 2000]], np.uint16)).tolist() == [[0, 127.5, 255]]  # own range
    sixteen = Image.fromarray(np.array([[1000, 3000]], np.uint16))
    assert to_array(sixteen).tolist() == [[0, 255]]  # 16-bit image: its own range


@pytest.mark.parametrize(
    "array",
    [np.zeros((2, 3, 5)), np.zeros((4,)), np.zeros((0, 3)), np.zeros((1, 2, 2, 3)), np.array([[np.nan, 1.0]]), np.array([["a"]])],
)
def test_to_array_rejects_bad_arrays(array):
    with pytest.raises(ImageError):
        to_array(array)


def test_transparency_is_composited_against_the_ink():
    # Canvas: white strokes on fully transparent → white on black.
    canvas = to_array(draw_seven())
    assert canvas[0, 0] .tolist() == [0, 0, 0] and canvas[25, 60].tolist() == [255, 255, 255]
    # Transparent pixels carrying white RGB (some canvases do) change nothing.
    odd = np.asarray(draw_seven(background=(255, 255, 255, 0)))
    assert np.array_equal(to_array(odd), canvas)
    # Black ink on transparent → black on white (auto-invert later flips it).
    black_ink = to_array(draw_seven(ink=(0, 0, 0, 255)))
    assert black_ink[0, 0].tolist() == [255, 255, 255] and black_ink[25, 60].tolist() == [0, 0, 0]
    # Half-transparent white ink over black gives grey.
    half = np.zeros((4, 4, 4), np.uint8)
    half[1, 1] = (255, 255, 255, 128)
    assert 126 <= to_array(half)[1, 1, 0] <= 130


# ---------------------------------------------------------------------------
# Blank inputs
# ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    "blank",
    [
        np.zeros((280, 280, 4), np.uint8),  # empty transparent canvas
        np.dstack([np.zeros((280, 280, 3), np.uint8), np.full((280, 280), 255, np.uint8)]),  # opaque black canvas
        Image.new("RGB", (50, 40), "white"),
        np.full((28, 28), 0.5),
    ],
)
def test_blank_input_raises_empty_image_error(blank):
    assert is_blank(blank)
    with pytest.raises(EmptyImageError, match="Nothing to predict: the image is blank"):
        prepare_image(blank, MNIST)
    # The inspector still shows the steps, and says why.
    steps = preprocess_steps(blank, MNIST)
    assert "blank" in steps[0].note and steps[-1].image.shape == (28, 28)


def test_drawing_is_not_blank():
    assert not is_blank(draw_seven())
    assert not is_blank(np.asarray(draw_seven()))
    assert not is_blank(photo_bytes())


def test_photo_of_blank_paper_is_empty():
    with pytest.raises(EmptyImageError):
        prepare_image(photo_bytes(ink=None), MNIST)


# ---------------------------------------------------------------------------
# The mnist recipe, step by step
# ---------------------------------------------------------------------------

def test_off_centre_canvas_stroke_is_cropped_scaled_and_centred():
    result = prepare_image(np.asarray(draw_seven()), MNIST)
    assert result.dtype == np.uint8 and result.shape == MNIST
    cy, cx = centre_of_mass(result)
    assert abs(cy - 14) <= 1 and abs(cx - 14) <= 1
    assert max(ink_box(result)) == 20
    assert result.max() == 255 and result[0].max() == 0


def test_mnist_step_names_notes_and_images():
    steps = preprocess_steps(draw_seven(), MNIST)
    assert [s.name for s in steps] == ["original", "grayscale", "invert", "contrast", "crop", "strokes", "scale", "centre"]
    assert all(s.enabled for s in steps)
    assert steps[0].image.shape == (280, 280, 3) and "280×280 RGBA image" in steps[0].note
    for s in steps:
        assert isinstance(s, Step) and s.image.dtype == np.uint8 and s.note
        assert s.image.ndim == 2 or (s.image.ndim == 3 and s.image.shape[2] == 3)
    assert step(steps, "invert").note.startswith("not inverted: background already dark")
    # Crop hugs the stroke: the box of the drawing's pixels above the noise floor.
    crop = step(steps, "crop").image
    assert crop.shape == ink_box(np.asarray(draw_seven())[..., 3], threshold=38)
    assert max(step(steps, "scale").image.shape) == 20
    assert step(steps, "centre").image.shape == (28, 28)
    with pytest.raises(dataclasses.FrozenInstanceError):
        steps[0].name = "changed"


def test_contrast_leaves_a_clean_canvas_drawing_essentially_unchanged():
    steps = preprocess_steps(draw_seven(), MNIST)
    before = step(steps, "invert").image.astype(int)
    after = step(steps, "contrast").image.astype(int)
    kept = before >= 40  # only the faint antialiased rim (< 15% of 255) may be zeroed
    assert np.abs(after[kept] - before[kept]).max() <= 1
    assert after[~kept].max() <= 40


def test_photo_is_auto_inverted_and_cleaned():
    steps = preprocess_steps(photo_bytes(), MNIST)
    assert step(steps, "invert").note.startswith("inverted: background was light")
    contrast = step(steps, "contrast").image
    # Uneven grey paper becomes black; the ink becomes bright.
    assert np.median(contrast) == 0 and (contrast[:, :100] > 0).mean() < 0.001
    assert contrast[80, 200] >= 200
    result = prepare_image(photo_bytes(), MNIST)
    assert result.shape == MNIST and result.max() >= 230
    assert np.median(result) == 0 and result[:3].max() == 0 and result[:, :3].max() == 0
    cy, cx = centre_of_mass(result)
    assert abs(cy - 14) <= 1 and abs(cx - 14) <= 1
    assert max(ink_box(result)) == 20


def test_shadowed_photo_is_flattened():
    steps = preprocess_steps(photo_bytes(shadow=True), MNIST)
    contrast = step(steps, "contrast")
    assert "flattened uneven lighting" in contrast.note
    assert (contrast.image[:, :150] > 0).mean() < 0.001  # the shadow is gone
    crop = step(steps, "crop").image
    assert abs(crop.shape[0] - 162) <= 6 and abs(crop.shape[1] - 110) <= 6  # hugs the "7" only
    result = prepare_image(photo_bytes(shadow=True), MNIST)
    assert max(ink_box(result)) == 20 and result.max() >= 230


def test_dense_bold_canvas_drawing_is_not_flattened():
    image = Image.new("RGBA", (280, 280), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    for box in ((90, 30, 190, 130), (80, 125, 200, 250)):
        draw.ellipse(box, outline=(255, 255, 255, 255), width=40)
    steps = preprocess_steps(image, MNIST)
    before, after = step(steps, "invert").image, step(steps, "contrast").image
    assert "flattened" not in step(steps, "contrast").note
    assert np.array_equal(after[before >= 40], before[before >= 40])


def test_invert_false_override_leaves_the_photo_dark_on_light():
    steps = preprocess_steps(photo_bytes(), MNIST, invert=False)
    invert = step(steps, "invert")
    assert invert.note == "not inverted: forced by invert=False"
    assert np.array_equal(invert.image, step(steps, "grayscale").image)
    # With contrast off too, the light paper survives to the end (dark ink is not "ink" to crop).
    steps = preprocess_steps(photo_bytes(), MNIST, invert=False, disabled=("contrast",))
    assert np.median(step(steps, "scale").image) > 128
    assert prepare_image(photo_bytes(), MNIST, invert=False, disabled=("contrast",))[10:18, 10:18].min() > 128


def test_invert_true_is_forced_even_on_a_dark_background():
    steps = preprocess_steps(draw_seven(), MNIST, invert=True, disabled=("contrast",))
    invert = step(steps, "invert")
    assert invert.note == "inverted: forced by invert=True"
    assert np.array_equal(invert.image, 255 - step(steps, "grayscale").image)


def test_black_ink_on_transparent_is_inverted_to_match_the_canvas():
    black = prepare_image(draw_seven(ink=(0, 0, 0, 255)), MNIST)
    white = prepare_image(draw_seven(), MNIST)
    assert np.array_equal(black, white)


def test_crop_ignores_isolated_specks_but_keeps_separate_strokes():
    image = draw_seven()
    draw = ImageDraw.Draw(image)
    draw.ellipse((240, 240, 246, 246), fill=(255, 255, 255, 255))  # a stray dot, far away
    draw.line([(55, 75), (95, 75)], fill=(255, 255, 255, 255), width=10)  # a separate crossbar, near the stroke
    steps = preprocess_steps(image, MNIST)
    crop = step(steps, "crop")
    assert "ignored 1 isolated speck" in crop.note
    assert crop.image.shape[0] < 130 and crop.image.shape[1] < 130
    assert np.array_equal(prepare_image(image, MNIST)[..., 0], steps[-1].image)
    # A second, heavy stroke far away is part of the drawing, not a speck.
    ImageDraw.Draw(image).line([(200, 150), (200, 260)], fill=(255, 255, 255, 255), width=14)
    assert "speck" not in step(preprocess_steps(image, MNIST), "crop").note


@pytest.mark.parametrize("name", ["crop", "scale", "centre"])
def test_each_geometric_step_can_be_switched_off(name):
    default = prepare_image(draw_seven(), MNIST)
    steps = preprocess_steps(draw_seven(), MNIST, disabled=[name])
    switched = step(steps, name)
    assert not switched.enabled and "switched off" in switched.note
    assert np.array_equal(switched.image, steps[steps.index(switched) - 1].image)  # passed through
    result = prepare_image(draw_seven(), MNIST, disabled=[name])
    assert result.shape == MNIST and result.dtype == np.uint8
    assert not np.array_equal(result, default)


@pytest.mark.parametrize("name", ["invert", "contrast"])
def test_switching_off_invert_or_contrast_changes_a_photo(name):
    default = prepare_image(photo_bytes(), MNIST)
    disabled = [name, "contrast"] if name == "invert" else [name]  # without invert, contrast finds no ink
    result = prepare_image(photo_bytes(), MNIST, disabled=disabled)
    assert result.shape == MNIST and not np.array_equal(result, default)
    assert not step(preprocess_steps(photo_bytes(), MNIST, disabled=disabled), name).enabled


def test_without_crop_scale_centre_the_whole_image_is_resized():
    steps = preprocess_steps(draw_seven(), MNIST, disabled=("crop", "strokes", "scale", "centre"))
    assert steps[-1].name == "resize" and "whole 280×280" in steps[-1].note
    result = steps[-1].image
    assert result.shape == (28, 28)
    cy, cx = centre_of_mass(result)
    assert cy < 10 and cx < 10  # the naive way: the digit stays small, in the corner
    assert max(ink_box(result)) <= 14


def test_scale_off_still_fills_the_frame_without_margin():
    steps = preprocess_steps(draw_seven(), MNIST, disabled=("scale",))
    assert [s.name for s in steps][-2:] == ["centre", "resize"]
    assert max(ink_box(steps[-1].image, threshold=10)) >= 26


def test_centre_off_pads_the_scaled_image():
    steps = preprocess_steps(draw_seven(), MNIST, disabled=("centre",))
    assert steps[-1].name == "resize" and "padded" in steps[-1].note
    assert max(ink_box(steps[-1].image)) == 20


@pytest.mark.parametrize("shape, longest", [((56, 56, 1), 40), ((14, 14, 1), 10), ((28, 42, 1), 20)])
def test_other_grayscale_sizes_scale_the_recipe(shape, longest):
    result = prepare_image(draw_seven(), shape)
    assert result.shape == shape and result.dtype == np.uint8
    height, width = ink_box(result)
    assert max(height, width) == longest or (height == longest and width <= round(shape[1] * 20 / 28))
    cy, cx = centre_of_mass(result)
    assert abs(cy - shape[0] / 2) <= 1 and abs(cx - shape[1] / 2) <= 1


def test_grayscale_recipe_into_a_colour_model_repeats_the_channel():
    result = prepare_image(draw_seven(), (28, 28, 3), recipe="mnist")
    assert result.shape == (28, 28, 3)
    assert np.array_equal(result[..., 0], result[..., 2])


# ---------------------------------------------------------------------------
# The fit and resize recipes
# ---------------------------------------------------------------------------

def test_fit_recipe_fills_the_frame_and_centres_by_the_box():
    shirt = Image.new("L", (200, 160), 230)  # dark object on a light background
    ImageDraw.Draw(shirt).rectangle((20, 30, 99, 69), fill=40)  # 80×40, off-centre
    steps = preprocess_steps(shirt, MNIST, recipe="fit")
    assert [s.name for s in steps] == ["original", "grayscale", "invert", "crop", "scale", "centre"]
    result = prepare_image(shirt, MNIST, recipe="fit")
    assert ink_box(result, threshold=100) == (14, 28)
    assert result[7:21].min() >= 150 and result[:7].max() == 0 and result[21:].max() == 0


def test_resize_recipe_on_a_colour_image():
    rng = np.random.default_rng(3)
    photo = Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    steps = preprocess_steps(photo, (32, 32, 3))
    assert [s.name for s in steps] == ["original", "rgb", "crop", "resize"]
    assert step(steps, "crop").image.shape == (48, 48, 3)
    result = prepare_image(photo, (32, 32, 3))
    assert result.dtype == np.uint8 and result.shape == (32, 32, 3)
    stretched = prepare_image(photo, (32, 32, 3), disabled=("crop",))
    assert stretched.shape == (32, 32, 3) and not np.array_equal(stretched, result)
    # Colour is never auto-inverted, but invert=True applies.
    assert "invert" not in [s.name for s in steps]
    inverted = prepare_image(photo, (32, 32, 3), invert=True)
    assert np.abs(inverted.astype(int) - (255 - result.astype(int))).max() <= 1


def test_resize_recipe_repeats_a_grayscale_source_into_rgb():
    result = prepare_image(draw_seven(mode="L", ink=255, background=0), (32, 32, 3))
    assert result.shape == (32, 32, 3) and np.array_equal(result[..., 0], result[..., 1])


def test_large_images_are_downsized_first():
    big = np.zeros((1500, 1200), np.uint8)
    big[300:1200, 550:650] = 255
    steps = preprocess_steps(big, MNIST)
    assert steps[0].image.shape == (1024, 819) and "downsized to 819×1024" in steps[0].note
    assert prepare_image(big, MNIST).shape == MNIST


# ---------------------------------------------------------------------------
# API contract
# ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    "shape, options",
    [
        (MNIST, {}),
        (MNIST, {"invert": False, "disabled": ("contrast",)}),
        (MNIST, {"invert": True, "disabled": ("contrast",)}),
        (MNIST, {"disabled": ("crop", "scale", "centre")}),
        (MNIST, {"recipe": "fit"}),
        ((32, 32, 3), {}),
        ((32, 32, 1), {"recipe": "resize"}),
    ],
)
def test_prepare_image_equals_the_last_step(shape, options):
    for source in (draw_seven(), photo_bytes()):
        steps = preprocess_steps(source, shape, **options)
        result = prepare_image(source, shape, **options)
        assert result.shape == shape and result.dtype == np.uint8
        assert np.array_equal(result, steps[-1].image.reshape(shape))
        assert result.flags.writeable


def test_prepare_image_accepts_every_source_kind(tmp_path):
    image = draw_seven()
    data = encode(image)
    path = tmp_path / "seven.png"
    path.write_bytes(data)
    expected = prepare_image(image, MNIST)
    sources = [data, str(path), path, FakeUpload(data), ReadOnly(data), np.asarray(image)]
    for source in sources:
        assert np.array_equal(prepare_image(source, MNIST), expected), type(source)
    small = np.asarray(draw_seven(size=70, origin=(5, 6), scale=0.25, width=4))
    assert np.array_equal(prepare_image(small.tolist(), MNIST), prepare_image(small, MNIST))
    assert prepare_image(image, (28, 28)).shape == (28, 28)


def test_default_recipe():
    assert default_recipe((28, 28, 1)) == "mnist"
    assert default_recipe((28, 28, 1), "mnist") == "mnist"
    assert default_recipe((28, 28, 1), "fashion_mnist") == "fit"
    assert default_recipe((64, 64, 1)) == "mnist"
    assert default_recipe((32, 32, 3)) == "resize"
    assert default_recipe((32, 32, 3), "fashion_mnist") == "resize"


@pytest.mark.parametrize(
    "options, match",
    [
        ({"input_shape": (28, 28, 2)}, "input_shape"),
        ({"input_shape": (28,)}, "input_shape"),
        ({"recipe": "sharpen"}, "unknown recipe"),
        ({"disabled": ("blur",)}, "unknown step"),
        ({"disabled": ("grayscale",)}, "cannot be switched off"),
        ({"invert": "yes"}, "invert"),
    ],
)
def test_bad_arguments_are_value_errors(options, match):
    arguments = {"input_shape": MNIST, **options}
    with pytest.raises(ValueError, match=match):
        preprocess_steps(draw_seven(), **arguments)


def test_other_recipes_optional_steps_are_ignored():
    # The inspector may keep "contrast" switched off when the user changes to the resize recipe.
    steps = preprocess_steps(draw_seven(), (32, 32, 3), disabled=("contrast", "scale"))
    assert all(s.enabled for s in steps)

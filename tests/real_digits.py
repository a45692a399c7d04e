"""Real handwritten digits, transformed the way the world transforms them (issue 21's corpus).

Every picture starts from real strokes nobody on this project drew: MNIST *test* digits (never training ones)
or scikit-learn's bundled UCI digits (8×8 scans of 43 other writers). They are then cropped tight, brought
down to a few pixels, thickened, put on grey paper or squeezed through JPEG at quality 30 — what a worksheet
scan, an old scanner or a marker does to a digit. `FAMILIES` maps a family's name to a function
(28×28 uint8 digit, rng) → picture (uint8 array or JPEG bytes) ready for `prepare_image`; `UCI` is the one
family with its own pictures (`uci_digits`). Used by `bench/real_inputs.py` and, on small slices, the tests.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image
from scipy import ndimage

PAPER = (185, 235)  # light grey paper's brightness
INK = (15, 70)  # dark ink's brightness on it
JPEG_QUALITY = 30  # a heavily compressed scan
LOW_RES = (8, 12, 16)  # sides of the low-resolution families, before bicubic upsampling
GREY_LEVELS = 16  # old scanners' 4-bit grey


def ink_box(digit: np.ndarray) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of every non-zero pixel of a white-on-black digit."""
    ys, xs = np.nonzero(digit)
    return int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1


def crop_tight(digit: np.ndarray, margin: int, square: bool = False) -> np.ndarray:
    """The digit cropped to its ink box plus `margin` px of black on each side (a square box if asked)."""
    top, bottom, left, right = ink_box(digit)
    if square:
        side = max(bottom - top, right - left)
        top, left = top - (side - (bottom - top)) // 2, left - (side - (right - left)) // 2
        bottom, right = top + side, left + side
    padded = np.pad(digit, 32)
    return padded[top + 32 - margin:bottom + 32 + margin, left + 32 - margin:right + 32 + margin]


def resize(pixels: np.ndarray, size: tuple[int, int], method=Image.Resampling.BICUBIC) -> np.ndarray:
    """uint8 (H, W) resized to size = (h, w)."""
    return np.asarray(Image.fromarray(pixels).resize((size[1], size[0]), method))


def tight(digit: np.ndarray, rng) -> np.ndarray:
    """Cropped to the ink box with a 0–2 px margin, the longer side 20–64 px (a digit cut out of a scan)."""
    cropped = crop_tight(digit, int(rng.integers(0, 3)))
    longest = int(rng.integers(20, 65))
    scale = longest / max(cropped.shape)
    return resize(cropped, (max(1, round(cropped.shape[0] * scale)), max(1, round(cropped.shape[1] * scale))))


def low_res(side: int):
    """side×side, 16 grey levels, upsampled bicubic to 32 or 64 px (an old scanner's digit, enlarged)."""
    def make(digit: np.ndarray, rng) -> np.ndarray:
        cropped = crop_tight(digit, int(rng.integers(0, 2)), square=True)
        small = resize(cropped, (side, side), Image.Resampling.BOX).astype(float)
        small = np.round(small / 255 * (GREY_LEVELS - 1)) * (255 / (GREY_LEVELS - 1))
        out = int(rng.choice([32, 64]))
        return resize(np.clip(small, 0, 255).astype(np.uint8), (out, out))
    make.__doc__ = f"{side}×{side}, {GREY_LEVELS} grey levels, upsampled bicubic to 32 or 64 px"
    return make


def thick(digit: np.ndarray, rng) -> np.ndarray:
    """Strokes grown (round, like a marker's tip) until the ink covers 40–80% of the frame, or the stroke is
    about a quarter of the digit's height, cropped to the ink with a 0–2 px margin (a bold writer's digit cut
    out of a worksheet)."""
    cropped = crop_tight(digit, 0)
    scale = 48 / max(cropped.shape)
    big = resize(cropped, (max(1, round(cropped.shape[0] * scale)), max(1, round(cropped.shape[1] * scale))))
    distance = ndimage.distance_transform_edt(np.pad(big, 32) <= 127)  # px from the nearest stroke
    target, margin = rng.uniform(0.4, 0.8), int(rng.integers(0, 3))
    for radius in np.arange(0.0, 6.01, 0.5):  # the stroke grows by up to 12 px (a quarter of 48)
        mask = distance <= radius
        top, bottom, left, right = ink_box(mask)
        frame = mask[top - margin:bottom + margin, left - margin:right + margin]
        if frame.mean() >= target:
            break
    # Soft edges, as a scan has.
    return np.clip(ndimage.gaussian_filter(frame * 255.0, 0.7), 0, 255).astype(np.uint8)


def on_paper(make):
    """The same picture as dark ink on light grey paper (with a little scanner noise)."""
    def paper(digit: np.ndarray, rng) -> np.ndarray:
        ink = make(digit, rng).astype(float) / 255
        background, pen = rng.uniform(*PAPER), rng.uniform(*INK)
        page = background - (background - pen) * ink + rng.normal(0, 2.0, ink.shape)
        return np.clip(np.rint(page), 0, 255).astype(np.uint8)
    return paper


def as_jpeg(make, quality: int = JPEG_QUALITY):
    """The same picture saved as a JPEG at `quality` (bytes, as an upload arrives)."""
    def jpeg(digit: np.ndarray, rng) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(make(digit, rng)).save(buffer, format="JPEG", quality=quality)
        return buffer.getvalue()
    return jpeg


def _variants(name: str, make) -> dict:
    return {name: make, f"{name}, on paper": on_paper(make), f"{name}, JPEG q{JPEG_QUALITY}": as_jpeg(make)}


# Family name → (28×28 uint8 MNIST test digit, rng) → picture. The transforms of issue 21, each three ways.
FAMILIES = {
    **_variants("tight crop", tight),
    **{k: v for side in LOW_RES for k, v in _variants(f"low-res {side}×{side}", low_res(side)).items()},
    **_variants("thick", thick),
}
UCI = "UCI digits 8×8 (scikit-learn, 43 writers)"


def uci_digits(n: int | None = None, seed: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    """scikit-learn's bundled 8×8 digits (values 0–16) as white-on-black pictures upsampled bicubic to 32 or
    64 px, and their labels; `n` of them picked at random (all 1,797 when None)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    order = np.arange(len(digits.target)) if n is None else rng.choice(len(digits.target), n, replace=False)
    pictures = []
    for i in order:
        small = np.clip(digits.images[i] * (255 / 16), 0, 255).astype(np.uint8)
        out = int(rng.choice([32, 64]))
        pictures.append(resize(small, (out, out)))
    return pictures, digits.target[order].astype(np.int64)


def make_family(name: str, digits: np.ndarray, seed: int = 0) -> list:
    """Every digit (N, 28, 28) uint8 through family `name`'s transform, reproducibly."""
    make = FAMILIES[name]
    rng = np.random.default_rng([seed, list(FAMILIES).index(name)])
    return [make(np.asarray(d).reshape(28, 28), rng) for d in digits]


# ---------------------------------------------------------------------------
# Reading them: the app's recipes, and the textbook MNIST recipe as a reference
# ---------------------------------------------------------------------------

class Read:
    """What one recipe made of a list of pictures."""

    def __init__(self, inputs, kept, inked_blank, fell_back):
        self.inputs = inputs  # (kept, 28, 28, 1) uint8 model inputs
        self.kept = kept  # (N,) bool: not refused as blank
        self.inked_blank = inked_blank  # how many refused pictures had visible ink (a channel spanning ≥ 10)
        self.fell_back = fell_back  # (N,) bool: the recipe found no ink and used the plain resize


def textbook(picture, size: int = 28, box: int = 20) -> np.ndarray:
    """The textbook MNIST recipe: grey, ink bright (inverted when the border is light), background level
    subtracted, cropped to the ink, fitted into box×box keeping the aspect ratio, centred by mass."""
    from cnn.core.errors import EmptyImageError

    image = Image.open(io.BytesIO(picture)) if isinstance(picture, bytes) else Image.fromarray(picture)
    gray = np.asarray(image.convert("L"), dtype=np.float32)
    ring = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    if np.median(ring) > 127.5:
        gray, ring = 255 - gray, 255 - ring
    ink = np.clip(gray - np.median(ring), 0, None)
    if ink.max() <= 0:
        raise EmptyImageError("no ink")
    ys, xs = np.nonzero(ink > 0.2 * ink.max())
    ink = ink[ys.min():ys.max() + 1, xs.min():xs.max() + 1] * (255 / ink.max())
    scale = box / max(ink.shape)
    shape = max(1, round(ink.shape[0] * scale)), max(1, round(ink.shape[1] * scale))
    fitted = np.asarray(Image.fromarray(ink).resize(shape[::-1], Image.Resampling.LANCZOS)).clip(0, 255)
    cy, cx = ndimage.center_of_mass(fitted)
    top = int(np.clip(round(size / 2 - cy), 0, size - shape[0]))
    left = int(np.clip(round(size / 2 - cx), 0, size - shape[1]))
    frame = np.zeros((size, size), np.float32)
    frame[top:top + shape[0], left:left + shape[1]] = fitted
    return np.rint(frame).astype(np.uint8)[..., None]


def read_all(pictures, recipe: str = "mnist", input_shape=(28, 28, 1)) -> Read:
    """Every picture through `recipe` ("mnist", "fit", "resize" — cnn.data.preprocess — or "textbook")."""
    from cnn.core.errors import EmptyImageError
    from cnn.data.preprocess import fell_back, is_blank, prepare

    inputs, kept, backs, inked_blank = [], [], [], 0
    for picture in pictures:
        try:
            if recipe == "textbook":
                x, back = textbook(picture), False
            else:
                steps, x = prepare(picture, input_shape, recipe=recipe)
                back = fell_back(steps)
            inputs.append(x)
            kept.append(True)
            backs.append(back)
        except EmptyImageError:
            kept.append(False)
            backs.append(False)
            inked_blank += int(not is_blank(picture))
    stacked = np.stack(inputs) if inputs else np.zeros((0, *input_shape), np.uint8)
    return Read(stacked, np.array(kept, dtype=bool), inked_blank, np.array(backs, dtype=bool))

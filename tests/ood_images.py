"""Canvas-like test images: things that are not digits, and digits drawn the way people draw on the Predict page.

Every image is what the Predict page's canvas hands to `prepare_image`: a 280×280 RGBA array, white ink on
transparent black, drawn with a round brush 10–34 px wide (the page's stroke slider spans 8–40, default 22).
Each family is a function `rng → image`; everything is reproducible from a seed.

Families come in two sets. `NON_DIGITS` is what the tests assert on and what the out-of-distribution score was
chosen with; `HELD_OUT` is used only by `bench/ood.py`, so the bench also measures inputs the choice never saw.
Likewise `drawn_digits` (hand-designed strokes per digit, jittered) is the test set, and `redrawn_mnist`
(MNIST test digits re-drawn as hard-edged canvas strokes) and `typed_digits` (font glyphs) are bench-only.

A few shapes are left out on purpose because they ARE digits when drawn: one plain ring (a 0), one straight
near-vertical line (a 1), two rings stacked vertically (an 8).
"""
from __future__ import annotations

import math
import string

import numpy as np
from PIL import Image, ImageDraw, ImageFont

CANVAS = 280  # the Predict page's canvas is 280×280
INK = (255, 255, 255, 255)  # white, opaque: st_canvas's stroke colour
BACKGROUND = (0, 0, 0, 0)  # transparent black: st_canvas's image_data where nothing is drawn


# ---------------------------------------------------------------------------
# Drawing helpers
# ---------------------------------------------------------------------------

def new_canvas() -> tuple[Image.Image, ImageDraw.ImageDraw]:
    image = Image.new("RGBA", (CANVAS, CANVAS), BACKGROUND)
    return image, ImageDraw.Draw(image)


def stroke(draw: ImageDraw.ImageDraw, points, width: float) -> None:
    """A freehand stroke through `points` with a round brush: round joins and round caps like fabric.js."""
    points = [(float(x), float(y)) for x, y in points]
    width = max(1, int(round(width)))
    if len(points) > 1:
        draw.line(points, fill=INK, width=width, joint="curve")
    radius = width / 2
    for x, y in (points[0], points[-1]) if len(points) > 1 else points:
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=INK)


def smooth(points: np.ndarray, rounds: int = 2) -> np.ndarray:
    """Chaikin corner cutting: a hand-drawn polyline's corners become curves, its ends stay put."""
    for _ in range(rounds):
        if len(points) < 3:
            return points
        q = 0.75 * points[:-1] + 0.25 * points[1:]
        r = 0.25 * points[:-1] + 0.75 * points[1:]
        points = np.concatenate([points[:1], np.stack([q, r], axis=1).reshape(-1, 2), points[-1:]])
    return points


def brush(rng) -> float:
    """A stroke width people use on the canvas: 10–34 px around the default 22."""
    return float(np.clip(rng.normal(22, 6), 10, 34))


def place(rng, strokes, size_range=(130, 230), rotate=12.0, shear=0.2, aspect=(0.75, 1.1), jitter=0.02):
    """Unit-box strokes (x, y in 0…1, y down) → canvas points: jittered, sheared, rotated, scaled, moved."""
    size = rng.uniform(*size_range)
    angle = math.radians(rng.uniform(-rotate, rotate))
    k, sx = rng.uniform(-shear, shear), rng.uniform(*aspect)
    cos, sin = math.cos(angle), math.sin(angle)
    placed = []
    for points in strokes:
        p = np.asarray(points, dtype=float) - 0.5
        p = p + rng.normal(0, jitter, p.shape)  # a hand never hits the same point twice
        p = np.stack([(p[:, 0] + k * p[:, 1]) * sx, p[:, 1]], axis=1)  # slant and width
        p = p @ np.array([[cos, sin], [-sin, cos]]) * size  # tilt and size
        placed.append(p)
    allp = np.concatenate(placed)
    lo, hi = allp.min(axis=0), allp.max(axis=0)
    margin = 20
    # Anywhere on the canvas that keeps the whole drawing inside it.
    room_lo, room_hi = margin - lo, CANVAS - margin - hi
    shift = np.array([rng.uniform(min(a, b), max(a, b)) for a, b in zip(room_lo, room_hi)])
    return [smooth(p + shift) for p in placed]


def arc(cx, cy, rx, ry, start, end, n=24):
    """Points on an ellipse from angle `start` to `end` (radians; 0 = right, π/2 = down)."""
    t = np.linspace(start, end, n)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


def finish(image: Image.Image) -> np.ndarray:
    return np.asarray(image)


def draw_strokes(rng, strokes, width=None, **place_options) -> np.ndarray:
    image, draw = new_canvas()
    width = brush(rng) if width is None else width
    for points in place(rng, strokes, **place_options):
        stroke(draw, points, width)
    return finish(image)


# ---------------------------------------------------------------------------
# Digits drawn like the canvas: hand-designed strokes (unit box, y down), several styles per digit
# ---------------------------------------------------------------------------

DIGIT_STROKES = {
    0: [[arc(0.5, 0.5, 0.32, 0.5, -math.pi / 2, 1.55 * math.pi)],
        [arc(0.5, 0.5, 0.38, 0.48, -0.6 * math.pi, 1.45 * math.pi)]],
    1: [[[(0.5, 0.0), (0.5, 1.0)]],
        [[(0.3, 0.18), (0.55, 0.0), (0.55, 1.0)]],
        [[(0.3, 0.18), (0.55, 0.0), (0.55, 1.0)], [(0.3, 1.0), (0.8, 1.0)]]],
    2: [[[(0.1, 0.25), (0.3, 0.02), (0.7, 0.02), (0.9, 0.25), (0.8, 0.5), (0.1, 1.0), (0.95, 1.0)]],
        [[(0.12, 0.2), (0.45, 0.0), (0.85, 0.15), (0.75, 0.45), (0.15, 0.95), (0.5, 0.85), (0.95, 0.95)]]],
    3: [[[(0.1, 0.1), (0.5, 0.0), (0.85, 0.15), (0.8, 0.35), (0.45, 0.48), (0.85, 0.6), (0.9, 0.85),
          (0.5, 1.0), (0.1, 0.9)]],
        [[(0.1, 0.05), (0.85, 0.05), (0.45, 0.42), (0.85, 0.6), (0.85, 0.88), (0.5, 1.0), (0.1, 0.9)]]],
    4: [[[(0.65, 0.0), (0.05, 0.65), (0.95, 0.65)], [(0.68, 0.3), (0.68, 1.0)]],
        [[(0.15, 0.0), (0.1, 0.55), (0.9, 0.55)], [(0.7, 0.0), (0.7, 1.0)]]],
    5: [[[(0.85, 0.0), (0.2, 0.0), (0.15, 0.45), (0.55, 0.38), (0.85, 0.55), (0.88, 0.8), (0.55, 1.0),
          (0.1, 0.9)]],
        [[(0.2, 0.0), (0.15, 0.45), (0.55, 0.38), (0.85, 0.55), (0.88, 0.8), (0.55, 1.0), (0.1, 0.9)],
         [(0.2, 0.0), (0.85, 0.0)]]],
    6: [[[(0.75, 0.0), (0.35, 0.3), (0.15, 0.65), (0.25, 0.95), (0.6, 1.0), (0.85, 0.8), (0.7, 0.55),
          (0.35, 0.55), (0.15, 0.7)]],
        [np.concatenate([[(0.7, 0.0), (0.35, 0.25)], arc(0.5, 0.72, 0.32, 0.28, math.pi * 1.1, math.pi * 3.1)])]],
    7: [[[(0.05, 0.05), (0.95, 0.05), (0.4, 1.0)]],
        [[(0.05, 0.05), (0.95, 0.05), (0.4, 1.0)], [(0.3, 0.5), (0.85, 0.5)]],
        [[(0.05, 0.15), (0.2, 0.0), (0.95, 0.05), (0.55, 0.5), (0.45, 1.0)]]],
    8: [[np.stack([0.5 + 0.32 * np.sin(2 * t), 0.5 - 0.5 * np.cos(t)], axis=1)
         for t in [np.linspace(0, 2 * math.pi, 48)]]],
    9: [[np.concatenate([arc(0.5, 0.3, 0.33, 0.3, 0.0, 2 * math.pi), [(0.83, 0.3), (0.75, 1.0)]])],
        [np.concatenate([arc(0.45, 0.28, 0.32, 0.28, 0.1, 2 * math.pi), [(0.77, 0.3), (0.6, 0.7), (0.45, 1.0)]])]],
}


def drawn_digit(rng, digit: int) -> np.ndarray:
    """One digit drawn on the canvas in one of its styles, jittered, slanted and sized like a person's."""
    styles = DIGIT_STROKES[digit]
    strokes = styles[rng.integers(len(styles))]
    aspect = (0.3, 0.6) if digit == 1 else (0.7, 1.05)
    return draw_strokes(rng, strokes, aspect=aspect)


def drawn_digits(n: int, seed: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    """`n` canvas drawings of digits, classes in turn, and their labels."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    return [drawn_digit(rng, int(d)) for d in labels], labels


# ---------------------------------------------------------------------------
# Not digits (NON_DIGITS: tests and the score's choice)
# ---------------------------------------------------------------------------

def scribble(rng) -> np.ndarray:
    """A random scrawl: a momentum random walk of 8–25 steps, smoothed."""
    steps = rng.integers(8, 26)
    heading, speed = rng.uniform(0, 2 * math.pi), rng.uniform(0.12, 0.3)
    p, points = np.array([0.5, 0.5]), []
    for _ in range(steps):
        heading += rng.normal(0, 1.3)
        p = np.clip(p + speed * np.array([math.cos(heading), math.sin(heading)]), 0, 1)
        points.append(p.copy())
    return draw_strokes(rng, [points], rotate=180, shear=0.0, aspect=(0.8, 1.2), jitter=0.0)


def dots(rng) -> np.ndarray:
    """One to six round dots, as a tap of the brush or a pressed-down mouse."""
    image, draw = new_canvas()
    for _ in range(rng.integers(1, 7)):
        x, y, r = rng.uniform(30, CANVAS - 30), rng.uniform(30, CANVAS - 30), rng.uniform(5, 22)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=INK)
    return finish(image)


def lines(rng) -> np.ndarray:
    """Straight lines: one near-horizontal dash, or two to five crossing lines."""
    image, draw = new_canvas()
    if rng.random() < 0.3:
        angle = rng.uniform(-35, 35) * math.pi / 180  # never near vertical: that is a 1
        length, cx, cy = rng.uniform(80, 240), rng.uniform(100, 180), rng.uniform(60, 220)
        dx, dy = length / 2 * math.cos(angle), length / 2 * math.sin(angle)
        stroke(draw, [(cx - dx, cy - dy), (cx + dx, cy + dy)], brush(rng))
    else:
        width = brush(rng)
        for _ in range(rng.integers(2, 6)):
            stroke(draw, rng.uniform(15, CANVAS - 15, (2, 2)), width)
    return finish(image)


def rings(rng) -> np.ndarray:
    """Concentric rings, a bullseye, or rings side by side — never one plain ring (a 0)."""
    image, draw = new_canvas()
    width, kind = brush(rng) * 0.8, rng.integers(3)
    cx, cy = rng.uniform(110, 170, 2)
    if kind == 0:  # two or three concentric rings
        for r in np.linspace(rng.uniform(90, 120), rng.uniform(25, 40), rng.integers(2, 4)):
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=INK, width=int(width))
    elif kind == 1:  # a ring with a dot in the middle
        r = rng.uniform(70, 120)
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=INK, width=int(width))
        d = rng.uniform(10, 25)
        draw.ellipse((cx - d, cy - d, cx + d, cy + d), fill=INK)
    else:  # two or three rings in a row
        count = rng.integers(2, 4)
        r = rng.uniform(28, 100 / count + 10)
        y = rng.uniform(80, 200)
        for i in range(count):
            x = 140 + (i - (count - 1) / 2) * 1.7 * r
            draw.ellipse((x - r, y - r, x + r, y + r), outline=INK, width=int(width))
    return finish(image)


# Letters that look like no digit when drawn (no O, I, l, S, Z, B, G, b, q, g, …).
LETTERS = "AEFHKMNRWXYaefhkmnrwx#@&%"


def _font(size: int):
    return ImageFont.load_default(size=size)  # Pillow's bundled font: the same on every machine


def letters(rng) -> np.ndarray:
    """A letter or sign from LETTERS, typed in Pillow's font thickened by a brush-like outline, tilted."""
    text = LETTERS[rng.integers(len(LETTERS))]
    layer = Image.new("L", (CANVAS, CANVAS), 0)
    draw = ImageDraw.Draw(layer)
    font = _font(int(rng.uniform(150, 230)))
    draw.text((CANVAS / 2, CANVAS / 2), text, fill=255, font=font, anchor="mm", stroke_width=int(rng.uniform(2, 9)),
              stroke_fill=255)
    layer = layer.rotate(rng.uniform(-15, 15), resample=Image.Resampling.BILINEAR)
    image = Image.new("RGBA", (CANVAS, CANVAS), BACKGROUND)
    image.paste(Image.new("RGBA", (CANVAS, CANVAS), INK), mask=layer)
    return finish(image)


def noise(rng) -> np.ndarray:
    """Random ink: uniform noise over the canvas or a patch, or blotches of smoothed noise."""
    from scipy import ndimage

    field = rng.random((CANVAS, CANVAS))
    if rng.random() < 0.5:
        field = ndimage.gaussian_filter(field, rng.uniform(3, 10))
        field = (field - field.min()) / (np.ptp(field) + 1e-9)
    alpha = (field * 255).astype(np.uint8)
    if rng.random() < 0.5:  # only a patch
        mask = np.zeros_like(alpha)
        x, y = rng.integers(0, 140, 2)
        w, h = rng.integers(60, 140, 2)
        mask[y:y + h, x:x + w] = 1
        alpha = alpha * mask
    rgba = np.zeros((CANVAS, CANVAS, 4), np.uint8)
    rgba[..., :3] = 255
    rgba[..., 3] = alpha
    return rgba


def checkerboard(rng) -> np.ndarray:
    """A checkerboard of 20–70 px squares, sometimes tilted."""
    size = rng.uniform(20, 70)
    ys, xs = np.mgrid[0:CANVAS, 0:CANVAS].astype(float)
    angle = math.radians(rng.uniform(-30, 30)) if rng.random() < 0.5 else 0.0
    u = xs * math.cos(angle) + ys * math.sin(angle)
    v = -xs * math.sin(angle) + ys * math.cos(angle)
    board = ((np.floor(u / size) + np.floor(v / size)) % 2).astype(bool)
    rgba = np.zeros((CANVAS, CANVAS, 4), np.uint8)
    rgba[board] = INK
    return rgba


def specks(rng) -> np.ndarray:
    """An almost blank canvas: a handful of small specks (what a mis-click or a stray touch leaves)."""
    image, draw = new_canvas()
    for _ in range(rng.integers(3, 15)):
        x, y, r = rng.uniform(10, CANVAS - 10), rng.uniform(10, CANVAS - 10), rng.uniform(2, 7)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=INK)
    return finish(image)


NON_DIGITS = {"scribble": scribble, "dots": dots, "lines": lines, "rings": rings, "letters": letters,
              "noise": noise, "checkerboard": checkerboard, "specks": specks}


# ---------------------------------------------------------------------------
# Held out: never used to choose the score; only bench/ood.py draws these
# ---------------------------------------------------------------------------

def shapes(rng) -> np.ndarray:
    """A triangle, square, star, plus sign or cross, outlined or filled."""
    kind = rng.integers(5)
    if kind == 0:
        strokes = [[(0.5, 0.0), (1.0, 1.0), (0.0, 1.0), (0.5, 0.0)]]
    elif kind == 1:
        strokes = [[(0, 0), (1, 0), (1, 1), (0, 1), (0, 0)]]
    elif kind == 2:
        t = np.linspace(-math.pi / 2, 1.5 * math.pi, 11)
        r = np.where(np.arange(11) % 2 == 0, 0.5, 0.2)
        strokes = [np.stack([0.5 + r * np.cos(t), 0.5 + r * np.sin(t)], axis=1)]
    elif kind == 3:
        strokes = [[(0.5, 0.0), (0.5, 1.0)], [(0.0, 0.5), (1.0, 0.5)]]
    else:
        strokes = [[(0, 0), (1, 1)], [(1, 0), (0, 1)]]
    image, draw = new_canvas()
    placed = place(rng, strokes, rotate=20, shear=0.1, aspect=(0.8, 1.2))
    if kind in (0, 1, 2) and rng.random() < 0.4:
        draw.polygon([tuple(p) for p in placed[0]], fill=INK)
    else:
        width = brush(rng)
        for points in placed:
            stroke(draw, points, width)
    return finish(image)


def hatching(rng) -> np.ndarray:
    """Three to eight parallel lines, or a # grid."""
    count, angle = rng.integers(3, 9), rng.uniform(0, math.pi)
    strokes = []
    for i in range(count):
        offset = (i + 0.5) / count
        strokes.append([(offset, 0.0), (offset, 1.0)])
    if rng.random() < 0.4:
        strokes += [[(0.0, (i + 0.5) / count), (1.0, (i + 0.5) / count)] for i in range(count)]
    image, draw = new_canvas()
    width = brush(rng) * 0.7
    placed = place(rng, strokes, rotate=0, shear=0.0, aspect=(0.9, 1.1), jitter=0.01)
    centre = np.concatenate(placed).mean(axis=0)
    rot = np.array([[math.cos(angle), math.sin(angle)], [-math.sin(angle), math.cos(angle)]])
    for points in placed:
        stroke(draw, np.clip((points - centre) @ rot + CANVAS / 2, 5, CANVAS - 5), width)
    return finish(image)


WORDS = ["cat", "hello", "max", "hi", "yes", "nope", "fun", "wave", "ok", "art", "mew", "zzz", "hey", "we"]


def words(rng) -> np.ndarray:
    """A short word written across the canvas."""
    layer = Image.new("L", (CANVAS, CANVAS), 0)
    draw = ImageDraw.Draw(layer)
    text = WORDS[rng.integers(len(WORDS))]
    font = _font(int(rng.uniform(60, 110) * (4 / max(len(text), 2)) ** 0.5))
    draw.text((CANVAS / 2, CANVAS / 2), text, fill=255, font=font, anchor="mm", stroke_width=int(rng.uniform(1, 5)),
              stroke_fill=255)
    image = Image.new("RGBA", (CANVAS, CANVAS), BACKGROUND)
    image.paste(Image.new("RGBA", (CANVAS, CANVAS), INK), mask=layer)
    return finish(image)


def spiral(rng) -> np.ndarray:
    turns = rng.uniform(1.8, 3.5)
    t = np.linspace(0, turns * 2 * math.pi, int(60 * turns))
    r = 0.05 + 0.45 * t / t[-1]
    points = np.stack([0.5 + r * np.cos(t), 0.5 + r * np.sin(t)], axis=1)
    return draw_strokes(rng, [points], width=brush(rng) * 0.7, rotate=180, shear=0.0, jitter=0.005)


def smiley(rng) -> np.ndarray:
    face = arc(0.5, 0.5, 0.5, 0.5, 0, 2 * math.pi, 40)
    mouth = arc(0.5, 0.55, 0.25, 0.2, 0.15 * math.pi, 0.85 * math.pi, 12)
    eyes = [[(0.35, 0.35), (0.35, 0.38)], [(0.65, 0.35), (0.65, 0.38)]]
    return draw_strokes(rng, [face, mouth, *eyes], width=brush(rng) * 0.7, jitter=0.01)


def arrow(rng) -> np.ndarray:
    strokes = [[(0.0, 0.5), (1.0, 0.5)], [(0.7, 0.25), (1.0, 0.5), (0.7, 0.75)]]
    return draw_strokes(rng, strokes, rotate=180, shear=0.0, aspect=(0.9, 1.1))


def zigzag(rng) -> np.ndarray:
    """A saw-tooth line across the canvas (a signature, a cross-out)."""
    teeth = rng.integers(3, 8)
    xs = np.linspace(0, 1, 2 * teeth + 1)
    ys = np.where(np.arange(len(xs)) % 2 == 0, 0.3, 0.7)
    return draw_strokes(rng, [np.stack([xs, ys], axis=1)], rotate=25, shear=0.0, aspect=(1.0, 1.3), jitter=0.01)


HELD_OUT = {"shapes": shapes, "hatching": hatching, "words": words, "spiral": spiral, "smiley": smiley,
            "arrow": arrow, "zigzag": zigzag}


def non_digits(n: int, seed: int = 0, families=None) -> tuple[list[np.ndarray], list[str]]:
    """`n` images cycling through `families` (default NON_DIGITS), and each one's family name."""
    families = NON_DIGITS if families is None else families
    rng = np.random.default_rng(seed)
    names = [list(families)[i % len(families)] for i in range(n)]
    return [families[name](rng) for name in names], names


# ---------------------------------------------------------------------------
# Bench-only digits: MNIST test digits re-drawn with hard canvas edges, and typed digits
# ---------------------------------------------------------------------------

def redrawn_mnist(digit_image: np.ndarray, rng) -> np.ndarray:
    """An MNIST digit (28×28 uint8) enlarged onto the canvas and thresholded: hard-edged, fully opaque strokes
    3–4× thicker than a pen's, at a random size and place — the same shape a person would trace."""
    size = int(rng.uniform(150, 250))
    big = Image.fromarray(np.asarray(digit_image).reshape(28, 28)).resize((size, size), Image.Resampling.BICUBIC)
    mask = (np.asarray(big) > rng.uniform(90, 150)).astype(np.uint8) * 255
    layer = Image.new("L", (CANVAS, CANVAS), 0)
    x, y = rng.integers(0, CANVAS - size + 1, 2)
    layer.paste(Image.fromarray(mask), (int(x), int(y)))
    image = Image.new("RGBA", (CANVAS, CANVAS), BACKGROUND)
    image.paste(Image.new("RGBA", (CANVAS, CANVAS), INK), mask=layer)
    return finish(image)


def typed_digit(rng, digit: int) -> np.ndarray:
    """A digit typed in Pillow's font, thickened like a brush stroke."""
    layer = Image.new("L", (CANVAS, CANVAS), 0)
    draw = ImageDraw.Draw(layer)
    draw.text((CANVAS / 2, CANVAS / 2), string.digits[digit], fill=255, font=_font(int(rng.uniform(150, 230))),
              anchor="mm", stroke_width=int(rng.uniform(2, 9)), stroke_fill=255)
    layer = layer.rotate(rng.uniform(-10, 10), resample=Image.Resampling.BILINEAR)
    image = Image.new("RGBA", (CANVAS, CANVAS), BACKGROUND)
    image.paste(Image.new("RGBA", (CANVAS, CANVAS), INK), mask=layer)
    return finish(image)


def prepare_all(images, input_shape=(28, 28, 1)) -> tuple[np.ndarray, np.ndarray]:
    """Each canvas through `prepare_image` exactly as the Predict page sends a drawing: (inputs, kept), where
    `kept` marks the images prepare_image accepted (a blank one is refused before any prediction)."""
    from cnn.core.errors import EmptyImageError
    from cnn.data.preprocess import prepare_image

    out, kept = [], []
    for image in images:
        try:
            out.append(prepare_image(image, input_shape))
            kept.append(True)
        except EmptyImageError:
            kept.append(False)
    return (np.stack(out) if out else np.zeros((0, *input_shape), np.uint8)), np.array(kept, dtype=bool)

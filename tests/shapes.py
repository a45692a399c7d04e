"""Hand-drawn shapes as a person draws them on the canvas: strokes as point lists (0…1 of the canvas), each
drawing a little different (size, place, tilt, aspect, wobble, pen width, where the pen starts). The same
strokes feed the browser (tests.chromium.draw moves the mouse along them) and the engine (`canvas_json` writes
them as fabric.js freehand paths, as streamlit-drawable-canvas's `json_data` sends them, for app.drawing)."""
from __future__ import annotations

import math

import numpy as np

SHAPES = ("circle", "square", "triangle")


def _wobble(points: np.ndarray, rng, amount: float) -> np.ndarray:
    """A hand's tremor: a smooth random offset along the stroke."""
    n = len(points)
    knots = rng.normal(0, amount, (max(2, n // 6), 2))
    t = np.linspace(0, len(knots) - 1, n)
    offset = np.stack([np.interp(t, np.arange(len(knots)), knots[:, k]) for k in range(2)], axis=1)
    return points + offset


def _polygon(corners: np.ndarray, per_side: int) -> np.ndarray:
    """Points along the closed polygon through `corners`, starting at the first."""
    loop = np.vstack([corners, corners[:1]])
    return np.vstack([np.linspace(a, b, per_side, endpoint=False) for a, b in zip(loop[:-1], loop[1:])]
                     + [loop[-1:]])


def shape_strokes(shape: str, rng) -> list[list[tuple[float, float]]]:
    """One drawing of `shape` ('circle', 'square' or 'triangle') as strokes of (x, y) points in 0…1."""
    size = rng.uniform(0.22, 0.38)  # half the shape's extent
    centre = rng.uniform(0.38, 0.62, 2)
    tilt = math.radians(rng.uniform(-15, 15))
    aspect = rng.uniform(0.8, 1.25)
    if shape == "circle":
        start = rng.uniform(0, 2 * math.pi)
        sweep = rng.uniform(2.0, 2.15) * math.pi * rng.choice([-1, 1])  # a little past the start, either way
        angles = start + np.linspace(0, sweep, 40)
        unit = np.stack([np.cos(angles), np.sin(angles)], axis=1)
        strokes = [unit]
    elif shape == "square":
        corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], float) + rng.normal(0, 0.06, (4, 2))
        path = _polygon(np.roll(corners, -int(rng.integers(4)), axis=0), 10)
        strokes = [path] if rng.random() < 0.7 else [path[:21], path[20:]]  # some lift the pen half-way
    elif shape == "triangle":
        corners = np.array([[0, -1.1], [1, 0.8], [-1, 0.8]], float) + rng.normal(0, 0.07, (3, 2))
        strokes = [_polygon(np.roll(corners, -int(rng.integers(3)), axis=0), 12)]
    else:
        raise ValueError(f"unknown shape {shape!r}: choose one of {', '.join(SHAPES)}")
    turn = np.array([[math.cos(tilt), -math.sin(tilt)], [math.sin(tilt), math.cos(tilt)]])
    out = []
    for unit in strokes:
        points = (unit * [size * aspect, size / aspect]) @ turn.T + centre
        points = np.clip(_wobble(points, rng, 0.012), 0.03, 0.97)
        out.append([(float(x), float(y)) for x, y in points])
    return out


def fabric_path(points: list[tuple[float, float]], side: int, width: float) -> dict:
    """One stroke as fabric.js's PencilBrush makes it: M to the first point, then quadratic curves through the
    midpoints, L to the last; placed by its box centre (originX/Y 'center'), as json_data sends it."""
    p = np.asarray(points, float) * side
    path = [["M", *p[0]]]
    for a, b in zip(p[:-1], p[1:]):
        path.append(["Q", *a, *((a + b) / 2)])
    path.append(["L", *p[-1]])
    low, high = p.min(axis=0), p.max(axis=0)
    return {"type": "Path", "version": "7.4.0", "originX": "center", "originY": "center",
            "left": float((low[0] + high[0]) / 2), "top": float((low[1] + high[1]) / 2),
            "width": float(high[0] - low[0]), "height": float(high[1] - low[1]), "fill": None,
            "stroke": "#FFFFFF", "strokeWidth": width, "strokeLineCap": "round", "strokeLineJoin": "round",
            "scaleX": 1, "scaleY": 1, "angle": 0, "flipX": False, "flipY": False, "opacity": 1,
            "path": [[c[0], *map(float, c[1:])] for c in path]}


def canvas_json(strokes, side: int = 280, width: float = 22) -> dict:
    """The canvas's json_data for these strokes."""
    return {"version": "7.4.0", "background": "#000000",
            "objects": [fabric_path(points, side, width) for points in strokes]}


def drawings(shape: str, count: int, seed: int) -> list[list[list[tuple[float, float]]]]:
    """`count` different drawings of `shape` (a seed per shape and call: other seeds, other hands)."""
    rng = np.random.default_rng([seed, SHAPES.index(shape) if shape in SHAPES else 99])
    return [shape_strokes(shape, rng) for _ in range(count)]

"""What Predict's canvas (streamlit-drawable-canvas's `st_canvas`) sends, checked and turned into pixels.

The browser is a client like any other: its drawing arrives as fabric.js JSON (`json_data`), which is vetted by
a schema (`vet_drawing`: only freehand paths, bounded in count, points and numbers, only known keys kept) and
rasterised here with Pillow (`rasterise`). That is the one source of truth for the drawing — what is predicted
and what `initial_drawing` puts back when Draw is opened again — and it spares the browser a PNG encode and the
wire a PNG per stroke (bench/ui_latency.py and the README give the figures). `vet_png` checks a PNG the canvas
would send with `return_image_data=True` (kept for comparison and for tests).
"""
from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

MAX_OBJECTS = 300  # strokes on one canvas; a digit has 1–4
MAX_POINTS = 20_000  # path commands over all strokes; a long scribble has a few hundred
MAX_PNG_BYTES = 4 * 2 ** 20  # a 280×280 drawing is a few kB
# The keys of a freehand path kept from what the browser sent (everything else is dropped), with their types.
_PATH_KEYS = {"type": str, "originX": str, "originY": str, "left": float, "top": float, "width": float,
              "height": float, "stroke": str, "strokeWidth": float, "strokeLineCap": str, "strokeLineJoin": str,
              "scaleX": float, "scaleY": float, "angle": float, "flipX": bool, "flipY": bool, "opacity": float,
              "fill": type(None)}
_ORIGINS = {"left": 0.0, "top": 0.0, "center": 0.5, "right": 1.0, "bottom": 1.0}
_COMMANDS = {"M": 2, "L": 2, "Q": 4, "C": 6}  # fabric's freehand paths: move, line, quadratic (and cubic) curves


def vet_drawing(json_data, side: int) -> dict | None:
    """The canvas's fabric.js JSON reduced to what a freehand drawing on a side×side canvas can hold, or None
    when it is anything else (wrong types, too many strokes or points, numbers out of range)."""
    if not isinstance(json_data, dict) or not isinstance(json_data.get("objects"), list):
        return None
    objects = json_data["objects"]
    if len(objects) > MAX_OBJECTS:
        return None
    kept, points = [], 0
    for obj in objects:
        path = _vet_path(obj, side)
        if path is None:
            return None
        points += len(path["path"])
        if points > MAX_POINTS:
            return None
        kept.append(path)
    background = json_data.get("background")
    return {"version": str(json_data.get("version", ""))[:16], "objects": kept,
            "background": background if isinstance(background, str) and len(background) <= 32 else "#000000"}


def _vet_path(obj, side: int) -> dict | None:
    """One fabric Path object with only the known keys, each of its type and in range, or None."""
    if not isinstance(obj, dict) or obj.get("type") not in ("Path", "path") or not isinstance(obj.get("path"), list):
        return None
    limit = 10 * side  # coordinates and sizes: a stroke may leave the canvas a little, never by much
    out = {}
    for key, kind in _PATH_KEYS.items():
        if key not in obj:
            continue
        value = obj[key]
        if kind is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or abs(value) > limit:
                return None
            value = float(value)
        elif kind is bool and not isinstance(value, bool) or kind is str and not (
                isinstance(value, str) and len(value) <= 32) or kind is type(None) and value is not None:
            return None
        out[key] = value
    if not 0 < out.get("strokeWidth", 1.0) <= 200 or out.get("originX", "left") not in _ORIGINS \
            or out.get("originY", "top") not in _ORIGINS:
        return None
    commands = []
    for command in obj["path"]:
        if not isinstance(command, list) or not command or command[0] not in _COMMANDS \
                or len(command) != 1 + _COMMANDS[command[0]]:
            return None
        numbers = command[1:]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and abs(v) <= limit
                   for v in numbers):
            return None
        commands.append([command[0], *map(float, numbers)])
    out["path"] = commands
    out["type"] = "path"
    return out


def rasterise(drawing: dict, side: int) -> np.ndarray:
    """A vetted drawing as the canvas shows it: (side, side, 4) uint8 RGBA, white strokes on black, each stroke
    a polyline through its path's points with round caps and joins, placed by its object's position, scale,
    rotation and flips (fabric.js moves paths that way when they are edited)."""
    image = Image.new("L", (side, side), 0)
    pen = ImageDraw.Draw(image)
    for obj in drawing["objects"]:
        points = _stroke_points(obj)
        if not len(points):
            continue
        width = obj.get("strokeWidth", 1.0) * (abs(obj.get("scaleX", 1.0)) + abs(obj.get("scaleY", 1.0))) / 2
        shade = round(255 * min(max(obj.get("opacity", 1.0), 0.0), 1.0))
        flat = [tuple(p) for p in points - 0.5]  # canvas coordinates run along pixel edges, Pillow's through centres
        if len(flat) > 1:
            pen.line(flat, fill=shade, width=max(1, round(width)), joint="curve")
        radius = width / 2
        for x, y in (flat[0], flat[-1]):  # round caps (and a dot for a single tap)
            pen.ellipse((x - radius, y - radius, x + radius, y + radius), fill=shade)
    gray = np.asarray(image)
    rgba = np.empty((side, side, 4), np.uint8)
    rgba[..., :3], rgba[..., 3] = gray[..., None], 255
    return rgba


def _stroke_points(obj: dict) -> np.ndarray:
    """(N, 2) canvas points of one path: its curves flattened, then moved from the path's own coordinates to
    where the object stands (fabric.js: the path's box centre sits at the object's origin point)."""
    points = []
    for command in obj["path"]:
        name, numbers = command[0], command[1:]
        if name in ("M", "L"):
            points.append(numbers)
        else:  # quadratic or cubic Bézier from the previous point: a few samples along it
            start = points[-1] if points else numbers[:2]
            controls = np.reshape(numbers, (-1, 2))
            for t in np.linspace(0.25, 1.0, 4):
                points.append(_bezier(np.vstack([start, controls]), t))
    if not points:
        return np.zeros((0, 2))
    pts = np.asarray(points, dtype=float)
    centre = (pts.min(axis=0) + pts.max(axis=0)) / 2
    scale = np.array([obj.get("scaleX", 1.0) * (-1 if obj.get("flipX") else 1),
                      obj.get("scaleY", 1.0) * (-1 if obj.get("flipY") else 1)])
    angle = math.radians(obj.get("angle", 0.0))
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    size = np.array([obj.get("width", np.ptp(pts[:, 0])), obj.get("height", np.ptp(pts[:, 1]))]) * np.abs(scale)
    origin = np.array([obj.get("left", centre[0]), obj.get("top", centre[1])])
    # The object's centre on the canvas: its origin point moved to the box centre.
    shift = np.array([0.5 - _ORIGINS[obj.get("originX", "left")], 0.5 - _ORIGINS[obj.get("originY", "top")]])
    placed = origin + rotation @ (shift * size)
    return ((pts - centre) * scale) @ rotation.T + placed


def _bezier(nodes: np.ndarray, t: float) -> np.ndarray:
    """de Casteljau: the point at t of the Bézier curve through `nodes` (its start, controls and end)."""
    while len(nodes) > 1:
        nodes = (1 - t) * nodes[:-1] + t * nodes[1:]
    return nodes[0]


def vet_png(data: bytes | None, side: int) -> np.ndarray | None:
    """A canvas PNG (`return_image_data=True`) as (side, side, 4) uint8, or None when it is missing or not
    what this canvas sends: checked from its header with the upload limits before it is decoded."""
    from cnn.core.errors import ImageError
    from cnn.data.imageio import load_image

    if not isinstance(data, bytes) or len(data) > MAX_PNG_BYTES or not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return None
    try:
        image, _ = load_image(data, max_pixels=side * side)
    except ImageError:
        return None
    pixels = np.asarray(image.convert("RGBA"))
    return pixels if pixels.shape == (side, side, 4) else None

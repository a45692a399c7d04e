"""The preprocessing steps (cnn.data.preprocess runs them): each takes float pixels and returns (pixels, note)
for the inspector; plus `transform_image` for the robustness sweep.
"""
from __future__ import annotations

import math

import numpy as np
from PIL import Image
from scipy import ndimage

NO_INK_NOTE = "no ink found: nothing stands out from the background"
NOISE_FLOOR = 0.15 * 255  # ink fainter than this (after stretching) is treated as noise
MIN_INK_CONTRAST = 24.0  # marks fainter than this above the background are not ink
PHOTO_SIDE = 128  # pictures whose shorter side is smaller are crops or scans: their lighting is never flattened
_EIGHT_NEIGHBOURS = np.ones((3, 3), dtype=bool)  # 3×3 structure: diagonal neighbours touch


# ---------------------------------------------------------------------------
# Steps: each takes float pixels and returns (pixels, note)
# ---------------------------------------------------------------------------

def _border_ring(gray: np.ndarray) -> np.ndarray:
    """The outer ring's pixels (2% of the shorter side, at least 1 px), flattened: where the background is."""
    ring = max(1, round(0.02 * min(gray.shape[:2])))
    edges = [gray[:ring], gray[-ring:], gray[:, :ring], gray[:, -ring:]]
    return np.concatenate([edge.ravel() for edge in edges])


def _measure_border(gray: np.ndarray) -> float:
    """Median of the outer ring: the background level."""
    return float(np.median(_border_ring(gray)))


def invert_pixels(pixels: np.ndarray, invert) -> tuple[np.ndarray, str]:
    """Make ink bright on dark like MNIST: auto-invert when the border (background) is light."""
    if invert is True:
        return 255 - pixels, "inverted: forced by invert=True"
    if invert is False:
        return pixels, "not inverted: forced by invert=False"
    background = _measure_border(pixels)
    if background > 127.5:
        return 255 - pixels, f"inverted: background was light (border median {background:.0f})"
    return pixels, f"not inverted: background already dark (border median {background:.0f})"


def stretch_contrast(gray: np.ndarray) -> tuple[np.ndarray, str]:
    """Flatten uneven lighting, map background → 0 and ink → 255, zero the faint noise."""
    # Local background where lighting is uneven (shadows, grey paper); None when it is even (a canvas, a scan).
    background = _estimate_background(gray)
    lighting = 0.0 if background is None else float(np.ptp(background))
    if background is None:
        # Even lighting: the border is the background. Never the whole picture's median: when ink covers half
        # the picture or more (a thick 0, a tight crop, a low-resolution digit) that median is ink.
        background = np.float32(_measure_border(gray))
    # Divide out the lighting: ink in a shadow is as strong as ink in the light (canvas: bg 0 → unchanged).
    flat = (gray - background) * 255 / np.maximum(255 - background, 32)
    # The background's level and robust noise (MAD → σ), read on the border as well, so that neither dense
    # ink nor noise is mistaken for the other.
    ring = _border_ring(flat)
    level = float(np.median(ring))
    ink = np.clip(flat - level, 0, None)
    # One-sided (the ring's darker half): ink touching the border of a tight crop cannot inflate it.
    noise = 1.4826 * float(np.median(level - ring[ring <= level]))
    candidates = ink[ink > max(6 * noise, 10.0)]
    # Ink level: 95th percentile of the ink pixels (≈ the image's 99.5th for a typical drawing, robust for tiny ones).
    top = float(np.percentile(candidates, 95)) if candidates.size >= max(4, 0.0002 * gray.size) else 0.0
    if top < MIN_INK_CONTRAST:
        if lighting:
            return np.zeros_like(gray), f"{NO_INK_NOTE} once uneven lighting (varied by {lighting:.0f} levels) " \
                                        "was flattened: light and shade, no ink"
        return np.zeros_like(gray), NO_INK_NOTE
    gain = 255 / top
    stretched = np.clip(ink * gain, 0, 255)
    # Zero the faint noise: at least 15% of 255, more for noisy photos (capped at 40%).
    floor = min(max(NOISE_FLOOR, 4 * noise * gain), 0.4 * 255)
    stretched[stretched < floor] = 0
    where = f"flattened uneven lighting (varied by {lighting:.0f} levels)" if lighting else \
        f"border median {float(background):.0f}"
    note = f"stretched: background ({where}) → 0, ink level {top:.0f} → 255; zeroed values below {floor:.0f}"
    return stretched.astype(np.float32), note


def _estimate_background(gray: np.ndarray) -> np.ndarray | None:
    """Smooth background (H, W) from local medians of a ≤32 px thumbnail, or None when lighting is even."""
    height, width = gray.shape
    # Small images (MNIST-like uploads, crops and scans of one digit) are not photos: their strokes fill any
    # local window, and a local "background" there would be the ink.
    if min(height, width) < PHOTO_SIDE:
        return None
    # A drawing's background is one exact value (photos always have noise): however dense the strokes, keep it.
    if np.mean(np.abs(gray - _measure_border(gray)) <= 1) >= 0.5:
        return None
    # Thumbnail (≤ 32 px): cheap, and averaging already suppresses pixel noise.
    small = resize_pixels(gray, fit_within(height, width, 32))
    radius = min(round(0.14 * max(small.shape)), min(small.shape) - 1)
    # Odd reflection continues gradients past the edges instead of flattening them.
    padded = np.pad(small, radius, mode="reflect", reflect_type="odd")
    windows = np.lib.stride_tricks.sliding_window_view(padded, (2 * radius + 1,) * 2)
    windows = windows.reshape(*windows.shape[:2], -1)
    # Even lighting (judged by a low percentile, which bright strokes crossing a window cannot lift): no map.
    if np.ptp(np.percentile(windows, 10, axis=-1)) < 12:
        return None
    # The local median follows shadow edges closely; windows span ~28% so strokes are ignored.
    local = np.median(windows, axis=-1).astype(np.float32)
    return np.asarray(Image.fromarray(local).resize((width, height), Image.Resampling.BILINEAR), dtype=np.float32)


def crop_to_ink(gray: np.ndarray) -> tuple[np.ndarray, str]:
    """Crop to the bounding box of the ink (above the noise floor), ignoring isolated specks."""
    background = _measure_border(gray)
    strength = np.clip(gray - background, 0, None)
    mask = strength >= NOISE_FLOOR - 0.5
    if not mask.any():
        return gray, "no ink above the noise floor: kept the whole image"
    (top, bottom, left, right), specks, edges = _find_ink_box(strength * mask, mask)
    cropped = gray[top:bottom, left:right]
    note = f"cropped to the ink's bounding box: {right - left}×{bottom - top} px at ({left}, {top})"
    if specks:
        note += f"; ignored {specks} isolated speck{'s' if specks > 1 else ''}"
    if edges:
        note += f"; ignored {edges} mark{'s' if edges > 1 else ''} along the picture's edge (paper edge, desk or shadow)"
    return cropped, note


EDGE_MARK_LENGTH = 0.25  # a mark covering this share of one side of the picture lies along its edge
EDGE_MARK_SHARE = 0.02  # other ink outweighing this share of all ink makes marks along the edge ignorable


def _find_ink_box(mass: np.ndarray, mask: np.ndarray) -> tuple[tuple[int, int, int, int], int, int]:
    """(top, bottom, left, right) of the main ink, how many isolated specks and how many marks along the
    picture's edge were left out."""
    height, width = mask.shape
    # Work on a ≤64-cell grid (block = k×k pixels): specks are judged per cell, and labelling stays cheap.
    block = max(1, math.ceil(max(height, width) / 64))
    rows, cols = math.ceil(height / block), math.ceil(width / block)
    pad = ((0, rows * block - height), (0, cols * block - width))
    grid_mass = np.pad(mass, pad).reshape(rows, block, cols, block).sum(axis=(1, 3))
    grid = np.pad(mask, pad).reshape(rows, block, cols, block).any(axis=(1, 3))
    # Dilate by one cell so diagonal steps and hairline gaps in a stroke stay one component;
    # then label the 8-connected components (0 = background, 1..count).
    grown = ndimage.binary_dilation(grid, structure=_EIGHT_NEIGHBOURS)
    labels, count = ndimage.label(grown, structure=_EIGHT_NEIGHBOURS)
    weights = np.bincount(labels.ravel(), weights=grid_mass.ravel(), minlength=count + 1)[1:]
    # Marks lying along the picture's edge (a camera frame's paper edge, desk or shadow) are not the drawing
    # when real ink lies elsewhere; a stroke that merely reaches the edge is not such a mark.
    # Only in a framed picture, though: when the rest of the ink reaches the edges too, the drawing fills the
    # picture (a tight crop) and what lies along its edge is part of it.
    at_edge = _along_edge(labels, grid, count)
    edges = 0
    inner = np.where(at_edge, 0.0, weights)
    main = np.flatnonzero(inner >= 0.2 * inner.max(initial=0)) + 1 if inner.any() else np.array([], int)
    rim = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    framed = not np.isin(main, rim).any()
    if framed and at_edge.any() and weights[~at_edge].max(initial=0) > EDGE_MARK_SHARE * weights.sum():
        edges = int(np.count_nonzero(at_edge & (weights > 0)))
        weights = np.where(at_edge, 0.0, weights)
    keep = _select_components(labels, count, weights)
    kept = np.isin(labels, keep + 1)
    full = np.repeat(np.repeat(kept, block, axis=0), block, axis=1)[:height, :width] & mask
    ys, xs = np.flatnonzero(full.any(axis=1)), np.flatnonzero(full.any(axis=0))
    specks = int(np.count_nonzero(weights > 0)) - len(keep)
    return (int(ys[0]), int(ys[-1]) + 1, int(xs[0]), int(xs[-1]) + 1), specks, edges


def _along_edge(labels: np.ndarray, grid: np.ndarray, count: int) -> np.ndarray:
    """Which components lie along the picture's edge: their ink covers EDGE_MARK_LENGTH of one side, or
    reaches two opposite sides (a line across the picture, e.g. a desk's edge once lighting is flattened)."""
    sides = []
    for side_labels, side_ink in ((labels[0], grid[0]), (labels[-1], grid[-1]), (labels[:, 0], grid[:, 0]),
                                  (labels[:, -1], grid[:, -1])):
        sides.append(np.bincount(side_labels[side_ink], minlength=count + 1)[1:] / len(side_labels))
    top, bottom, left, right = sides
    covers = np.max(sides, axis=0) >= EDGE_MARK_LENGTH
    return covers | ((top > 0) & (bottom > 0)) | ((left > 0) & (right > 0))


def _select_components(labels: np.ndarray, count: int, weights: np.ndarray) -> np.ndarray:
    """0-based indices of the components that make up the drawing: the heaviest, plus any heavy or nearby one."""
    order = [int(i) for i in np.argsort(-weights, kind="stable")]
    heaviest = weights[order[0]]
    # Anything under 1% of the heaviest is a speck wherever it is; cap the list to keep this cheap.
    candidates = [i for i in order if weights[i] >= 0.01 * heaviest][:200]
    ys, xs = np.nonzero(labels)
    ids = labels[ys, xs] - 1
    boxes = np.zeros((count, 4), dtype=np.int64)
    boxes[:, 0], boxes[:, 2] = labels.shape[0], labels.shape[1]
    np.minimum.at(boxes[:, 0], ids, ys)
    np.maximum.at(boxes[:, 1], ids, ys + 1)
    np.minimum.at(boxes[:, 2], ids, xs)
    np.maximum.at(boxes[:, 3], ids, xs + 1)
    keep = [candidates[0]]
    top, bottom, left, right = boxes[candidates[0]]
    changed = True
    while changed:
        changed = False
        for i in candidates:
            if i in keep:
                continue
            t, b, l, r = boxes[i]
            # Gap between this component and the kept box (0 when they overlap), in grid cells.
            gap = max(t - bottom, top - b, l - right, left - r, 0)
            margin = max(1.0, 0.15 * max(bottom - top, right - left))
            if weights[i] >= 0.2 * heaviest or gap <= margin:
                keep.append(i)
                top, bottom, left, right = min(top, t), max(bottom, b), min(left, l), max(right, r)
                changed = True
    return np.array(sorted(keep), dtype=np.int64)


STROKE_SIDE = 96  # strokes are normalised on the digit resampled to this longer side
STROKE_LEVEL = 0.35  # a stroke's edge is where it reaches this share of the ink level (0.5 lost faint parts)
STROKE_EDGE = 0.15  # edges ramp from black to full ink over ±this share of the ink level around that edge
STROKE_BOLD = 0.18  # strokes wider than this share of the digit's longer side are thinned… (MNIST's 95th pct: 19%)
STROKE_GOAL = 0.13  # …to about this share (MNIST's median, measured on its test digits; bench/real_inputs.py)


def normalise_strokes(gray: np.ndarray) -> tuple[np.ndarray, str]:
    """Crisp edges, and bold strokes thinned, so that a blurred, enlarged low-resolution digit or a marker's
    thick one looks like MNIST's pen strokes (bench/real_inputs.py: fewer such real digits taken as unusual)."""
    height, width = gray.shape
    top = float(gray.max())
    if top <= 0:
        return gray, "no ink: kept as it is"
    # Resample to a fixed size first, so edges and widths are judged alike on 20 px and 600 px digits.
    work = resize_pixels(gray, fit_within(height, width, STROKE_SIDE))
    ink = work >= STROKE_LEVEL * top
    stroke = _stroke_width(ink)
    note = ""
    if stroke > STROKE_BOLD:
        # Erode by the excess (round footprint), unless that would leave too little of the digit.
        steps = round((stroke - STROKE_GOAL) * max(work.shape) / 2)
        thinner = work
        for _ in range(steps):
            thinner = ndimage.grey_erosion(thinner, footprint=_ROUND)
        if np.count_nonzero(thinner >= STROKE_LEVEL * top) > 0.2 * np.count_nonzero(ink):
            work = thinner
            note = f"; thinned by {steps} px: strokes were {stroke:.0%} of the digit's size (a pen's are ~13%)"
    # A steep ramp around the edge level: soft, blurred edges become an anti-aliased pen edge.
    crisp = np.clip((work - STROKE_LEVEL * top) / (2 * STROKE_EDGE * top) + 0.5, 0, 1) * 255
    return crisp.astype(np.float32), f"edges sharpened at {crisp.shape[1]}×{crisp.shape[0]} px{note}"


_ROUND = np.hypot(*np.mgrid[-1:2, -1:2]) <= 1.0  # 3×3 plus-shaped footprint: erosion by one pixel, roundly


def _stroke_width(ink: np.ndarray) -> float:
    """Mean stroke width as a share of the picture's longer side: 2 × area ÷ perimeter of the ink mask."""
    area = np.count_nonzero(ink)
    perimeter = np.count_nonzero(ink & ~ndimage.binary_erosion(ink))
    return 2 * area / max(perimeter, 1) / max(ink.shape)


def scale_into(gray: np.ndarray, box: tuple[int, int]) -> tuple[np.ndarray, str]:
    """Resize keeping the aspect ratio so the image just fits the box (20×20 for MNIST, H×W for 'fit')."""
    height, width = gray.shape
    scale = min(box[0] / height, box[1] / width)
    size = max(1, round(height * scale)), max(1, round(width * scale))
    scaled = resize_pixels(gray, size)
    return scaled, f"resized {width}×{height} → {size[1]}×{size[0]} px keeping the aspect ratio (fits {box[1]}×{box[0]})"


def centre_in_frame(gray: np.ndarray, frame: tuple[int, int], by_mass: bool) -> tuple[np.ndarray, str]:
    """Paste into a black frame with the centre of mass (or the box centre) at the frame centre, nothing cut off."""
    height, width = gray.shape
    # Scale switched off and the image is bigger than the frame: use a proportionally larger frame.
    grow = max(1.0, height / frame[0], width / frame[1])
    frame_h, frame_w = max(height, math.ceil(frame[0] * grow - 1e-9)), max(width, math.ceil(frame[1] * grow - 1e-9))
    total = float(gray.sum())
    if by_mass and total > 0:
        cy = float((gray.sum(axis=1) * np.arange(height)).sum()) / total
        cx = float((gray.sum(axis=0) * np.arange(width)).sum()) / total
        top, left = round(frame_h / 2 - cy), round(frame_w / 2 - cx)
        how = "centre of mass"
    else:
        top, left = (frame_h - height) // 2, (frame_w - width) // 2
        how = "bounding box"
    # Clamp so nothing is cut off.
    top, left = min(max(top, 0), frame_h - height), min(max(left, 0), frame_w - width)
    framed = np.zeros((frame_h, frame_w), dtype=np.float32)
    framed[top:top + height, left:left + width] = gray
    note = f"pasted into a black {frame_w}×{frame_h} frame, {how} centred"
    if grow > 1:
        note += f" (larger than {frame[1]}×{frame[0]} because the image was not scaled)"
    return framed, note


def fit_frame(gray: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, str]:
    """Make any leftover shape exactly H×W: pad when it fits, otherwise resize (aspect ratio not kept)."""
    height, width = gray.shape
    if height <= size[0] and width <= size[1]:
        framed, _ = centre_in_frame(gray, size, by_mass=False)
        return framed, f"padded {width}×{height} to {size[1]}×{size[0]} with black (centred by its box)"
    return resize_pixels(gray, size), f"resized the whole {width}×{height} image to {size[1]}×{size[0]} (aspect ratio not kept)"


def crop_to_aspect(pixels: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, str]:
    """Centre-crop to the target's aspect ratio so resizing does not distort."""
    height, width = pixels.shape[:2]
    target = size[1] / size[0]
    if width / height > target:
        new_w = max(1, round(height * target))
        left = (width - new_w) // 2
        cropped = pixels[:, left:left + new_w]
    else:
        new_h = max(1, round(width / target))
        top = (height - new_h) // 2
        cropped = pixels[top:top + new_h]
    return cropped, f"centre-cropped {width}×{height} → {cropped.shape[1]}×{cropped.shape[0]} (aspect {size[1]}:{size[0]})"


def resize_pixels(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Antialiased resize of float (H, W) or (H, W, C) to size=(h, w): BOX when shrinking, LANCZOS when enlarging."""
    if pixels.shape[:2] == tuple(size):
        return pixels.astype(np.float32)
    shrinking = size[0] <= pixels.shape[0] and size[1] <= pixels.shape[1]
    method = Image.Resampling.BOX if shrinking else Image.Resampling.LANCZOS
    planes = pixels[..., None] if pixels.ndim == 2 else pixels
    # PIL resamples one float ("F") plane at a time.
    out = [
        np.asarray(Image.fromarray(np.ascontiguousarray(plane, dtype=np.float32)).resize((size[1], size[0]), method))
        for plane in np.moveaxis(planes, 2, 0)
    ]
    resized = np.stack(out, axis=2) if pixels.ndim == 3 else out[0]
    # LANCZOS overshoots slightly around edges.
    return np.clip(resized, 0, 255).astype(np.float32)


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """Round and clip float pixels to a read-only uint8 array for a Step."""
    out = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
    out.flags.writeable = False
    return out


def transform_image(x: np.ndarray, rotate: float = 0.0, shift: float = 0.0, scale: float = 1.0) -> np.ndarray:
    """A prepared model input (H, W, C) uint8 rotated by `rotate` degrees (counter-clockwise), shifted
    right by `shift` pixels and scaled by `scale` about its centre; uncovered pixels are black."""
    x = np.asarray(x)
    height, width = x.shape[:2]
    cx, cy = width / 2, height / 2
    # Inverse affine map (output pixel → input pixel) for PIL: scale about the centre, then shift.
    coeffs = (1 / scale, 0, cx - (cx + shift) / scale, 0, 1 / scale, cy - cy / scale)
    channels = []
    for c in range(x.shape[2]):
        image = Image.fromarray(x[..., c].astype(np.uint8), mode="L")
        if scale != 1 or shift:
            image = image.transform((width, height), Image.Transform.AFFINE, coeffs,
                                    resample=Image.Resampling.BILINEAR, fillcolor=0)
        if rotate:
            image = image.rotate(rotate, resample=Image.Resampling.BILINEAR, fillcolor=0)
        channels.append(np.asarray(image))
    return np.stack(channels, axis=-1).astype(np.uint8)


def fit_within(height: int, width: int, longest: int) -> tuple[int, int]:
    """(h, w) scaled so the longer side is `longest`."""
    scale = longest / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))

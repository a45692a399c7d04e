"""Images sent as images: many small maps become ONE picture (a PNG in one go.Image trace), not dozens of
heatmap traces; overlays, mosaics, filter and patch grids, the embedding map and the training film.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from cnn.core.text import plot_text, probability_text
from cnn.figures.style import ATTENTION, PIXELS, SIGNED, TRAIN, UNSIGNED, square_layout, value_style

# ---------------------------------------------------------------------------
# Images sent as images: many small maps become ONE picture (a PNG in one go.Image trace), not dozens of
# heatmap traces — a fraction of the bytes, drawn by the browser at once
# ---------------------------------------------------------------------------

@functools.lru_cache(maxsize=16)
def _lookup_table(colorscale: str) -> np.ndarray:
    """(256, 3) uint8 colours of a Plotly colour scale, from its low end to its high end."""
    from plotly.colors import sample_colorscale, unlabel_rgb

    colours = sample_colorscale(colorscale, list(np.linspace(0, 1, 256)), colortype="rgb")
    return np.array([unlabel_rgb(c) for c in colours]).round().clip(0, 255).astype(np.uint8)


def colorize(values, style: dict) -> np.ndarray:
    """Values → (H, W, 3) uint8 colours in the colour language (`style` from value_style); NaN cells white."""
    values = np.asarray(values, dtype=float)
    low, high = float(style["zmin"]), float(style["zmax"])
    scaled = (values - low) / (high - low if high > low else 1.0)
    index = np.clip(np.nan_to_num(scaled, nan=0.0) * 255, 0, 255).round().astype(np.intp)
    colours = _lookup_table(style["colorscale"])[index]
    colours[~np.isfinite(values)] = 255
    return colours


def square_grid(vector, count: int) -> np.ndarray:
    """The first `count` values of a vector as a square grid, one cell per value, NaN (blank) after them."""
    side = int(math.ceil(math.sqrt(count)))
    values = np.asarray(vector, dtype=float).ravel()[:count]
    return np.pad(values, (0, side * side - len(values)), constant_values=np.nan).reshape(side, side)


def enlarge(image, scale: int | None = None, side: int = 84) -> np.ndarray:
    """A small image (H, W), (H, W, 1) or (H, W, 3) `scale` times bigger (default: about `side` px), each
    pixel a sharp square — for st.image, which would smooth it. Grey comes back (H', W'), colour (H', W', 3)."""
    image = np.asarray(image)
    image = image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image
    scale = scale or max(1, side // max(image.shape[:2]))
    return np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)


def png_uri(rgb: np.ndarray, scale: int = 1) -> str:
    """A (H, W, 3) uint8 image as a PNG data URI (enlarged `scale` times with sharp pixels)."""
    import base64
    import io

    from PIL import Image

    image = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8))
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=6)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def picture(rgb: np.ndarray, title: str | None = None, height: int = 300, labels=(), style: dict | None = None,
            legend: str | None = None) -> go.Figure:
    """One image as a Plotly figure (zoomable, square pixels), with optional text labels at (row, col) and a
    colour bar for `style`. The pixels travel as one PNG."""
    rgb = np.asarray(rgb)
    scale = max(1, min(8, 512 // max(rgb.shape[:2])))  # enlarge small images so the browser keeps them sharp
    fig = go.Figure(go.Image(source=png_uri(rgb, scale), dx=1 / scale, dy=1 / scale, hoverinfo="skip"))
    # All labels in one layout update: adding annotations one by one re-validates every earlier one.
    fig.update_layout(annotations=[{"x": col, "y": row, "text": text, "showarrow": False, "xanchor": "left",
                                    "yanchor": "bottom", "font": {"size": 9, "color": "#555"}, "yshift": 1}
                                   for row, col, text in labels])
    if style is not None and legend is not None:
        bar = value_style([style["zmin"], style["zmax"]], style["colorscale"] == SIGNED, legend)
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", hoverinfo="skip", showlegend=False,
                                 marker={"colorscale": bar["colorscale"], "cmin": bar["zmin"], "cmax": bar["zmax"],
                                         "showscale": True, "colorbar": bar["colorbar"], "color": [bar["zmin"]]}))
    fig.update_xaxes(visible=False, range=[-0.5, rgb.shape[1] - 0.5], constrain="domain")
    fig.update_yaxes(visible=False, range=[rgb.shape[0] - 0.5, -1.5], scaleanchor="x")
    fig.update_layout(title=title, height=height, margin={"l": 5, "r": 5, "t": 40 if title else 5, "b": 5},
                      plot_bgcolor="white")
    return fig


def map_mosaic(maps, title: str, signed: bool | None = None, columns: int = 8, legend: str = "value",
               names=None, row_height: int = 110, min_height: int = 220) -> go.Figure:
    """(N, H, W) maps as one labelled picture on ONE shared colour scale of the colour language."""
    maps = np.asarray(maps, dtype=float)
    style = value_style(maps, signed)
    grid, corners = mosaic(maps, columns, gap=1)
    names = names if names is not None else [f"#{i}" for i in range(len(maps))]
    rows = math.ceil(len(maps) / max(1, min(columns, len(maps))))
    return picture(colorize(grid, style), title, max(min_height, row_height * rows + 60),
                   [(top, left, name) for (top, left), name in zip(corners, names)], style, legend)


def feature_maps(maps, title: str, shared_scale: bool = True, columns: int = 8, max_maps: int = 64) -> go.Figure:
    """A layer's H×W×C output as one picture of C maps on one colour scale (signed layers such as batch norm
    or tanh get the diverging scale, ReLU outputs the sequential one); `shared_scale` False scales each map
    to its own range (then no colour bar)."""
    maps = np.moveaxis(np.asarray(maps, dtype=float)[..., :max_maps], -1, 0)
    if not shared_scale:
        signed = bool((maps < 0).any())
        maps = np.stack([m / (np.abs(m).max() or 1.0) if signed else m / (m.max() or 1.0) for m in maps])
        return map_mosaic(maps, title + " (each map on its own scale)", signed, columns, legend=None)
    return map_mosaic(maps, title, None, columns, legend="activation")


def vector_bars(values, title: str, labels=None) -> go.Figure:
    """A dense layer's output vector as bars."""
    values = [float(v) for v in values]
    fig = go.Figure(go.Bar(x=labels or list(range(len(values))), y=values,
                           hovertemplate="unit %{x}: %{y:.3g}<extra></extra>"))
    fig.update_layout(title=title, height=260, xaxis={"title": "unit", "type": "category"},
                      margin={"l": 40, "r": 10, "t": 40, "b": 40})
    return fig


def kernels_grid(kernels, title: str, columns: int = 8) -> go.Figure:
    """Conv kernels (filters, K, K, Cin) channel-averaged, as one picture on the signed scale (red =
    positive weight, blue = negative)."""
    kernels = np.asarray(kernels, dtype=float).mean(axis=-1)
    return map_mosaic(kernels, title, True, columns, legend="weight", row_height=100, min_height=200)


def overlay(image, heat, title: str, colorscale: str = ATTENTION, opacity: float = 0.5) -> go.Figure:
    """`heat` (0…1) over the grayscale input: where the model looked."""
    gray = np.asarray(image, dtype=float)
    gray = gray.mean(axis=-1) if gray.ndim == 3 else gray
    fig = go.Figure([
        go.Heatmap(z=gray, colorscale=PIXELS, zmin=0, zmax=255, showscale=False, hoverinfo="skip"),
        go.Heatmap(z=heat, colorscale=colorscale, zmin=0, zmax=1, opacity=opacity, showscale=True,
                   hovertemplate="row %{y}, col %{x}: %{z:.2f}<extra></extra>"),
    ])
    square_layout(fig, 300, title)
    return fig


def sweep_lines(values, probabilities, class_names, axis_title: str, highlight: int | None = None) -> go.Figure:
    """Each class's probability as the input is transformed; the originally predicted class stands out."""
    fig = go.Figure()
    for i, name in enumerate(class_names):
        fig.add_trace(go.Scatter(x=[float(v) for v in values], y=[float(p) for p in probabilities[:, i]],
                                 mode="lines", name=plot_text(name),
                                 line={"width": 4 if i == highlight else 1.5}))
    fig.update_layout(xaxis_title=axis_title, yaxis={"title": "probability", "range": [0, 1.02],
                                                     "tickformat": ".0%"},
                      height=340, margin={"l": 50, "r": 10, "t": 20, "b": 40})
    return fig


# ---------------------------------------------------------------------------
# What the network learned (cnn.explain and cnn.teach.hierarchy): filter grids, top patches, the embedding map, the training film
# ---------------------------------------------------------------------------

GAP = 2  # pixels between tiles of a mosaic
CLASS_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                 "#bcbd22", "#17becf")  # one per class (cycled beyond ten)


def mosaic(tiles, columns: int, gap: int = GAP, fill=np.nan) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Tiles (N, h, w) or (N, h, w, C) laid out `columns` to a row with `gap` pixels of `fill` between them:
    (the mosaic array, each tile's (top, left) in it)."""
    tiles = np.asarray(tiles)
    count, h, w = tiles.shape[:3]
    cols = max(1, min(columns, count))
    rows = max(1, math.ceil(count / cols))
    dtype = float if isinstance(fill, float) and np.isnan(fill) else tiles.dtype
    out = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap, *tiles.shape[3:]), fill, dtype=dtype)
    origins = []
    for i, tile in enumerate(tiles):
        top, left = (i // cols) * (h + gap), (i % cols) * (w + gap)
        out[top:top + h, left:left + w] = tile
        origins.append((top, left))
    return out, origins


def _image_grid(tiles, columns: int, hover: list[str], customdata: list, title: str | None, note: str | None,
                tile_px: int, scale: int = 4) -> go.Figure:
    """uint8 tiles (N, h, w, C) as ONE image (go.Image of a PNG mosaic, upscaled without smoothing) plus one
    invisible marker per tile carrying its hover text and customdata (for clicks)."""
    tiles = np.asarray(tiles, np.uint8)
    if tiles.shape[-1] == 1:
        tiles = np.repeat(tiles, 3, axis=-1)  # grayscale shown as gray pixels
    pixels, origins = mosaic(tiles, columns, fill=np.uint8(255))
    big = enlarge(pixels, scale)  # crisp pixels at any zoom
    h, w = tiles.shape[1:3]
    fig = go.Figure(go.Image(source=png_uri(big), dx=1 / scale, dy=1 / scale, x0=-0.5 + 0.5 / scale,
                             y0=-0.5 + 0.5 / scale, hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=[left + (w - 1) / 2 for _, left in origins], y=[top + (h - 1) / 2 for top, _ in origins],
                             mode="markers", marker={"size": max(8, tile_px), "symbol": "square", "opacity": 0.01,
                                                     "color": "#000"},
                             hovertext=hover, hoverinfo="text", customdata=customdata, showlegend=False, name="tiles"))
    rows = math.ceil(len(tiles) / max(1, min(columns, len(tiles))))
    fig.update_xaxes(visible=False, range=[-0.5, pixels.shape[1] - 0.5], constrain="domain")
    fig.update_yaxes(visible=False, range=[pixels.shape[0] - 0.5, -0.5], scaleanchor="x")
    bottom = 40 if note else 5
    if note:
        fig.add_annotation(text=note, x=0, y=-0.01, xref="paper", yref="paper", xanchor="left", yanchor="top",
                           showarrow=False, font={"size": 12})
    fig.update_layout(title=title, height=rows * tile_px + (40 if title else 5) + bottom, plot_bgcolor="white",
                      margin={"l": 5, "r": 5, "t": 40 if title else 5, "b": bottom}, clickmode="event+select",
                      dragmode=False)
    return fig


def filters_grid(images, values=None, title: str | None = None, note: str | None = None, labels=None,
                 columns: int = 8, tile_px: int = 80) -> go.Figure:
    """What each filter (or class) looks for: the uint8 images (N, H, W, C) that excite each most, as one
    image grid; `values` (N,) their activation (or logit) for the hover; `note` under the grid (e.g. the
    layer's receptive field); `labels` names the tiles ('filter 3' by default). customdata = tile index."""
    images = np.asarray(images)
    labels = [str(label) for label in labels] if labels is not None else [f"filter {i}" for i in range(len(images))]
    hover = [f"{label}: reaches {float(values[i]):.3g}" if values is not None else label
             for i, label in enumerate(labels)]
    return _image_grid(images, columns, hover, list(range(len(images))), title, note, tile_px)


def patches_grid(patches, values, images, title: str | None = None, note: str | None = None,
                 tile_px: int = 48, filters=None) -> go.Figure:
    """Top patches: one row per filter, its k patches strongest first (uint8 (F, k, S, S, C)); hover names
    the test image and the activation; customdata = [filter, test image index] for clicks. `filters` numbers
    the rows (0, 1, … by default; pass the filter indices when showing some of a layer's filters)."""
    patches = np.asarray(patches)
    count, k = patches.shape[:2]
    number = [int(f) for f in filters] if filters is not None else list(range(count))
    hover = [f"filter {number[f]}, #{j + 1}: test image {int(images[f, j])}, activation {float(values[f, j]):.3g}"
             for f in range(count) for j in range(k)]
    custom = [[number[f], int(images[f, j])] for f in range(count) for j in range(k)]
    return _image_grid(patches.reshape(count * k, *patches.shape[2:]), k, hover, custom, title, note, tile_px)


def embedding_scatter(coords, labels, predictions, indices, class_names, confidence=None,
                      title: str | None = None, axis_titles=("1st axis", "2nd axis")) -> go.Figure:
    """The test set as the network sees it: one point per image, coloured by its true class (one legend entry
    per class: click to hide it); misclassified images drawn as ✕ in their true class's colour. customdata per
    point = [test index, true class, predicted class] so a click can show the image."""
    coords, labels, predictions = np.asarray(coords), np.asarray(labels), np.asarray(predictions)
    indices = np.asarray(indices)
    confidence = np.ones(len(labels)) if confidence is None else np.asarray(confidence)
    names = [plot_text(c) for c in class_names]
    fig = go.Figure()
    for wrong in (False, True):
        for c, name in enumerate(names):
            chosen = np.flatnonzero((labels == c) & ((labels != predictions) == wrong))
            if not len(chosen):
                continue
            colour = CLASS_COLOURS[c % len(CLASS_COLOURS)]
            fig.add_trace(go.Scattergl(
                x=coords[chosen, 0], y=coords[chosen, 1], mode="markers", name=f"{name} (wrong)" if wrong else name,
                legendgroup=name, showlegend=not wrong,
                marker={"color": colour, "size": 9 if wrong else 5, "opacity": 1.0 if wrong else 0.6,
                        "symbol": "x" if wrong else "circle", "line": {"width": 1, "color": "#000"} if wrong else None},
                customdata=np.stack([indices[chosen], labels[chosen], predictions[chosen]], axis=1),
                text=[f"{names[predictions[i]]} ({probability_text(confidence[i])})" for i in chosen],
                hovertemplate=f"test image %{{customdata[0]}}: true {name}, predicted %{{text}}<extra></extra>"))
    wrong = int(np.count_nonzero(labels != predictions))
    fig.update_layout(title=title or f"{len(labels):,} images, {wrong:,} misclassified (✕)", height=560,
                      xaxis_title=axis_titles[0], yaxis_title=axis_titles[1], clickmode="event+select",
                      legend={"title": {"text": "true class"}, "itemsizing": "constant"},
                      margin={"l": 40, "r": 10, "t": 50, "b": 40})
    return fig


def _x_of(fig: go.Figure, row: int, col: int = 1) -> str:
    """The x axis id ('x', 'x2', ...) of a subplot, for scaleanchor (square pixels)."""
    return fig.get_subplot(row, col).xaxis.plotly_name.replace("axis", "")


def film_frame(film, index: int) -> go.Figure:
    """One frame of a training film (cnn.explain.film.Film): the first conv layer's kernels (signed scale), the probe
    image's first-layer activations (sequential scale) and each weighted layer's weight histogram — every
    scale fixed over the whole film, so frames compare."""
    index = int(np.clip(index, 0, len(film) - 1))
    hist_layers = list(film.histograms)
    cols = max(1, len(hist_layers))
    has_kernels, has_acts = film.kernels.ndim == 5 and film.kernels.size > 0, bool(film.activations)
    first_act = next(iter(film.activations), None)
    titles = ([f"{film.kernel_layer} kernels"] if has_kernels else []) + \
             ([f"{first_act} on the probe image"] if has_acts else []) + [f"{n} weights" for n in hist_layers]
    top_rows = int(has_kernels) + int(has_acts)
    specs = [[{"colspan": cols}] + [None] * (cols - 1) for _ in range(top_rows)] + [[{} for _ in range(cols)]]
    fig = make_subplots(rows=top_rows + 1, cols=cols, specs=specs, subplot_titles=titles, vertical_spacing=0.08,
                        row_heights=[0.32] * top_rows + [0.36 if top_rows else 1.0])
    row = 1
    if has_kernels:
        kernels = film.kernels.mean(axis=-1)  # (T, F, K, K): channels averaged
        bound = float(np.abs(kernels).max()) or 1.0
        tiles, _ = mosaic(kernels[index], columns=8, gap=1)
        fig.add_trace(go.Heatmap(z=tiles, colorscale=SIGNED, zmin=-bound, zmax=bound, showscale=False,
                                 hovertemplate="weight %{z:.3f}<extra></extra>"), row=row, col=1)
        fig.update_yaxes(autorange="reversed", scaleanchor=_x_of(fig, row), row=row, col=1)
        row += 1
    if has_acts:
        acts = film.activations[first_act].astype(np.float32)  # (T, h, w, F)
        top = float(np.nanmax(acts)) or 1.0
        maps = np.moveaxis(acts[index], -1, 0)
        tiles, _ = mosaic(maps, columns=8, gap=1)
        fig.add_trace(go.Heatmap(z=tiles, colorscale=UNSIGNED, zmin=0 if acts.min() >= 0 else -top, zmax=top,
                                 showscale=False, hovertemplate="activation %{z:.3g}<extra></extra>"), row=row, col=1)
        fig.update_yaxes(autorange="reversed", scaleanchor=_x_of(fig, row), row=row, col=1)
        row += 1
    for col, name in enumerate(hist_layers, start=1):
        edges, counts = film.edges[name], film.histograms[name]
        centres = (edges[:-1] + edges[1:]) / 2
        fig.add_trace(go.Bar(x=centres, y=counts[index], width=float(edges[1] - edges[0]), marker_color=TRAIN,
                             hovertemplate=f"{name}: %{{y}} weights near %{{x:.3f}}<extra></extra>", showlegend=False),
                      row=row, col=col)
        fig.update_yaxes(range=[0, float(counts.max()) * 1.05 or 1], row=row, col=col)
        fig.update_xaxes(range=[float(edges[0]), float(edges[-1])], row=row, col=col)
    for r in range(1, top_rows + 1):
        fig.update_xaxes(visible=False, row=r, col=1)
        fig.update_yaxes(visible=False, row=r, col=1)
    epoch, batches = int(film.epochs[index]), int(film.batches[index])
    when = "before training" if epoch == 0 else f"after epoch {epoch}" + (
        "" if index == 0 or batches >= int(film.batches[1:].max(initial=0)) else f" (stopped after {batches} batches)")
    fig.update_layout(title=f"frame {index + 1} of {len(film)}: {when}", height=260 * top_rows + 240,
                      margin={"l": 30, "r": 10, "t": 60, "b": 30}, bargap=0, plot_bgcolor="white")
    return fig

"""Plotly figure builders: arrays and dicts in, go.Figure out (testable without a browser).

One colour language for every page (defined here, used everywhere):
  - signed values (weights, pre-activations, gradients): a diverging scale centred on 0 — blue negative,
    white 0, red positive — symmetric bounds, with a legend saying so;
  - non-negative values (after ReLU, pooling, probabilities): a sequential scale starting at 0;
  - pixels: gray 0 (black) … 255 (white); Grad-CAM / saliency: an attention scale 0 … 1 over the image.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from cnn.model.layers import LAYER_TYPES
from cnn.core.text import probability_text

TRAIN, VAL = "#1f77b4", "#ff7f0e"
SIGNED = "RdBu_r"  # blue < 0 < red, white at 0
UNSIGNED = "Viridis"  # dark = 0 … yellow = largest
PIXELS = "gray"  # black = 0 … white = 255
ATTENTION = "Inferno"  # 0 … 1: where the model looked
CHANNEL_TINTS = {"red": "#ff0000", "green": "#00c000", "blue": "#0050ff"}  # a colour image's channels


def value_style(values, signed: bool | None = None, legend: str | None = None) -> dict:
    """go.Heatmap colour arguments for `values` in the one colour language: the diverging scale with bounds
    ±max|v| when the values are signed (by default: when any is negative), else the sequential scale from 0.
    `legend` titles a colour bar (signed bars are labelled negative / 0 / positive)."""
    values = np.asarray(values, dtype=float)
    finite = values[np.isfinite(values)]
    signed = bool(finite.size and finite.min() < 0) if signed is None else signed
    top = float(np.abs(finite).max()) if finite.size else 0.0
    top = top if top > 0 else 1.0
    style = {"colorscale": SIGNED, "zmin": -top, "zmax": top} if signed else \
        {"colorscale": UNSIGNED, "zmin": 0.0, "zmax": top}
    if legend is None:
        return {**style, "showscale": False}
    ticks = [-top, 0.0, top] if signed else [0.0, top]
    labels = [f"−{top:.3g} negative", "0", f"+{top:.3g} positive"] if signed else ["0", f"{top:.3g}"]
    return {**style, "showscale": True, "colorbar": {"title": {"text": legend, "side": "right"}, "tickvals": ticks,
                                                      "ticktext": labels, "thickness": 12, "len": 0.8}}


def channel_scale(channel: str) -> list:
    """Black → the channel's own colour, for showing one channel of a colour image on 0 … 255."""
    return [[0, "#000000"], [1, CHANNEL_TINTS[channel]]]


def _clean(values) -> list:
    return [None if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in values]


def training_curves(curve: dict, epochs: dict, title: str | None = None) -> go.Figure:
    """Loss and accuracy side by side: running training values within epochs (lines) and validation at
    each epoch end (markers). x is the epoch, fractional during an epoch (1.5 = half-way through epoch 2)."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", "accuracy"), horizontal_spacing=0.08)
    for col, key in ((1, "loss"), (2, "accuracy")):
        fig.add_trace(go.Scatter(x=curve.get("step", []), y=_clean(curve.get(key, [])), mode="lines",
                                 name=f"train {key}", line={"color": TRAIN}, legendgroup="train",
                                 showlegend=col == 1), row=1, col=col)
        if epochs.get(f"val_{key}"):
            fig.add_trace(go.Scatter(x=epochs.get("epoch", []), y=_clean(epochs[f"val_{key}"]),
                                     mode="lines+markers", name=f"validation {key}", line={"color": VAL},
                                     legendgroup="val", showlegend=col == 1), row=1, col=col)
    fig.update_xaxes(title_text="epoch", rangemode="tozero")
    fig.update_yaxes(rangemode="tozero", row=1, col=1)
    fig.update_yaxes(range=[0, 1.01], row=1, col=2)
    fig.update_layout(title=title, height=340, margin={"l": 40, "r": 10, "t": 50, "b": 40},
                      legend={"orientation": "h", "y": -0.25})
    return fig


def history_curves(history: dict, title: str | None = None) -> go.Figure:
    """A saved model's curves (history.json): batch-level training points plus per-epoch validation."""
    curve = history.get("batches") or {"step": history.get("epoch", []), "loss": history.get("loss", []),
                                       "accuracy": history.get("accuracy", [])}
    return training_curves(curve, history, title)


def compare_curves(histories: dict[str, dict], metric: str = "val_accuracy") -> go.Figure:
    """One line per model: `metric` against epoch."""
    fig = go.Figure()
    for name, history in histories.items():
        fig.add_trace(go.Scatter(x=history.get("epoch", []), y=_clean(history.get(metric, [])),
                                 mode="lines+markers", name=name))
    fig.update_layout(xaxis_title="epoch", yaxis_title=metric.replace("_", " "), height=360,
                      margin={"l": 40, "r": 10, "t": 30, "b": 40}, legend={"orientation": "h", "y": -0.2})
    return fig


# ---------------------------------------------------------------------------
# Predict
# ---------------------------------------------------------------------------

LOW_CONFIDENCE = 0.6  # below this the page says the model is unsure


def probabilities_bar(probabilities, class_names, true_index: int | None = None) -> go.Figure:
    """All class probabilities; the top class highlighted (and the true class outlined, if known)."""
    # No input yet (all zero): empty bars, no class highlighted.
    top = int(max(range(len(probabilities)), key=lambda i: probabilities[i])) if max(probabilities) > 0 else -1
    colours = ["#2ca02c" if i == top else "#9ecae1" for i in range(len(probabilities))]
    lines = [2 if i == true_index else 0 for i in range(len(probabilities))]
    fig = go.Figure(go.Bar(x=[str(c) for c in class_names], y=[float(p) for p in probabilities],
                           marker={"color": colours, "line": {"width": lines, "color": "#d62728"}},
                           text=[probability_text(p) if top >= 0 else "" for p in probabilities],
                           textposition="outside",
                           hovertemplate="%{x}: %{text}<extra></extra>"))
    fig.update_layout(yaxis={"range": [0, 1.12], "tickformat": ".0%", "title": "probability"},
                      xaxis={"type": "category", "title": "class"}, height=300,
                      margin={"l": 50, "r": 10, "t": 20, "b": 40})
    return fig


def image_heatmap(image, title: str | None = None, colorscale: str = PIXELS, zmin=0, zmax=255,
                  height: int = 260, showscale: bool = False) -> go.Figure:
    """A 2-D array as a square-pixel heatmap with row 0 at the top."""
    fig = go.Figure(go.Heatmap(z=image, colorscale=colorscale, zmin=zmin, zmax=zmax, showscale=showscale,
                               hovertemplate="row %{y}, col %{x}: %{z:.3g}<extra></extra>"))
    _square(fig, height, title)
    return fig


def _square(fig: go.Figure, height: int, title: str | None) -> None:
    fig.update_yaxes(autorange="reversed", scaleanchor="x", showticklabels=False, showgrid=False)
    fig.update_xaxes(showticklabels=False, showgrid=False, constrain="domain")
    fig.update_layout(title=title, height=height, margin={"l": 5, "r": 5, "t": 30 if title else 5, "b": 5})


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
    _square(fig, 300, title)
    return fig


def sweep_lines(values, probabilities, class_names, axis_title: str, highlight: int | None = None) -> go.Figure:
    """Each class's probability as the input is transformed; the originally predicted class stands out."""
    fig = go.Figure()
    for i, name in enumerate(class_names):
        fig.add_trace(go.Scatter(x=[float(v) for v in values], y=[float(p) for p in probabilities[:, i]],
                                 mode="lines", name=str(name),
                                 line={"width": 4 if i == highlight else 1.5}))
    fig.update_layout(xaxis_title=axis_title, yaxis={"title": "probability", "range": [0, 1.02],
                                                     "tickformat": ".0%"},
                      height=340, margin={"l": 50, "r": 10, "t": 20, "b": 40})
    return fig


# ---------------------------------------------------------------------------
# Evaluate
# ---------------------------------------------------------------------------

def confusion_heatmap(confusion, class_names, normalise: bool = False) -> go.Figure:
    """Rows = true class, columns = predicted. The diagonal (right) is green, mistakes red, each on its own
    scale so the biggest confusions stand out. An invisible marker on each cell makes cells clickable."""

    counts = np.asarray(confusion)
    rows = counts.sum(axis=1, keepdims=True)
    values = counts / np.maximum(rows, 1) if normalise else counts.astype(float)
    names = [str(c) for c in class_names]
    k = len(names)
    diag = np.where(np.eye(k, dtype=bool), values, np.nan)
    off = np.where(np.eye(k, dtype=bool), np.nan, values)
    off_max = float(np.nanmax(off)) if np.isfinite(off).any() and np.nanmax(off) > 0 else 1.0
    text = [[(f"{values[i, j]:.0%}" if normalise else f"{counts[i, j]:d}") if counts[i, j] else ""
             for j in range(k)] for i in range(k)]
    hover = "true %{y}, predicted %{x}: " + ("%{z:.1%}" if normalise else "%{z:d}") + "<extra></extra>"
    fig = go.Figure([
        go.Heatmap(z=diag, x=names, y=names, colorscale="Greens", showscale=False, hovertemplate=hover,
                   zmin=0, zmax=float(np.nanmax(diag)) if np.isfinite(diag).any() else 1),
        go.Heatmap(z=off, x=names, y=names, colorscale=[[0, "#fff5f0"], [1, "#cb181d"]], zmin=0, zmax=off_max,
                   showscale=False, hovertemplate=hover),
        go.Scatter(x=[names[j] for i in range(k) for j in range(k)], y=[names[i] for i in range(k) for j in range(k)],
                   mode="markers+text", text=[text[i][j] for i in range(k) for j in range(k)],
                   customdata=[[i, j, int(counts[i, j])] for i in range(k) for j in range(k)],
                   marker={"size": max(14, 360 // k), "symbol": "square", "opacity": 0.01, "color": "#000"},
                   textfont={"size": 11 if k <= 12 else 8}, hovertemplate="true %{y}, predicted %{x}: "
                   "%{customdata[2]:d} images — click to see them<extra></extra>", name="cells",
                   showlegend=False),
    ])
    fig.update_yaxes(autorange="reversed", title="true class", type="category")
    fig.update_xaxes(title="predicted class", type="category", side="top")
    fig.update_layout(height=max(420, 36 * k + 120), margin={"l": 60, "r": 10, "t": 60, "b": 20},
                      clickmode="event+select", dragmode=False)
    return fig


def per_class_bars(rows: list[dict]) -> go.Figure:
    """Precision, recall and F1 per class."""
    fig = go.Figure([go.Bar(x=[r["class"] for r in rows], y=[r[m] for r in rows], name=m)
                     for m in ("precision", "recall", "f1")])
    fig.update_layout(barmode="group", yaxis={"range": [0, 1.02], "tickformat": ".0%"}, height=300,
                      xaxis={"type": "category"}, margin={"l": 40, "r": 10, "t": 20, "b": 40},
                      legend={"orientation": "h", "y": 1.12})
    return fig


# ---------------------------------------------------------------------------
# Learn
# ---------------------------------------------------------------------------

def _style(values, kind: str, legend: str | None = None, pixel_max: float = 255) -> dict:
    """Colour arguments for one of the kinds of values the pages show: 'pixels' (gray, 0 … pixel_max),
    'signed', 'unsigned', or 'auto' (signed when any value is negative)."""
    if kind == "pixels":
        return {"colorscale": PIXELS, "zmin": 0, "zmax": pixel_max, "showscale": False}
    if kind not in ("signed", "unsigned", "auto"):
        raise ValueError(f"kind must be pixels, signed, unsigned or auto, got {kind!r}")
    return value_style(values, None if kind == "auto" else kind == "signed", legend)


def values_heatmap(values, title: str | None = None, highlight: tuple[int, int, int, int] | None = None,
                   kind: str = "auto", fmt: str = ".2f", show_text: bool = True, height: int = 320,
                   legend: str | None = None, pixel_max: float = 255) -> go.Figure:
    """A matrix as a heatmap with each value written in its cell; `highlight` = (top, left, height, width)
    draws a box (e.g. the kernel's patch or the pooling window). NaN cells (padding) stay blank.
    `kind` picks the colour language: 'pixels', 'signed', 'unsigned' or 'auto'."""
    values = np.asarray(values, dtype=float)
    text = [["" if not np.isfinite(v) else format(v, fmt) for v in row] for row in values] if show_text else None
    heat = go.Heatmap(z=values, text=text, texttemplate="%{text}" if show_text else None, textfont={"size": 9},
                      hovertemplate="row %{y}, col %{x}: %{z:.4g}<extra></extra>",
                      **_style(values, kind, legend, pixel_max))
    fig = go.Figure(heat)
    if highlight is not None:
        top, left, h, w = highlight
        fig.add_shape(type="rect", x0=left - 0.5, x1=left + w - 0.5, y0=top - 0.5, y1=top + h - 0.5,
                      line={"color": "#00e5ff", "width": 3})
    _square(fig, height, title)
    return fig


def maps_row(maps: dict, height: int = 230, kind="auto", shared: bool = False,
             legend: str | None = None, fmt: str | None = None, pixel_max: float = 255) -> go.Figure:
    """Several 2-D maps side by side, titled by their keys, in the colour language of `kind` (one kind for
    all, or a list with one per map) — each on its own range, or one range for all when `shared`; with `fmt`
    (small maps) each value written in its cell. One figure for all: the browser draws one chart, not several."""
    fig = make_subplots(rows=1, cols=len(maps), subplot_titles=list(maps), horizontal_spacing=0.04 if fmt else 0.02)
    together = np.concatenate([np.asarray(m, float).ravel() for m in maps.values()])
    kinds = [kind] * len(maps) if isinstance(kind, str) else list(kind)
    for i, (m, k) in enumerate(zip(maps.values(), kinds)):
        style = _style(together if shared else m, k, legend if i == 0 else None, pixel_max)
        text = {} if fmt is None else {
            "text": [["" if not np.isfinite(v) else format(v, fmt) for v in row] for row in np.asarray(m, float)],
            "texttemplate": "%{text}", "textfont": {"size": 9}}
        fig.add_trace(go.Heatmap(z=m, **style, **text, hovertemplate="row %{y}, col %{x}: %{z:.3g}<extra></extra>"),
                      row=1, col=i + 1)
        fig.update_yaxes(scaleanchor=f"x{i + 1 if i else ''}", row=1, col=i + 1)  # square cells in every panel
    fig.update_yaxes(autorange="reversed", showticklabels=False)
    fig.update_xaxes(showticklabels=False, constrain="domain")
    fig.update_annotations(font_size=10)
    fig.update_layout(height=height, margin={"l": 5, "r": 5, "t": 40, "b": 5})
    return fig


def channels_row(image, height: int = 260) -> go.Figure:
    """A colour image's red, green and blue channels on ONE 0 … 255 scale, each tinted its own colour: a red
    object is bright in the red panel and dark in the others."""
    image = np.asarray(image)
    names = list(CHANNEL_TINTS)[: image.shape[-1]]
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=[f"{n} channel" for n in names],
                        horizontal_spacing=0.02)
    for i, name in enumerate(names):
        fig.add_trace(go.Heatmap(z=image[..., i], colorscale=channel_scale(name), zmin=0, zmax=255, showscale=False,
                                 hovertemplate=f"{name} at row %{{y}}, col %{{x}}: %{{z}}<extra></extra>"),
                      row=1, col=i + 1)
    fig.update_yaxes(autorange="reversed", showticklabels=False, scaleanchor="x")
    fig.update_xaxes(showticklabels=False, constrain="domain")
    fig.update_layout(height=height, margin={"l": 5, "r": 5, "t": 40, "b": 5})
    return fig


def rate_trials(trials, chosen: float, loss_before: float, others_before: float | None) -> go.Figure:
    """The one-image step tried at every learning rate: this image's loss after it (left) and, when known,
    the accuracy on held-out images (right); the chosen rate marked, the 'before' values dashed."""
    rates = [t.rate for t in trials]
    two = others_before is not None
    fig = make_subplots(rows=1, cols=2 if two else 1, horizontal_spacing=0.12, subplot_titles=(
        "loss on this image after one step", "accuracy on other test images")[: 2 if two else 1])
    # A log axis from well below to well above the starting loss; wilder values sit on its edge as triangles.
    low, high = max(loss_before, 1e-4) / 1e3, max(loss_before, 1e-4) * 30
    losses = [min(max(t.loss, low), high) for t in trials]
    fig.add_trace(go.Scatter(x=rates, y=losses, mode="lines+markers", name="loss after",
                             customdata=[t.loss for t in trials],
                             marker={"symbol": ["triangle-up" if t.loss > high else "triangle-down" if t.loss < low
                                                else "circle" for t in trials], "size": 9},
                             hovertemplate="rate %{x:g}: loss %{customdata:.4g}<extra></extra>"), row=1, col=1)
    fig.update_yaxes(range=[math.log10(low), math.log10(high)], row=1, col=1)
    fig.add_hline(y=loss_before, line={"dash": "dash", "color": "#888"}, row=1, col=1,
                  annotation_text="before", annotation_position="top left")
    if two:
        fig.add_trace(go.Scatter(x=rates, y=[t.others_accuracy for t in trials], mode="lines+markers",
                                 name="held-out accuracy", hovertemplate="rate %{x:g}: %{y:.1%}<extra></extra>"),
                      row=1, col=2)
        fig.add_hline(y=others_before, line={"dash": "dash", "color": "#888"}, row=1, col=2)
        fig.update_yaxes(range=[0, 1.02], tickformat=".0%", row=1, col=2)
    for col in range(1, 3 if two else 2):
        fig.add_vline(x=chosen, line={"color": "#d62728", "width": 2}, row=1, col=col)
    fig.update_xaxes(type="log", title_text="learning rate")
    fig.update_yaxes(type="log", row=1, col=1)
    fig.update_layout(height=300, showlegend=False, margin={"l": 50, "r": 10, "t": 40, "b": 40})
    return fig


INPUT_COLOUR = "#d9d9d9"  # the input box; each layer kind has its own colour (cnn.model.layers)


def architecture_diagram(layers, title: str) -> go.Figure:
    """Boxes left to right, one per layer (LayerInfo from cnn.model.spec.validate), labelled with kind and shape;
    box height follows the spatial size so the funnel of a CNN is visible."""
    import math as m

    fig = go.Figure()
    tallest = max(info.output_shape[0] for info in layers)
    for i, info in enumerate(layers):
        shape = info.output_shape
        size = shape[0] if len(shape) == 3 else m.sqrt(shape[0]) / 2
        h = 0.3 + 0.7 * size / tallest
        kind = LAYER_TYPES.get(info.kind)
        colour = kind.colour if kind else INPUT_COLOUR
        fig.add_shape(type="rect", x0=i - 0.4, x1=i + 0.4, y0=-h / 2, y1=h / 2, fillcolor=colour,
                      line={"color": "#444"})
        fig.add_annotation(x=i, y=h / 2 + 0.08, text=f"<b>{info.name}</b><br>{info.kind}", showarrow=False,
                           yanchor="bottom", font={"size": 10})
        fig.add_annotation(x=i, y=-h / 2 - 0.08, text=" × ".join(map(str, shape)), showarrow=False,
                           yanchor="top", font={"size": 10})
        if i:
            fig.add_annotation(x=i - 0.4, y=0, ax=i - 0.6, ay=0, xref="x", yref="y", axref="x", ayref="y",
                               showarrow=True, arrowhead=2, text="")
    fig.update_xaxes(visible=False, range=[-0.6, len(layers) - 0.4])
    fig.update_yaxes(visible=False, range=[-0.9, 0.9])
    fig.update_layout(title=title, height=300, margin={"l": 5, "r": 5, "t": 40, "b": 5}, plot_bgcolor="white")
    return fig


# ---------------------------------------------------------------------------
# Calibration and the out-of-distribution score (cnn.analysis.calibration)
# ---------------------------------------------------------------------------

FAMILIAR, UNUSUAL = "#2ca02c", "#d62728"  # below / above the OOD threshold


def reliability_diagram(before, after=None) -> go.Figure:
    """Reliability diagram: accuracy against confidence per bin (cnn.analysis.calibration.Reliability), raw softmax
    (`before`) and temperature-scaled (`after`), with the diagonal of perfect calibration. Bars below the
    diagonal are overconfident bins. The legend carries each ECE; hovering a bar gives its image count."""
    fig = go.Figure()
    centres = (before.edges[:-1] + before.edges[1:]) / 2
    width = float(before.edges[1] - before.edges[0])
    series = [("raw softmax", before, "#9ecae1")] + ([("calibrated (temperature)", after, TRAIN)] if after else [])
    for name, rel, colour in series:
        keep = rel.counts > 0
        fig.add_trace(go.Bar(x=centres[keep], y=rel.accuracy[keep], width=width * (0.9 if after is None else 0.45),
                             offset=None if after is None else (-width * 0.45 if rel is before else 0.0),
                             name=f"{name}: ECE {rel.ece:.4f}", marker={"color": colour},
                             customdata=np.stack([rel.counts[keep], rel.confidence[keep]], axis=1),
                             hovertemplate="confidence %{customdata[1]:.3f} (bin %{x:.2f}): accuracy %{y:.3f}, "
                                           "%{customdata[0]} images<extra></extra>"))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfectly calibrated",
                             line={"dash": "dash", "color": "#888"}, hoverinfo="skip"))
    fig.update_layout(xaxis={"range": [0, 1], "title": "confidence (top-class probability)", "tickformat": ".0%"},
                      yaxis={"range": [0, 1.02], "title": "accuracy in the bin", "tickformat": ".0%"},
                      height=340, margin={"l": 50, "r": 10, "t": 30, "b": 40}, barmode="overlay",
                      legend={"orientation": "h", "y": 1.12})
    return fig


def ood_histogram(scores, threshold: float, marker: float | None = None, marker_label: str = "this input",
                  title: str | None = None) -> go.Figure:
    """Distribution of OOD scores (e.g. the test split's) with the threshold; bins above it red. `marker`
    places one input's score on the same axis."""
    scores = np.asarray(scores, dtype=float)
    finite = scores[np.isfinite(scores)]
    top = max(float(np.percentile(finite, 99.5)) if finite.size else threshold, threshold, marker or -math.inf)
    low = min(float(finite.min()) if finite.size else 0.0, marker if marker is not None else math.inf)
    edges = np.linspace(low, top + 0.05 * (top - low + 1), 61)
    counts, edges = np.histogram(np.clip(finite, edges[0], edges[-1]), bins=edges)
    centres = (edges[:-1] + edges[1:]) / 2
    fig = go.Figure(go.Bar(x=centres, y=counts, width=float(edges[1] - edges[0]),
                           marker={"color": [UNUSUAL if c > threshold else FAMILIAR for c in centres]},
                           hovertemplate="score %{x:.2f}: %{y} images<extra></extra>", showlegend=False))
    flagged = float(np.mean(finite > threshold)) if finite.size else 0.0
    fig.add_vline(x=threshold, line={"color": "#333", "dash": "dash"},
                  annotation_text=f"threshold {threshold:.2f}: {flagged:.1%} above", annotation_position="top right")
    if marker is not None:
        fig.add_vline(x=marker, line={"color": UNUSUAL if marker > threshold else FAMILIAR, "width": 3},
                      annotation_text=marker_label, annotation_position="top left")
    fig.update_layout(title=title, xaxis={"title": "OOD score (higher = less like the training images)"},
                      yaxis={"title": "images"}, height=300, margin={"l": 50, "r": 10, "t": 40 if title else 30,
                                                                   "b": 40}, bargap=0)
    return fig


def ood_gauge(score: float | None, threshold: float, typical: float | None = None, height: int = 170) -> go.Figure:
    """A small gauge for one input: its score (the number) on a scale whose green part ends at the threshold
    and whose red part is 1.5 times as long (a larger score fills it); `typical` (e.g. the validation median)
    is named in the title. `score` None: the empty scale (no input yet)."""
    low = min(-abs(threshold), threshold if score is None else float(score))
    high = threshold + 1.5 * (threshold - low)
    fig = go.Figure(go.Indicator(
        mode="gauge+number", value=low if score is None else float(score),
        number={"valueformat": ".1f", "font": {"size": 26, "color": "rgba(0,0,0,0)" if score is None else None}},
        gauge={"axis": {"range": [low, high], "tickformat": ".0f"},
               "bar": {"color": UNUSUAL if score is not None and score > threshold else FAMILIAR, "thickness": 0.3},
               "steps": [{"range": [low, threshold], "color": "#dff0d8"}, {"range": [threshold, high],
                                                                        "color": "#f8d7da"}],
               "threshold": {"line": {"color": "#333", "width": 3}, "thickness": 0.9, "value": float(threshold)}},
        title={"text": "unusual above the line" if typical is None else
               f"unusual above the line · typical {typical:.1f}", "font": {"size": 12}}))
    fig.update_layout(height=height, margin={"l": 20, "r": 20, "t": 40, "b": 5})
    return fig


def temperature_bars(class_names, raw, calibrated, temperature: float) -> go.Figure:
    """Softmax before and after dividing the logits by the temperature, side by side: both add up to 1."""
    names = [str(c) for c in class_names]
    fig = go.Figure([go.Bar(x=names, y=[float(p) for p in raw], name="softmax(logits)", marker={"color": "#9ecae1"},
                            text=[probability_text(p) for p in raw], hovertemplate="%{x}: %{text}<extra></extra>"),
                     go.Bar(x=names, y=[float(p) for p in calibrated], name=f"softmax(logits / {temperature:.2f})",
                            marker={"color": TRAIN}, text=[probability_text(p) for p in calibrated],
                            hovertemplate="%{x}: %{text}<extra></extra>")])
    fig.update_traces(textposition="none")
    fig.update_layout(barmode="group", yaxis={"range": [0, 1.05], "tickformat": ".0%", "title": "probability"},
                      xaxis={"type": "category", "title": "class"}, height=300,
                      margin={"l": 50, "r": 10, "t": 20, "b": 40}, legend={"orientation": "h", "y": 1.12})
    return fig


def distance_bars(class_names, distances, typical: dict) -> go.Figure:
    """Distance of the input's features to every class centre (Mahalanobis), with the band where training
    images sit from their own class's centre (median, 95th and 99th percentile lines). The nearest centre is
    highlighted; if even it is beyond the 99th percentile, the input is far from everything the model knows."""
    distances = np.asarray(distances, dtype=float)
    nearest = int(distances.argmin())
    colour = UNUSUAL if distances[nearest] > typical["p99"] else FAMILIAR
    fig = go.Figure(go.Bar(x=[str(c) for c in class_names], y=distances,
                           marker={"color": [colour if i == nearest else "#c7c7c7" for i in range(len(distances))]},
                           hovertemplate="centre of %{x}: distance %{y:.1f}<extra></extra>", showlegend=False))
    for key, dash, label in (("p50", "dot", "typical training digit"), ("p95", "dash", "95% of training digits"),
                             ("p99", "solid", "99%")):
        fig.add_hline(y=typical[key], line={"dash": dash, "color": "#555", "width": 1},
                      annotation_text=f"{label}: {typical[key]:.1f}", annotation_position="top left")
    fig.update_layout(xaxis={"type": "category", "title": "class centre"},
                      yaxis={"title": "distance in feature space", "rangemode": "tozero"}, height=300,
                      margin={"l": 50, "r": 10, "t": 20, "b": 40})
    return fig


# ---------------------------------------------------------------------------
# What the network learned (cnn.explain.features): filter grids, top patches, the embedding map, the training film
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
    big = np.kron(pixels, np.ones((scale, scale, 1), np.uint8))  # crisp pixels at any zoom
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
    names = [str(c) for c in class_names]
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
    """One frame of a training film (cnn.explain.features.Film): the first conv layer's kernels (signed scale), the probe
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

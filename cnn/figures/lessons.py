"""The Learn page's figures: values as heatmaps, rows of maps and channels, learning-rate trials and the
architecture diagram.
"""
from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from cnn.figures.style import CHANNEL_TINTS, PIXELS, channel_scale, square_layout, value_style
from cnn.model.layers import LAYER_TYPES

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
    square_layout(fig, height, title)
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

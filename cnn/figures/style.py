"""One colour language for every page (defined here, used everywhere):
  - signed values (weights, pre-activations, gradients): a diverging scale centred on 0 — blue negative,
    white 0, red positive — symmetric bounds, with a legend saying so;
  - non-negative values (after ReLU, pooling, probabilities): a sequential scale starting at 0;
  - pixels: gray 0 (black) … 255 (white); Grad-CAM / saliency: an attention scale 0 … 1 over the image.

The figure builders (cnn.figures.*) take arrays and dicts and return go.Figure: testable without a browser.
"""
from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go

TRAIN, VAL = "#1f77b4", "#ff7f0e"  # training and validation curves
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


def clean_values(values) -> list:
    return [None if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in values]


def square_layout(fig: go.Figure, height: int, title: str | None) -> None:
    fig.update_yaxes(autorange="reversed", scaleanchor="x", showticklabels=False, showgrid=False)
    fig.update_xaxes(showticklabels=False, showgrid=False, constrain="domain")
    fig.update_layout(title=title, height=height, margin={"l": 5, "r": 5, "t": 30 if title else 5, "b": 5})

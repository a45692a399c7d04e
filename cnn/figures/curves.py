"""Line and bar charts of training and evaluation: learning curves, run comparisons, the confusion matrix
and per-class bars.
"""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from cnn.core.text import plot_text
from cnn.figures.style import TRAIN, VAL, clean_values


def training_curves(curve: dict, epochs: dict, title: str | None = None) -> go.Figure:
    """Loss and accuracy side by side: running training values within epochs (lines) and validation at
    each epoch end (markers). x is the epoch, fractional during an epoch (1.5 = half-way through epoch 2)."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", "accuracy"), horizontal_spacing=0.08)
    for col, key in ((1, "loss"), (2, "accuracy")):
        fig.add_trace(go.Scatter(x=curve.get("step", []), y=clean_values(curve.get(key, [])), mode="lines",
                                 name=f"train {key}", line={"color": TRAIN}, legendgroup="train",
                                 showlegend=col == 1), row=1, col=col)
        if epochs.get(f"val_{key}"):
            fig.add_trace(go.Scatter(x=epochs.get("epoch", []), y=clean_values(epochs[f"val_{key}"]),
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
        fig.add_trace(go.Scatter(x=history.get("epoch", []), y=clean_values(history.get(metric, [])),
                                 mode="lines+markers", name=name))
    fig.update_layout(xaxis_title="epoch", yaxis_title=metric.replace("_", " "), height=360,
                      margin={"l": 40, "r": 10, "t": 30, "b": 40}, legend={"orientation": "h", "y": -0.2})
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
    names = [plot_text(c) for c in class_names]
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

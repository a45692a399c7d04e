"""Plotly figure builders: arrays and dicts in, go.Figure out (testable without a browser)."""
from __future__ import annotations

import math

import plotly.graph_objects as go
from plotly.subplots import make_subplots

TRAIN, VAL = "#1f77b4", "#ff7f0e"


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

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


# ---------------------------------------------------------------------------
# Predict
# ---------------------------------------------------------------------------

LOW_CONFIDENCE = 0.6  # below this the page says the model is unsure


def probabilities_bar(probabilities, class_names, true_index: int | None = None) -> go.Figure:
    """All class probabilities; the top class highlighted (and the true class outlined, if known)."""
    top = int(max(range(len(probabilities)), key=lambda i: probabilities[i]))
    colours = ["#2ca02c" if i == top else "#9ecae1" for i in range(len(probabilities))]
    lines = [2 if i == true_index else 0 for i in range(len(probabilities))]
    fig = go.Figure(go.Bar(x=[str(c) for c in class_names], y=[float(p) for p in probabilities],
                           marker={"color": colours, "line": {"width": lines, "color": "#d62728"}},
                           text=[f"{p:.1%}" for p in probabilities], textposition="outside",
                           hovertemplate="%{x}: %{y:.2%}<extra></extra>"))
    fig.update_layout(yaxis={"range": [0, 1.12], "tickformat": ".0%", "title": "probability"},
                      xaxis={"type": "category", "title": "class"}, height=300,
                      margin={"l": 50, "r": 10, "t": 20, "b": 40})
    return fig


def image_heatmap(image, title: str | None = None, colorscale: str = "gray", zmin=0, zmax=255,
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


def feature_maps(maps, title: str, shared_scale: bool = True, columns: int = 8, max_maps: int = 64) -> go.Figure:
    """A layer's H×W×C output as a grid of C heatmaps (one per channel)."""
    import numpy as np

    maps = np.asarray(maps)
    count = min(maps.shape[-1], max_maps)
    cols = min(columns, count)
    rows = math.ceil(count / cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[f"#{i}" for i in range(count)],
                        horizontal_spacing=0.01, vertical_spacing=0.04 if rows > 1 else 0.02)
    lo, hi = float(maps[..., :count].min()), float(maps[..., :count].max())
    for i in range(count):
        m = maps[..., i]
        zmin, zmax = (lo, hi) if shared_scale else (float(m.min()), float(m.max()))
        fig.add_trace(go.Heatmap(z=m, zmin=zmin, zmax=zmax if zmax > zmin else zmin + 1e-6, colorscale="Viridis",
                                 showscale=shared_scale and i == 0,
                                 hovertemplate=f"map {i}<br>row %{{y}}, col %{{x}}: %{{z:.3g}}<extra></extra>"),
                      row=i // cols + 1, col=i % cols + 1)
    fig.update_yaxes(autorange="reversed", showticklabels=False, scaleanchor="x")
    fig.update_xaxes(showticklabels=False, constrain="domain")
    fig.update_annotations(font_size=9)
    fig.update_layout(title=title, height=max(220, 130 * rows + 60), margin={"l": 5, "r": 5, "t": 50, "b": 5})
    return fig


def vector_bars(values, title: str, labels=None) -> go.Figure:
    """A dense layer's output vector as bars."""
    values = [float(v) for v in values]
    fig = go.Figure(go.Bar(x=labels or list(range(len(values))), y=values,
                           hovertemplate="unit %{x}: %{y:.3g}<extra></extra>"))
    fig.update_layout(title=title, height=260, xaxis_title="unit", margin={"l": 40, "r": 10, "t": 40, "b": 40})
    return fig


def kernels_grid(kernels, title: str, columns: int = 8) -> go.Figure:
    """Conv kernels (filters, K, K, Cin) as heatmaps, channel-averaged, red = positive, blue = negative."""
    import numpy as np

    kernels = np.asarray(kernels).mean(axis=-1)
    count = len(kernels)
    cols = min(columns, count)
    rows = math.ceil(count / cols)
    bound = float(np.abs(kernels).max()) or 1.0
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[f"#{i}" for i in range(count)],
                        horizontal_spacing=0.01, vertical_spacing=0.05 if rows > 1 else 0.02)
    for i, k in enumerate(kernels):
        fig.add_trace(go.Heatmap(z=k, zmin=-bound, zmax=bound, colorscale="RdBu", reversescale=True,
                                 showscale=i == 0, hovertemplate=f"filter {i}: %{{z:.3f}}<extra></extra>"),
                      row=i // cols + 1, col=i % cols + 1)
    fig.update_yaxes(autorange="reversed", showticklabels=False, scaleanchor="x")
    fig.update_xaxes(showticklabels=False, constrain="domain")
    fig.update_annotations(font_size=9)
    fig.update_layout(title=title, height=max(200, 120 * rows + 60), margin={"l": 5, "r": 5, "t": 50, "b": 5})
    return fig


def overlay(image, heat, title: str, colorscale: str = "Jet", opacity: float = 0.45) -> go.Figure:
    """`heat` (0…1) over the grayscale input: where the model looked."""
    import numpy as np

    gray = np.asarray(image, dtype=float)
    gray = gray.mean(axis=-1) if gray.ndim == 3 else gray
    fig = go.Figure([
        go.Heatmap(z=gray, colorscale="gray", zmin=0, zmax=255, showscale=False, hoverinfo="skip"),
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

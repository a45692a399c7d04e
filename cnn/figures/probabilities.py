"""Predict's probabilities, and the calibration and out-of-distribution charts (cnn.analysis.calibration).
"""
from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go

from cnn.core.text import plot_text, probability_text
from cnn.figures.style import PIXELS, TRAIN, square_layout

# ---------------------------------------------------------------------------
# Predict
# ---------------------------------------------------------------------------



def probabilities_bar(probabilities, class_names, true_index: int | None = None) -> go.Figure:
    """All class probabilities; the top class highlighted (and the true class outlined, if known)."""
    # No input yet (all zero): empty bars, no class highlighted.
    top = int(max(range(len(probabilities)), key=lambda i: probabilities[i])) if max(probabilities) > 0 else -1
    colours = ["#2ca02c" if i == top else "#9ecae1" for i in range(len(probabilities))]
    lines = [2 if i == true_index else 0 for i in range(len(probabilities))]
    fig = go.Figure(go.Bar(x=[plot_text(c) for c in class_names], y=[float(p) for p in probabilities],
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
    square_layout(fig, height, title)
    return fig


# ---------------------------------------------------------------------------
# Calibration and the out-of-distribution score (cnn.analysis.calibration)
# ---------------------------------------------------------------------------

FAMILIAR, UNUSUAL = "#2ca02c", "#d62728"  # below / above the OOD threshold


def reliability_diagram(before, after=None) -> go.Figure:
    """Reliability diagram: accuracy against confidence per bin (cnn.analysis.temperature.Reliability), raw softmax
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
    names = [plot_text(c) for c in class_names]
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
    fig = go.Figure(go.Bar(x=[plot_text(c) for c in class_names], y=distances,
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

"""What a conv layer learned, in two views side by side — the input each filter wants most (activation
maximisation) and the real test patches that excite it most — shared by "What it learned" and Learn's walk
through the hierarchy. Every result comes from app/resources.py, computed once per model file."""
from __future__ import annotations

import numpy as np
import streamlit as st

from app import chrome, resources
from cnn.figures.pictures import filters_grid, patches_grid

ROW = 8  # filters per row of the filter grid; the top patches are shown for one such row at a time
NO_BAR = {"displayModeBar": False}


def test_data(info):
    """The model's dataset for the views built from real test images, or None after saying why it is not here
    (not available, or its images no longer have the model's input shape)."""
    from app import chrome
    from cnn.core.errors import CnnError

    try:
        data = resources.model_dataset(info)
    except CnnError as exc:
        st.info(f"The views built from real test images need the model's dataset, which is not available here: "
                f"{exc}")
        return None
    if tuple(data.input_shape) != tuple(info.input_shape):
        st.info(f"The model takes {'×'.join(map(str, info.input_shape))} images but its dataset now has "
                f"{'×'.join(map(str, data.input_shape))}: the views built from real images are left out.")
        return None
    chrome.show_dataset_note(info, data)
    return data


def field_note(field) -> str:
    """'Receptive field 14×14 px (25% of the 28×28 image), stride 2' — what one value of the layer sees."""
    return field.text[0].upper() + field.text[1:]


def row_label(row: int, filters: int) -> str:
    """'8–15': the filters in row `row` of the grid."""
    return f"{row * ROW}–{min(filters, (row + 1) * ROW) - 1}"


def outline_row(fig, row: int, tile: int, filters: int, gap: int = 2) -> None:
    """A red frame around row `row` of a filters_grid of `tile`-px tiles: the filters whose patches are shown."""
    top, height = row * (tile + gap), tile
    width = min(ROW, filters) * (tile + gap) - gap
    fig.add_shape(type="rect", x0=-0.5, x1=width - 0.5, y0=top - 0.5, y1=top + height - 0.5,
                  line={"color": "#d62728", "width": 3})


def clicked_values(event) -> list | None:
    """The customdata of the first clicked point of a chart's selection, as a list, or None. (A point of a
    trace whose customdata was sent as a typed array arrives as {"0": …, "1": …}.)"""
    points = event.get("selection", {}).get("points", []) if isinstance(event, dict) else []
    custom = points[0].get("customdata") if points and isinstance(points[0], dict) else None
    if custom is None:
        return None
    if isinstance(custom, dict):
        return [custom[k] for k in sorted(custom, key=lambda k: int(k))]
    return list(custom) if isinstance(custom, (list, tuple)) else [custom]


def clicked_filter(event) -> int | None:
    """The filter index of a click on a filters_grid (its customdata), or None."""
    values = clicked_values(event)
    return int(values[0]) if values else None


def computing(layer: str, filters: int) -> str:
    """The spinner's words while a layer's filters are visualised."""
    return (f"Finding the input each of {layer}'s {filters} filters responds to most (gradient ascent on the "
            "image, a few seconds, once per model)…")


@chrome.fragment
def layer_pair(info, model, data, name: str, depth: int, total: int, field, key: str) -> None:
    """One conv layer: its filters' favourite inputs (with the receptive field under them) beside the real
    patches that excite one row of those filters most. A click on a filter, or the row picker, reruns only
    this layer."""
    st.subheader(f"{name} · conv layer {depth} of {total}")
    st.caption(f"Each of its values sees **{field.size}×{field.size} px** of the image ({field.share:.0%} of it).")
    with st.spinner(computing(name, int(model.get_layer(name).filters))):
        maxed = resources.maximised(info, name)
    filters = len(maxed.units)
    rows = (filters + ROW - 1) // ROW
    grid, picker = f"{key}_filters_{name}", f"{key}_row_{name}"
    # A click on a filter (the grid's selection, kept from the last run) shows its row's patches.
    clicked, last_click = clicked_filter(st.session_state.get(grid)), f"{picker}_clicked"
    if clicked is not None and clicked != st.session_state.get(last_click) and clicked < filters:
        st.session_state[picker] = clicked // ROW
    st.session_state[last_click] = clicked
    if st.session_state.get(picker) not in range(rows):
        st.session_state[picker] = 0
    row = st.session_state[picker]
    left, right = st.columns(2, gap="medium")
    with left:
        figure = filters_grid(maxed.images, maxed.values, title=f"What each of its {filters} filters looks for",
                              note=field_note(field), columns=ROW, tile_px=64)
        if data is not None:
            outline_row(figure, row, maxed.images.shape[1], filters)
        st.plotly_chart(figure, key=grid, on_select="rerun", selection_mode="points", config=NO_BAR)
        st.caption("Each tile is the input image that excites one filter most, found by gradient ascent from grey "
                   "noise. Hover a tile for its filter" + ("; click one to see the real patches that excite it "
                                                          "(framed in red)." if data is not None else "."))
    with right:
        if data is None:
            st.info("The real patches need the model's test images, which are not available here.")
            return
        with st.spinner(f"Finding the test-image patches that excite each filter most (one pass over "
                        f"{len(data.x_test):,} images, once per model)…"):
            patches = resources.top_patches(info, data)[name]
        if rows > 1:
            row = st.segmented_control("Filters", list(range(rows)), key=picker, required=True,
                                       format_func=lambda r: row_label(r, filters))
        chosen = np.arange(row * ROW, min(filters, (row + 1) * ROW))
        st.plotly_chart(
            patches_grid(patches.patches[chosen], patches.values[chosen], patches.images[chosen],
                         title=f"Real test patches that excite filters {chosen[0]}–{chosen[-1]} most",
                         note=f"One row per filter, strongest first: the {field.size}×{field.size} px each value sees",
                         tile_px=44, filters=chosen),
            key=f"{key}_patches_{name}", config=NO_BAR)


# ---------------------------------------------------------------------------
# The film of training (Train while it runs, Models afterwards)
# ---------------------------------------------------------------------------

def frame_label(film, index: int) -> str:
    epoch = int(film.epochs[index])
    return "before training" if epoch == 0 else f"after epoch {epoch}"


def film_player(film, key: str, class_names=None) -> None:
    """A slider over the film's frames (the last one at first) and that frame: the first conv layer's kernels,
    its maps of the probe image and every weighted layer's weight histogram, on scales fixed for the whole film.
    While training adds frames (also the last ones, which may arrive as it ends), a slider left at the end follows
    to the newest; one moved back stays where it was put."""
    from cnn.figures.pictures import film_frame

    frames = len(film)
    if frames < 2:
        index = 0
        st.caption("The first frame, before training: a frame is added at the end of every epoch.")
    else:
        seen = f"{key}_seen"  # frames there were when the slider was last drawn
        value = st.session_state.get(key)
        at_end = value == st.session_state.get(seen, frames) - 1
        if value not in range(frames) or at_end:
            st.session_state[key] = frames - 1
        st.session_state[seen] = frames
        index = st.select_slider("Frame", options=list(range(frames)), key=key,
                                 format_func=lambda i: frame_label(film, i),
                                 help="Drag to replay training; every picture keeps one scale for the whole film")
    st.plotly_chart(film_frame(film, index), key=f"{key}_figure", config=NO_BAR)
    kernels = f"the {film.kernel_layer} kernels (red = positive weight, blue = negative)" if film.kernel_layer else \
        "the kernels"
    known = class_names is not None and 0 <= film.probe_label < len(class_names)
    probe = f"test image (a {class_names[film.probe_label]})" if known else "test image"
    st.caption(f"From the top: {kernels}; what they make of one {probe} (the same image in every frame); the "
               "spread of every layer's weights. Training starts from random weights: watch the kernels turn into "
               "stroke detectors and the weights spread out.")

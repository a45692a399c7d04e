"""Learn: how a CNN works, computed live on the user's own image with the active model's weights, in nine
chapters shown one at a time (the chapter picker at the top, Previous / Next at the bottom).

Every number comes from cnn.teach.walkthrough (plain NumPy on the model's weights) or the model itself, and where
both exist the page shows that they agree. This page only reads its controls and draws. One chapter at a time
keeps every step light in the browser: the whole walk at once was some twenty charts to draw and to take down.
A chapter's controls keep their values while other chapters are shown (session.Kept): ReLU and pooling go on
from the convolution set in chapter 2, the learning step shows the filter picked there.
"""
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import streamlit as st

from app import chrome, learned, resources, session
from cnn.teach import lessons, walkthrough
from cnn.data.datasets import dataset_title
from cnn.core.errors import CnnError
from cnn.teach.softmax import softmax_lesson
from cnn.figures.lessons import architecture_diagram, channels_row, maps_row, rate_trials, values_heatmap
from cnn.figures.probabilities import distance_bars, temperature_bars
from cnn.figures.pictures import square_grid, vector_bars
from cnn.teach.learning import LEARNING_RATES, runner_up
from cnn.analysis.inference import conv_layers
from cnn.model.spec import ModelSpec, SpecError, preset, validate
from cnn.core.text import markdown_text, probability_text

tab = chrome.page_setup()

CHAPTERS = ["1 · Pixels and channels", "2 · Convolution", "3 · ReLU", "4 · Pooling", "5 · Flatten, dense, softmax",
            "6 · Why “99.9%” is not certainty", "7 · Dropout", "8 · Learning: one gradient-descent step",
            "9 · The hierarchy"]
SHORT = ["1 Pixels", "2 Convolution", "3 ReLU", "4 Pooling", "5 Dense & softmax", "6 Certainty", "7 Dropout",
         "8 Learning", "9 Hierarchy"]  # the chapter picker's labels
CHAPTER = "learn_chapter"  # the chapter picker (kept when you leave Learn and come back)
SCROLL = "learn_scroll"  # Previous / Next was clicked: the next run scrolls to the top of the chapter


@dataclass(frozen=True)
class Reading:
    """What every chapter shows: the active model, the image it follows, the walk of that image through the
    model, and the chapters' kept settings."""

    info: object  # cnn.store.registry.ModelInfo of the active model
    model: object  # its Keras model
    x: np.ndarray  # the image followed (uint8, the model's input shape)
    walk: object  # cnn.teach.walkthrough.walk(model, x)
    kept: session.Kept  # the chapters' settings, forgotten with another model


def source_image(info):
    """(image uint8 H×W×C, where it came from, true label or None)."""
    got = st.session_state.get(session.PREDICT_INPUT)
    if got is not None and tuple(got["x"].shape) == tuple(info.input_shape):
        return got["x"], "your image from **Predict**", got.get("label")
    data = resources.model_dataset(info)
    return data.x_test[0], (f"test image #0 of {dataset_title(data.name)} (draw on **Predict** to use your "
                            "own)"), int(data.y_test[0])


def position_ui(r: Reading, shape, label: str, key: str) -> tuple[int, int]:
    """A (row, column) in a map of `shape`: a slider per axis, 0 when the axis is one cell long."""
    cols = st.columns(2)
    return tuple(r.kept.widget(col.slider, f"{label} {axis}", 0, n - 1, n // 2, key=f"{key}_{axis[:3]}",
                             valid=lambda v, n=n: 0 <= v < n) if n > 1 else 0
                 for col, n, axis in zip(cols, shape, ("row", "column")))


def agree(label: str, difference: float) -> None:
    """Say whether NumPy and Keras agree (to walkthrough.AGREE)."""
    if difference <= walkthrough.AGREE:
        st.success(f"{label}: NumPy and Keras agree, max |difference| = {difference:.1e}")
    else:
        st.error(f"{label}: NumPy and Keras DISAGREE, max |difference| = {difference:.1e}")


# ---------------------------------------------------------------------------
# Chapter 2's settings, which chapters 3, 4 and 8 go on from
# ---------------------------------------------------------------------------

def kernel_options(r: Reading) -> list[str]:
    return [*lessons.KERNELS, "custom"] + (["model filter"] if r.walk.first_conv else [])


def kernel_ui(r: Reading, cols) -> None:
    """The kernel controls: a named kernel, a custom one (an editable table) or one of the model's filters."""
    options = kernel_options(r)
    choice = r.kept.widget(cols[0].selectbox, "Kernel", options, index=len(options) - 1 if r.walk.first_conv else 0,
                         key="learn_kernel")
    if choice == "custom":
        size = r.kept.widget(cols[3].radio, "Size", [3, 5], horizontal=True, key="learn_custom_size")
        table = f"learn_custom_{size}"
        if table not in st.session_state:  # drawn (again): start from the kernel as it was last edited
            r.kept.put(f"{table}_start", custom_kernel(r, size))
        edited = st.data_editor(pd.DataFrame(r.kept.values[f"{table}_start"], columns=[str(i) for i in range(size)]),
                                key=table, width="content")
        r.kept.put(f"{table}_kernel", edited.to_numpy(dtype=float))
    elif choice == "model filter":
        filters = r.model.get_layer(r.walk.first_conv).get_weights()[0].shape[-1]
        r.kept.widget(cols[3].slider, f"{r.walk.first_conv} filter", 0, filters - 1, 0, key="learn_filter")


def custom_kernel(r: Reading, size: int) -> np.ndarray:
    """The custom kernel as last edited; at first the identity (1 in the centre), to edit."""
    start = np.zeros((size, size))
    start[size // 2, size // 2] = 1.0
    return r.kept.get(f"learn_custom_{size}_kernel", start)


def convolved(r: Reading):
    """(chapter 2's convolution with its current or kept settings, a few words naming them), or (None, why)."""
    options = kernel_options(r)
    choice = r.kept.get("learn_kernel", options[-1] if r.walk.first_conv else options[0])
    stride, padding = r.kept.get("learn_stride", 1), r.kept.get("learn_padding", "valid")
    filter_index = r.kept.get("learn_filter", 0) if choice == "model filter" else 0
    kernel = custom_kernel(r, r.kept.get("learn_custom_size", 3)) if choice == "custom" else choice
    named = f"filter {filter_index} of {r.walk.first_conv}" if choice == "model filter" else f"the {choice} kernel"
    try:
        conv = walkthrough.convolution(r.model, r.walk, kernel, stride, padding, filter_index)
    except ValueError as exc:
        return None, str(exc)
    return conv, f"{named}, stride {stride}, padding '{padding}'"


def from_chapter_2(r: Reading, then: str = ""):
    """Chapter 2's convolution for a chapter that goes on from it, named in a caption; None after saying why not."""
    conv, settings = convolved(r)
    if conv is None:
        st.error(f"{settings} Change the convolution in **2 · Convolution**.")
        return None
    st.caption(f"Going on from chapter 2's convolution: {settings}{then} (change them in **2 · Convolution**).")
    return conv


# ---------------------------------------------------------------------------
# The chapters
# ---------------------------------------------------------------------------

def pixels_chapter(r: Reading) -> None:
    px = walkthrough.pixels(r.x)
    H, W, C = px.shape
    st.markdown(f"To the network an image is a grid of numbers: **{H} × {W} pixels × {C} "
                f"channel{'s' if C > 1 else ''}**, each 0 (black) … 255 (white). This one has **{px.ink} ink pixels** "
                f"(pixels where a channel is above 0); min {px.minimum}, max {px.maximum}, mean {px.mean:.1f}. Zoom in "
                "to read the values.")
    if C == 1:
        st.plotly_chart(values_heatmap(r.x[..., 0], kind="pixels", fmt=".0f", height=560), width="stretch",
                        key="learn_pixels")
        st.caption("Grayscale = one channel. The model divides every value by 255 first (its Rescaling layer).")
    else:
        st.plotly_chart(channels_row(r.x), width="stretch", key="learn_pixels")
        st.caption("Colour = three channels, each its own grid of 0 … 255, drawn here on one scale in its own "
                   "colour: a red object is bright in the red panel and dark in the others. A conv kernel has one "
                   "slice per channel.")


def convolution_chapter(r: Reading) -> None:
    cols = st.columns(4)
    kernel_ui(r, cols)
    r.kept.widget(cols[1].selectbox, "Stride", [1, 2, 3], key="learn_stride")
    r.kept.widget(cols[2].radio, "Padding", ["valid", "same"], horizontal=True, key="learn_padding")
    conv, settings = convolved(r)
    if conv is None:
        st.error(settings)
        return
    row, col = position_ui(r, conv.feature.shape, "Output", "learn")
    at = conv.at(row, col)
    if conv.slices is not None and r.x.shape[-1] > 1:
        st.caption("Colour: the kernel has one K×K slice per channel; shown for the red channel, the value sums all "
                   "three.")
    left, right = st.columns(2)
    left.plotly_chart(values_heatmap(conv.source if conv.source.ndim == 2 else conv.source.mean(axis=-1),
                                     "input ÷ 255, the patch outlined", (at.top, at.left, conv.size, conv.size),
                                     kind="pixels", pixel_max=1, show_text=False, height=360), width="stretch",
                      key="learn_conv_input")
    right.plotly_chart(values_heatmap(conv.feature, f"feature map {conv.feature.shape[0]}×{conv.feature.shape[1]}, "
                                      f"output ({row}, {col}) outlined", (row, col, 1, 1), kind="signed",
                                      legend="value", show_text=False, height=360), width="stretch",
                       key="learn_conv_output")
    st.plotly_chart(maps_row({"patch": at.window, "kernel": conv.kernel, "patch ⊙ kernel": at.products},
                             kind=["pixels", "signed", "signed"], fmt=".2f", pixel_max=1, height=260),
                    width="stretch", key="learn_products")
    bias_text = f" + bias {conv.bias:.4f} = **{at.value:.4f}**" if conv.filter_index is not None else ""
    st.markdown(f"Sum of the {conv.size * conv.size} products = **{at.value - conv.bias:.4f}**{bias_text} — the value "
                f"at output ({row}, {col}).")
    st.markdown(f"Output size ⌊(W − K + 2P)/S⌋ + 1 with your numbers: height {conv.formulas[0]}, width "
                f"{conv.formulas[1]}.")
    st.markdown("**Many filters, many features**: each kernel finds something different in the same image. "
                "Signed maps use the diverging scale (blue negative, white 0, red positive); maps that cannot go "
                "below 0 (the blur) use the sequential one.")
    st.plotly_chart(maps_row(walkthrough.classic_maps(r.walk, conv.stride, conv.padding)), width="stretch",
                    key="learn_many")
    if conv.keras_difference is not None:
        agree(f"{conv.layer}, filter {conv.filter_index}, after {conv.activation}", conv.keras_difference)
    elif conv.layer_setup is not None:
        st.caption(f"Set stride {conv.layer_setup[0]} and padding '{conv.layer_setup[1]}' (the layer's own) to "
                   f"compare with Keras's {conv.layer}.")


def relu_chapter(r: Reading) -> None:
    conv = from_chapter_2(r)
    if conv is None:
        return
    activated = walkthrough.relu(conv.feature)
    st.plotly_chart(maps_row({"before ReLU (signed)": activated.before, "after ReLU = max(0, x) (never below 0)":
                              activated.after}, kind=["signed", "unsigned"], height=300), width="stretch",
                    key="learn_relu")
    st.markdown(f"ReLU keeps positive values and sets negatives to 0: **{activated.zeroed} of {activated.before.size} "
                f"values zeroed** ({activated.share:.0%}).")


def pooling_chapter(r: Reading) -> None:
    conv = from_chapter_2(r, ", then ReLU")
    if conv is None:
        return
    cols = st.columns(4)
    mode = r.kept.widget(cols[0].radio, "Pooling", ["max", "avg"], horizontal=True, key="learn_pool_mode")
    pool_size = r.kept.widget(cols[1].selectbox, "Pool size", [2, 3], key="learn_pool")
    pool_stride = r.kept.widget(cols[2].selectbox, "Stride", [None, 1, 2, 3], key="learn_pool_stride",
                              format_func=lambda s: "= pool size" if s is None else str(s))
    pool_padding = r.kept.widget(cols[3].radio, "Padding", ["valid", "same"], horizontal=True, key="learn_pool_padding")
    try:
        pool = walkthrough.pooling(walkthrough.relu(conv.feature).after, mode, pool_size, pool_stride, pool_padding)
    except ValueError as exc:
        st.error(str(exc))
        return
    ph, pw = pool.pooled.shape
    prow, pcol = position_ui(r, pool.pooled.shape, "Pooled", "learn_pool")
    window = pool.at(prow, pcol)
    left, mid, right = st.columns([2, 1, 2])
    left.plotly_chart(values_heatmap(pool.source, "ReLU map, the window outlined",
                                     (window.top, window.left, pool.size, pool.size), show_text=False, kind="unsigned",
                                     height=330), width="stretch", key="learn_pool_input")
    mid.plotly_chart(values_heatmap(window.window, "window", kind="unsigned", height=200), width="stretch",
                     key="learn_window")
    mid.markdown(f"{'max' if mode == 'max' else 'mean'} = **{window.value:.4f}**")
    right.plotly_chart(values_heatmap(pool.pooled, f"pooled {ph}×{pw}", (prow, pcol, 1, 1), show_text=False,
                                      kind="unsigned", height=330), width="stretch", key="learn_pooled")
    side = pool.source.shape[0]
    st.markdown(f"{side}×{pool.source.shape[1]} = {pool.source.size} values → {ph}×{pw} = {pool.pooled.size}: "
                f"**{pool.fewer:.0%} fewer**. Shape arithmetic for this {side}×{pool.source.shape[1]} map pooled "
                f"{pool.size}×{pool.size} with stride {pool.stride}: 'valid' {pool.formulas[0]}, 'same' "
                f"{pool.formulas[1]}.")


def dense_chapter(r: Reading) -> None:
    first_dense = walkthrough.dense_unit(r.model, r.walk, 0)
    if first_dense is None:
        st.info("This model has no layer that turns feature maps into a vector (Flatten or global pooling).")
        return
    unit = r.kept.widget(st.slider, f"{first_dense.layer} unit", 0, first_dense.units - 1, 0, key="learn_unit")
    d = walkthrough.dense_unit(r.model, r.walk, unit)
    st.markdown(f"**{d.flatten}** turns the last feature maps ({' × '.join(map(str, d.maps_shape))}) into one "
                f"vector of **{d.vector_size:,}** numbers.")
    st.plotly_chart(vector_bars(d.products, f"the 20 largest input × weight products for unit {unit}",
                                labels=[str(i) for i in d.top]), width="stretch", key="learn_dense")
    st.markdown(f"Unit {unit}: Σ inputᵢ·weightᵢ over {d.inputs:,} inputs = {d.weighted_sum:.4f}, "
                f"+ bias {d.bias:.4f} = **{d.value:.4f}** before {d.activation}.")
    if d.keras_difference is not None:
        agree(f"{d.layer} unit {unit}", d.keras_difference)
    sm = walkthrough.softmax(r.model, r.walk)
    table = pd.DataFrame({"class": [str(c) for c in r.info.class_names], "score (logit)": sm.logits,
                          "e^score": sm.exponentials, "probability": [probability_text(p) for p in sm.probabilities],
                          "share": sm.probabilities})
    st.markdown("**Softmax** turns the output layer's scores into probabilities: e^score ÷ Σ e^score "
                f"(scores shifted by their max for stability). They sum to **{sm.probabilities.sum():.6f}**.")
    st.dataframe(table, hide_index=True, width="stretch", key="learn_softmax",
                 column_config={"share": st.column_config.ProgressColumn(" ", format=" ", min_value=0, max_value=1)})
    agree("softmax probabilities", sm.keras_difference)


def certainty_chapter(r: Reading) -> None:
    calibration, uncalibrated = resources.calibration(r.info)
    lesson = softmax_lesson(r.model, calibration, r.x, r.info.class_names, r.walk.outputs)
    top = lesson.top
    st.markdown(f"Softmax divides every e^score by their total (here **{lesson.total:.4g}**), so the probabilities "
                f"**always add up to 1** — for a digit, a scribble or a blank page alike (here "
                f"{lesson.sums[0]:.6f}). It only compares the scores with each other: subtracting 10 from every score "
                f"gives exactly the same probabilities (largest difference "
                f"{float(abs(lesson.shifted_probabilities - lesson.probabilities).max()):.1e}). So a probability of "
                f"{probability_text(lesson.probabilities[top])} for **{markdown_text(r.info.class_names[top])}** only "
                f"says {markdown_text(r.info.class_names[top])} beats the other classes — not that the input looks like anything the model "
                "has seen.")
    if calibration is None:
        st.info(f"This model has no calibration, so there is no check of whether an input looks like its training "
                f"images: {uncalibrated}")
        return
    st.plotly_chart(temperature_bars(r.info.class_names, lesson.probabilities, lesson.calibrated, lesson.temperature),
                    width="stretch", key="learn_temperature")
    st.markdown(f"**Calibration** divides the scores by a temperature fitted on held-out images "
                f"(T = {lesson.temperature:.2f}) so that confidence matches how often the model is right; it still "
                "adds up to 1. To know whether the input makes sense, the model's **features** are compared with "
                "those of its training images: below, the distance of this input's features to the centre of each "
                "class, and (shaded) how far training images usually are from their own class's centre.")
    st.plotly_chart(distance_bars(r.info.class_names, lesson.distances, lesson.typical_distance), width="stretch",
                    key="learn_distances")
    (st.warning if lesson.verdict.flagged else st.success)(lesson.verdict.message)
    st.caption("Try it: on **Predict**, draw a scribble, a circle or a letter — softmax still reports a confident "
               "class, while the score rises above the threshold.")


def dropout_chapter(r: Reading) -> None:
    cols = st.columns(2)
    rate = r.kept.widget(cols[0].slider, "Dropout rate", 0.1, 0.9, 0.5, 0.05, key="learn_dropout_rate")
    seed = r.kept.widget(cols[1].number_input, "Random seed", 0, 10_000, 0, key="learn_dropout_seed")
    drop = walkthrough.dropout(r.model, r.walk, rate, int(seed))
    shown = min(64, drop.values.size)
    st.plotly_chart(maps_row({f"{drop.layer}: {shown} values before": square_grid(drop.values, shown),
                              "after dropout": square_grid(drop.dropped, shown)}, height=260, shared=True),
                    width="stretch", key="learn_dropout")
    off = int((~drop.kept).sum())
    st.markdown(f"While training, dropout zeroes a random **{off} of {drop.kept.size}** values "
                f"({off / drop.kept.size:.0%}, rate {rate:.0%}) and multiplies the rest by 1/(1−{rate:.2f}) = "
                f"**{drop.scale:.2f}**. One mask moves the sum: {drop.values.sum():.2f} → **{drop.dropped.sum():.2f}** "
                f"here. The scaling makes it right *on average*: over {len(drop.sums):,} random masks the sum averages "
                f"**{drop.sums.mean():.2f}** (single masks range {drop.sums.min():.2f} … {drop.sums.max():.2f}), so the "
                "next layer sees inputs of the same size in training and in prediction. At prediction time dropout "
                "does nothing: the output is the input.")


def learning_chapter(r: Reading) -> None:
    first = r.walk.first_conv
    if first is None:
        st.info("This model has no convolution layer to show.")
        return
    probs_now = r.walk.outputs[r.walk.output]
    cols = st.columns(2)
    classes = list(range(len(r.info.class_names)))
    # Default: the runner-up class — a label the model finds plausible but does not predict, so there is a loss.
    label = r.kept.widget(cols[0].selectbox, "Teach it that this image is", classes, index=runner_up(probs_now),
                        format_func=lambda i: f"{markdown_text(r.info.class_names[i])} (now {probability_text(probs_now[i])})",
                        key="learn_label")
    suggested = resources.learning_step(str(r.info.path), r.info.mtime, r.x, label, None, first, r.info).learning_rate
    lr = r.kept.widget(cols[1].select_slider, "Learning rate", list(LEARNING_RATES), value=suggested,
                     key=f"learn_lr_{label}",
                     help="Suggested: the largest rate whose step lowers this image's loss without costing the "
                          "other test images accuracy")
    step_result = resources.learning_step(str(r.info.path), r.info.mtime, r.x, label, lr, first, r.info)
    # The filter picked in chapter 2 (kept while another chapter is shown).
    f_idx = r.kept.get("learn_filter", 0) if r.kept.get("learn_kernel") == "model filter" else 0
    cols = st.columns(4)
    cols[0].metric("loss before", f"{step_result.loss_before:.4f}")
    cols[1].metric("loss after", f"{step_result.loss_after:.4f}",
                   f"{step_result.loss_after - step_result.loss_before:+.4f}", delta_color="inverse")
    p_before, p_after = step_result.probabilities_before[label], step_result.probabilities_after[label]
    cols[2].metric(f"p({markdown_text(r.info.class_names[label])})", probability_text(p_after),
                   f"{(p_after - p_before) * 100:+.1f} points" if min(p_before, p_after) >= 0.001 else
                   f"×{p_after / max(p_before, 1e-30):.3g}",
                   help=f"before the step {p_before:.3g}, after it {p_after:.3g}")
    if step_result.others_before is not None:
        cols[3].metric("other test images right", f"{step_result.others_after:.1%}",
                       f"{(step_result.others_after - step_result.others_before) * 100:+.1f} points")
    if step_result.overshot:
        st.warning(f"**The loss went up** ({step_result.loss_before:.4f} → {step_result.loss_after:.4f}): the step "
                   f"overshot. The gradient only says which way is downhill *here*; a step of rate {lr:g} jumps so "
                   "far that it lands higher on the other side of the valley. Smaller rates lower the loss — the "
                   f"chart below shows which (suggested: {suggested:g}).")
    elif step_result.others_before is not None and step_result.others_after < step_result.others_before - 0.01:
        st.warning("This image's loss fell, but the model got **worse on other images**: a big step on one example "
                   "drags every weight towards it. That is why training takes small steps on batches of many images.")
    st.plotly_chart(rate_trials(step_result.trials, lr, step_result.loss_before, step_result.others_before),
                    width="stretch", key="learn_rates")
    st.plotly_chart(maps_row({f"{first} filter {f_idx} before": step_result.kernel_before[..., 0, f_idx],
                              "gradient ∂loss/∂w": step_result.gradient[..., 0, f_idx],
                              "change −lr·gradient": step_result.filter_change(f_idx),
                              "after: w − lr·gradient": step_result.kernel_after[..., 0, f_idx]}, kind="signed"),
                    width="stretch", key="learn_step")
    st.markdown(f"Size of the step: **‖lr·gradient‖ = {step_result.step_norm:.4g}** over all "
                f"{step_result.weight_count:,} weights (their own size ‖w‖ = "
                f"{step_result.weight_norm:.4g}, so the step is {step_result.step_norm / step_result.weight_norm:.2%} "
                f"of it); in {first} filter {f_idx} the largest single change is "
                f"{np.abs(step_result.filter_change(f_idx)).max():.4g}.")
    st.caption(f"Cross-entropy loss = −log p(label) = −log {step_result.probabilities_before[label]:.4g}. The step "
               "moves every weight against its gradient (w ← w − lr·∂loss/∂w), which lowers the loss when the step "
               "is small enough. Done on a private copy — the active model is unchanged.")


VERDICT = {True: ":green[:material/check_circle: holds here]", False: ":red[:material/cancel: not in this model]",
           None: ":gray[:material/remove: cannot tell]"}


def hierarchy_chapter(r: Reading) -> None:
    """The model's conv layers from the first to the last — what their filters look for beside the real patches
    that excite them — then the lesson's "edges → parts → objects" checked against this model, and the
    architecture beside LeNet-5's."""
    st.markdown("The lessons say a CNN learns a **hierarchy** on its own: edges and strokes in the first layer, "
                "larger parts in the middle, whole objects at the end. Here is what *this* model's conv layers "
                "respond to, from the first to the last, and below, the lesson's words checked against it.")
    walk_layers(r)
    try:
        st.plotly_chart(architecture_diagram(validate(ModelSpec.from_dict(r.info.spec)).layers, f"{r.info.name}"),
                        width="stretch", key="learn_arch_model")
    except SpecError:
        pass
    lenet = validate(preset("lenet5"))
    st.plotly_chart(architecture_diagram(lenet.layers, f"LeNet-5 (LeCun et al., 1998): {lenet.params:,} parameters"),
                    width="stretch", key="learn_arch_lenet")


def walk_layers(r: Reading) -> None:
    names = conv_layers(r.model)
    if not names:
        st.info("This model has no conv layer, so it has no hierarchy of filters to walk.")
        return
    data = learned.test_data(r.info)
    if data is None:
        return
    with st.spinner(f"Walking {r.info.name}'s {len(names)} conv layer(s): the input each filter wants most, the real "
                    f"patches that excite it, and the measures (a few seconds, once per model)…"):
        try:
            walked = resources.hierarchy(r.info, data)
        except CnnError as exc:
            st.info(f"This model's layers cannot be walked: {exc}")
            return
    for view in walked.layers:
        learned.layer_pair(r.info, r.model, data, view.name, view.depth, len(walked.layers), view.field, key="learn_hier")
    st.subheader("Edges → parts → objects, measured on this model")
    for check in walked.checks:
        st.markdown(f"{VERDICT[check.holds]} · **{check.claim[0].upper()}{check.claim[1:]}.** {check.verdict}")
        if check.measure != "—":
            st.caption(f"Measured: {check.measure}.")
    st.caption("The lesson's words describe what CNNs tend to learn on large image sets; a small model on small "
               "digits need not show all of it. See every filter and the test set as the model sees it on "
               "**What it learned**.")


BODIES = [pixels_chapter, convolution_chapter, relu_chapter, pooling_chapter, dense_chapter, certainty_chapter,
          dropout_chapter, learning_chapter, hierarchy_chapter]


@chrome.fragment
def chapter(r: Reading, index: int) -> None:
    """One chapter: its controls rerun only it."""
    st.header(CHAPTERS[index])
    BODIES[index](r)


def turn_to(index: int) -> None:
    """Previous / Next: show chapter `index` from its start."""
    st.session_state[CHAPTER] = index
    st.session_state[SCROLL] = True


def scroll_up() -> None:
    """After Previous / Next (clicked at the bottom of a chapter): back to the top, where the next chapter starts.
    Always one element here, so that the layout does not jump; a script only in the run after a click."""
    if st.session_state.pop(SCROLL, False):
        # The page's own script (nothing from the user in it); Streamlit's main area scrolls in its own container.
        # The time makes each one new to the browser, which runs a script only when it is inserted.
        st.html(f"<script>/* {time.time_ns()} */ (document.querySelector('[data-testid=\"stMain\"]') || "
                "document.scrollingElement).scrollTo({top: 0});</script>", unsafe_allow_javascript=True)
    else:
        st.html("<span></span>")


def chapter_nav(index: int) -> None:
    """Previous and Next under the chapter, and where it is in the walk."""
    back, where, on = st.columns(3, vertical_alignment="center")
    if index > 0:
        back.button(CHAPTERS[index - 1], icon=":material/arrow_back:", key="learn_previous", on_click=turn_to,
                    args=(index - 1,), help="The previous chapter")
    where.container(horizontal_alignment="center").caption(f"Chapter {index + 1} of {len(CHAPTERS)}")
    if index < len(CHAPTERS) - 1:
        on.container(horizontal_alignment="right").button(
            CHAPTERS[index + 1], icon=":material/arrow_forward:", key="learn_next", type="primary", on_click=turn_to,
            args=(index + 1,), help="The next chapter")


chrome.title("Learn")
info, model = chrome.require_active_model()
try:
    x, origin, true_label = source_image(info)
except CnnError as exc:  # no dataset here and nothing drawn: the page has no image to follow
    st.info(f"Draw something on **Predict** first ({exc}).")
    st.stop()
reading = Reading(info, model, x, walkthrough.walk(model, x),
                  session.Kept("learn", owner=(info.name, info.mtime)))
st.caption(f"Following {origin} through **{info.name}**.")
shown = session.Kept("learn_chapter").widget(st.segmented_control, "Chapter", list(range(len(CHAPTERS))),
                                             format_func=SHORT.__getitem__, default=0, required=True, key=CHAPTER)
scroll_up()
chapter(reading, shown)
chapter_nav(shown)

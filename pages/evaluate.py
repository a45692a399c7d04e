"""Evaluate: what the active model gets wrong, and why — on its dataset's whole test split."""
import numpy as np
import streamlit as st

from app import chrome, resources
from cnn.data.datasets import dataset_title
from cnn.core.errors import CnnError
from cnn.figures.curves import confusion_heatmap, per_class_bars
from cnn.figures.probabilities import ood_histogram, probabilities_bar, reliability_diagram
from cnn.figures.pictures import enlarge, overlay
from cnn.analysis.inference import explain
from cnn.core.text import accuracy_text, markdown_text, probability_text

tab = chrome.page_setup()

GALLERY = 24  # images per gallery


def gallery(indices, captions, key: str) -> None:
    """Test images in a grid and a closer look at the one picked. Every widget inside is keyed by `key`, so
    several galleries can share a page."""
    if len(indices) == 0:
        st.caption("No images here.")
        return
    st.image([enlarge(data.x_test[i], 3) for i in indices], caption=captions, width=84)
    pick = st.selectbox("Look closer at", range(len(indices)), format_func=lambda i: captions[i],
                        key=f"{key}_pick")
    closer_look(int(indices[pick]), key)


def closer_look(index: int, key: str) -> None:
    """Probabilities and Grad-CAM of one test image."""
    x, label = data.x_test[index], int(data.y_test[index])
    result = explain(model, x)
    cols = st.columns([3, 2])
    cols[0].plotly_chart(probabilities_bar(result.probabilities, info.class_names, label), width="stretch",
                         key=f"{key}_probs")
    cols[1].plotly_chart(overlay(x, result.grad_cam, f"#{index}: Grad-CAM for "
                                                     f"'{info.class_names[result.class_index]}'"),
                         width="stretch", key=f"{key}_cam")


def selected_cell(event) -> tuple[int, int] | None:
    """(true, predicted) of the clicked confusion-matrix cell, if any."""
    points = (event or {}).get("selection", {}).get("points", []) if isinstance(event, dict) else \
        getattr(getattr(event, "selection", None), "points", [])
    for point in points or []:
        data = point.get("customdata") if isinstance(point, dict) else None
        if data:
            return int(data[0]), int(data[1])
    return None


chrome.title("Evaluate")
info, model = chrome.require_active_model()
try:
    data = resources.model_dataset(info)
except CnnError as exc:
    st.warning(f"Cannot evaluate {info.name!r}: {exc}")
    st.stop()
if tuple(data.input_shape) != tuple(info.input_shape):
    st.warning(f"{data.name} images are {data.input_shape} but {info.name!r} takes {info.input_shape}.")
    st.stop()
chrome.show_dataset_note(info, data)

bar = st.empty()
evaluation = resources.evaluation(info, on_progress=lambda done, total: bar.progress(
    done / total, text=f"Evaluating {info.name} on {total:,} test images: {done:,} done"))
bar.empty()

cols = st.columns(4)
cols[0].metric("Test accuracy", accuracy_text(evaluation.accuracy))
cols[1].metric("Test loss", f"{evaluation.loss:.4f}")
cols[2].metric("Test images", f"{len(evaluation.y_true):,}")
cols[3].metric("Mistakes", f"{int((evaluation.y_pred != evaluation.y_true).sum()):,}")
st.caption(f"{info.name} on the {dataset_title(data.name)} test split · forward passes took "
           f"{evaluation.seconds:.1f} s (batched)")

@chrome.fragment
def confusion_section() -> None:
    """The matrix and the clicked cell's images: a click or the toggle reruns only this part."""
    st.subheader("Confusion matrix")
    normalise = st.toggle("Row-normalised (recall per true class)", key="eval_normalise")
    event = st.plotly_chart(confusion_heatmap(evaluation.confusion, info.class_names, normalise), width="stretch",
                            key="eval_cm", on_select="rerun", selection_mode="points")
    cell = selected_cell(event)
    if cell is None:
        st.caption("Click a cell to see those images.")
        return
    true, pred = cell
    indices = evaluation.cell(true, pred)
    st.markdown(f"**True {markdown_text(info.class_names[true])} predicted as {markdown_text(info.class_names[pred])}: {len(indices)} image(s)**"
                + (f" — showing the {GALLERY} most confident" if len(indices) > GALLERY else ""))
    order = indices[:GALLERY]
    gallery(order, [f"#{i} · {probability_text(evaluation.confidence[i], 0)}" for i in order], "eval_cell")


@chrome.fragment
def details_section() -> None:
    """Misclassified, hardest and dead filters: only the open tab is computed, and its controls rerun only it."""
    tabs = dict(zip(DETAILS, st.tabs(DETAILS, key="eval_tabs", on_change="rerun")))
    if tabs["Misclassified"].open:
        with tabs["Misclassified"]:
            wrong = evaluation.misclassified()[:GALLERY]
            st.caption(f"{len(evaluation.misclassified())} mistakes; the most confident first (sure, and wrong).")
            gallery(wrong, [f"#{i} · {info.class_names[evaluation.y_true[i]]}→"
                            f"{info.class_names[evaluation.y_pred[i]]} {probability_text(evaluation.confidence[i], 0)}"
                            for i in wrong], "eval_wrong")
    if tabs["Hardest examples"].open:
        with tabs["Hardest examples"]:
            hardest_ui()
    if tabs["Dead filters"].open:
        with tabs["Dead filters"]:
            dead_filters_ui()
    if tabs["Calibration"].open:
        with tabs["Calibration"]:
            calibration_ui()
    if tabs["Unusual inputs"].open:
        with tabs["Unusual inputs"]:
            unusual_ui()


def calibration_ui() -> None:
    """How far the model's confidence can be trusted: the reliability diagram before and after the temperature."""
    if not evaluation.calibrated:
        st.info(f"This model is uncalibrated: {resources.calibration(info)[1]}")
    cols = st.columns(3)
    cols[0].metric("Calibration error (ECE), raw softmax", f"{evaluation.ece_before:.4f}")
    cols[1].metric("After temperature scaling", f"{evaluation.ece_after:.4f}",
                   f"{evaluation.ece_after - evaluation.ece_before:+.4f}", delta_color="inverse")
    cols[2].metric("Temperature", f"{evaluation.temperature:.2f}")
    st.plotly_chart(reliability_diagram(evaluation.reliability(calibrated=False),
                                        evaluation.reliability() if evaluation.calibrated else None),
                    width="stretch", key="eval_reliability")
    st.caption("Each bar: test images grouped by how confident the model was, and how often it was right. On the "
               "diagonal, \"90% confident\" means right 90% of the time; below it, the model is over-sure. The "
               "expected calibration error is the average gap, weighted by how many images each bar holds.")


def unusual_ui() -> None:
    """The out-of-distribution score of every test image, and the most unusual ones."""
    if evaluation.ood_scores is None:
        st.info(f"No out-of-distribution score for this model: {resources.calibration(info)[1]}")
        return
    st.plotly_chart(ood_histogram(evaluation.ood_scores, evaluation.ood_threshold,
                                  title=f"{evaluation.flagged_share:.1%} of the test images score above the "
                                        "threshold"), width="stretch", key="eval_ood")
    st.caption("The score says how unlike the training images an input is, from the model's own features (the "
               "threshold flags 5% of its validation images). Test images are like the training ones, so few "
               "should be flagged; a scribble or a letter scores far higher. The most unusual test images:")
    order = np.argsort(-evaluation.ood_scores, kind="stable")[:GALLERY]
    gallery(order, [f"#{i} · score {evaluation.ood_scores[i]:.1f} · {info.class_names[evaluation.y_true[i]]}"
                    for i in order], "eval_unusual")


def hardest_ui() -> None:
    hard = evaluation.hardest(GALLERY)
    st.caption("Test images with the highest loss (−log p(true class)).")
    gallery(hard, [f"#{i} · {info.class_names[evaluation.y_true[i]]} loss {evaluation.losses[i]:.1f}"
                   for i in hard], "eval_hard")
    st.markdown("**Possibly mislabelled training images** — the highest loss under the trained model")
    if data.streamed:
        st.caption("Not available for class-folder datasets (their training images are streamed from disk).")
    elif st.toggle(f"Scan the {data.num_train:,} training images", key="eval_scan_train"):
        bar = st.empty()
        train_eval = resources.evaluation(info, "train", on_progress=lambda done, total: bar.progress(
            done / total, text=f"Scanning training images: {done:,}/{total:,}"))
        bar.empty()
        suspects = train_eval.hardest(GALLERY)
        st.image([enlarge(data.x_train[i], 3) for i in suspects], width=84,
                 caption=[f"train #{i} · labelled {info.class_names[data.y_train[i]]}, model says "
                          f"{info.class_names[train_eval.y_pred[i]]} {probability_text(train_eval.confidence[i], 0)}"
                          for i in suspects])


def dead_filters_ui() -> None:
    st.caption("A filter is dead when its ReLU output is zero everywhere on (almost) every test image: it has "
               "stopped learning. Measured on up to 2,000 test images.")
    report = resources.filter_report(info)
    if not report:
        st.info("This model has no convolution layer.")
    for layer in report:
        st.markdown(f"**{layer['layer']}** ({layer['activation']}): {layer['dead']} of {layer['filters']} filters "
                    f"dead ({layer['dead_share']:.0%})")
        st.bar_chart({"mean activation": layer["mean_activation"]}, height=160)


DETAILS = ["Misclassified", "Hardest examples", "Dead filters", "Calibration", "Unusual inputs"]
confusion_section()

st.subheader("Per class")
rows = evaluation.per_class()
left, right = st.columns([2, 3])
left.dataframe(rows, hide_index=True, width="stretch", key="eval_per_class",
               column_config={m: st.column_config.NumberColumn(format="%.3f") for m in ("precision", "recall", "f1")})
right.plotly_chart(per_class_bars(rows), width="stretch", key="eval_per_class_fig")

details_section()

# The CSV (10,000 rows) is made only when the button is clicked, not on every rerun.
st.download_button("Download predictions (CSV)", evaluation.to_csv, file_name=f"{info.name}-predictions.csv",
                   mime="text/csv", key="eval_csv", on_click="ignore")

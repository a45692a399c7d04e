"""What it learned: for the active model, what each conv layer's filters look for (activation maximisation)
beside the real test patches that excite them most, what each class looks for, and the test set as the
network's penultimate layer sees it (PCA at once, t-SNE in the background). Only the open tab is computed;
every result is computed once per model file (app/resources.py)."""
import numpy as np
import streamlit as st

from app import chrome, learned, resources, session
from cnn.core.errors import CnnError
from cnn.explain.embedding import TSNE_SIZE
from cnn.explain.maximise import model_fields
from cnn.figures.pictures import embedding_scatter, enlarge, filters_grid
from cnn.figures.probabilities import probabilities_bar
from cnn.analysis.inference import conv_layers, predict_proba
from cnn.core.text import markdown_text, probability_text

tab = chrome.page_setup()

FILTERS, CLASSES, MAP = ("Filters, layer by layer", "The classes", "The test set as it sees it")
PCA, TSNE = "PCA (at once)", "t-SNE (about half a minute)"


# ---------------------------------------------------------------------------
# Filters, layer by layer
# ---------------------------------------------------------------------------

def filters_view(info, model, data) -> None:
    names = conv_layers(model)
    if not names:
        st.info("This model has no conv layer, so it has no filters to show. **The classes** and **the test set** "
                "tabs still work.")
        return
    try:
        fields = model_fields(model)
    except CnnError as exc:
        st.info(f"This model's layers cannot be read back into a spec, so their receptive fields are unknown: {exc}")
        return
    st.markdown("Layer by layer, from the first to the last: on the left, the input image that excites each filter "
                "most (found by **gradient ascent** on the input, from grey noise); on the right, the pieces of "
                "real test images that excite those filters most. The **receptive field** under each layer is how "
                "much of the image one of its values sees — it grows with depth.")
    for depth, name in enumerate(names, start=1):
        learned.layer_pair(info, model, data, name, depth, len(names), fields[name], key="learned")


# ---------------------------------------------------------------------------
# The classes
# ---------------------------------------------------------------------------

def classes_view(info, model) -> None:
    count = len(info.class_names)
    with st.spinner(f"Finding the input each of the {count} classes responds to most (gradient ascent, once per "
                    "model)…"):
        maxed = resources.maximised(info, "output")
    probs = predict_proba(model, maxed.images)
    names = [str(info.class_names[u]) for u in maxed.units]
    labels = [f"class {name} — the model says {info.class_names[int(p.argmax())]} ({probability_text(p.max())})"
              for name, p in zip(names, probs)]
    columns = min(count, 10)
    st.plotly_chart(filters_grid(maxed.images, maxed.values, title="What each class looks for",
                                 note="In order: " + ", ".join(names) + ". Hover a tile for the model's verdict on it.",
                                 labels=labels, columns=columns, tile_px=96),
                    key="learned_classes", config=learned.NO_BAR)
    own = probs.argmax(axis=1) == maxed.units
    sure = float(np.median(probs[np.arange(len(probs)), maxed.units]))
    st.markdown(f"Each tile is the image that raises one class's score (before softmax) the most. The model calls "
                f"**{int(own.sum())} of {count}** of them its own class, with a median probability of "
                f"**{probability_text(sure)}** — yet they hardly look like real images of those classes. A CNN "
                "tells classes apart by the patterns its filters find, not by comparing with a picture of the "
                "whole object; and softmax can be very sure about an input unlike anything it was trained on.")


# ---------------------------------------------------------------------------
# The test set as the network sees it
# ---------------------------------------------------------------------------

def picked_point(event) -> tuple[int, int, int] | None:
    """(test image index, true class, predicted class) of the clicked point, or None."""
    custom = learned.clicked_values(event)
    if custom is None or len(custom) < 3:
        return None
    return int(custom[0]), int(custom[1]), int(custom[2])


def picked_ui(picked, info, model, data) -> None:
    """The clicked test image, enlarged, with its label, the prediction and every class's probability."""
    if picked is None:
        st.caption(":material/touch_app: Click a point to see its test image, its label and what the model "
                   "predicts.")
        return
    index, label, _ = picked
    image = data.x_test[index]
    probs = predict_proba(model, image)
    predicted = int(probs.argmax())
    right = predicted == label
    st.image(enlarge(image, side=196), caption=f"test image {index}", width=196)
    st.markdown(f"True label **{markdown_text(info.class_names[label])}** · predicted **{markdown_text(info.class_names[predicted])}** "
                f"({probability_text(probs[predicted])}) · "
                + (":green[:material/check_circle: right]" if right else ":red[:material/cancel: wrong]"))
    st.plotly_chart(probabilities_bar(probs, info.class_names, label), key="learned_pick_probs",
                    config=learned.NO_BAR)


@chrome.fragment(run_every=1.0)
def tsne_progress(job) -> None:
    """t-SNE's progress, polled every second, with Stop; the whole page is drawn again when it ends."""
    snap = job.snapshot()
    if not snap.running:
        st.rerun()
    st.progress(snap.fraction, text=snap.message)
    st.button("Stop", key="learned_tsne_stop", icon=":material/stop:", on_click=job.stop,
              help="Ends t-SNE at its next report (within a few seconds); you can start it again")


def tsne_map(info, data):
    """The finished t-SNE map, or None after showing what to do: start it, its progress, or why it ended."""
    job = resources.tsne_job(info, data)
    snap = job.snapshot() if job is not None else None
    if snap is not None and snap.state == "done":
        return snap.result
    if snap is not None and snap.running:
        tsne_progress(job)
        return None
    size = min(resources.TSNE_POINTS or TSNE_SIZE, len(data.y_test))
    if snap is not None:
        (st.warning if snap.state == "failed" else st.info)(snap.message[0].upper() + snap.message[1:] + ".")
    st.markdown(f"**t-SNE** places {size:,} test images (the same share of each class) so that images whose "
                "features are close stay close: clusters show what the network considers alike, far better than "
                "PCA's straight projection. It takes about half a minute on this server and runs in the "
                "background — you can leave the page meanwhile.")
    if st.button("Compute the t-SNE map", key="learned_tsne_start", icon=":material/play_arrow:", type="primary"):
        resources.tsne_job(info, data, start=True)
        st.rerun()
    return None


def map_view(info, model, data) -> None:
    if data is None:
        return
    method = st.segmented_control("Projection", [PCA, TSNE], key=session.LEARNED_MAP_METHOD, required=True,
                                  default=PCA)
    if method == PCA:
        with st.spinner(f"Projecting the features of {len(data.y_test):,} test images to 2-D (PCA)…"):
            emap = resources.embedding_pca(info, data)
        axes = tuple(f"{n} principal axis ({share:.0%} of the variance)"
                     for n, share in zip(("1st", "2nd"), emap.explained))
    else:
        emap = tsne_map(info, data)
        axes = ("t-SNE 1", "t-SNE 2")
        if emap is None:
            return
    st.caption("Each point is a test image, placed by the values of the layer before the output — what the last "
               "layer separates into classes. Colour: its true class (click a class in the legend to hide it); "
               "✕: an image the model gets wrong, in its true class's colour.")
    left, right = st.columns([5, 2], gap="medium")
    with left:
        event = st.plotly_chart(embedding_scatter(emap.coords, emap.labels, emap.predictions, emap.indices,
                                                  info.class_names, emap.confidence, axis_titles=axes),
                                key=f"{session.LEARNED_MAP_PICK}_{emap.method}", on_select="rerun",
                                selection_mode="points")
    with right:
        picked_ui(picked_point(event), info, model, data)


chrome.title("What it learned")
info, model = chrome.require_active_model()
st.caption(f"Inside **{info.name}**: what its filters respond to, layer by layer, and how it arranges the test "
           "images. Everything here is computed from this model's own weights.")
views = st.tabs([FILTERS, CLASSES, MAP], key=session.LEARNED_VIEW, on_change="rerun")
if views[0].open:
    with views[0]:
        filters_view(info, model, learned.test_data(info))
if views[1].open:
    with views[1]:
        classes_view(info, model)
if views[2].open:
    with views[2]:
        map_view(info, model, learned.test_data(info))

"""Predict: draw, upload, photograph with the camera or pick a sample; see the probabilities and how the network
activation maps, filters, Grad-CAM, saliency, a robustness sweep — and every preprocessing step."""
import numpy as np
import streamlit as st
from streamlit_drawable_canvas import st_canvas

from app import chrome, resources, session, warmup
from app.drawing import rasterise, vet_drawing
from cnn.teach import lessons
from cnn.data.datasets import dataset_title
from cnn.core.errors import CnnError, EmptyImageError, ImageError
from cnn.analysis.calibration import LOW_CONFIDENCE, assess
from cnn.figures.probabilities import ood_gauge, probabilities_bar, temperature_bars
from cnn.figures.pictures import enlarge, feature_maps, kernels_grid, overlay, sweep_lines, vector_bars
from cnn.analysis.inference import SWEEPS, conv_kernels, conv_layers, explain, inner_layers, map_layers, robustness
from cnn.analysis.predict import predict_images
from cnn.data.imageio import ACCEPTED_FORMATS
from cnn.data.preprocess import INVERT_CHOICES, RECIPES, default_recipe, fell_back, optional_steps, prepare
from cnn.core.text import markdown_text, probability_text

tab = chrome.page_setup()

UPLOAD_TYPES = [*ACCEPTED_FORMATS, "jpeg", "tif"]
GAUGE = {"staticPlot": True}  # nothing to hover or zoom: a static plot is quicker for the browser to redraw


# ---------------------------------------------------------------------------
# Inputs: each returns a source image (or None) and a label
# ---------------------------------------------------------------------------

DRAWING = "predict_drawing"  # the canvas's vetted fabric.js JSON, put back when Draw is opened again
CANVAS = 280  # the canvas's side in pixels


def subject(info) -> str:
    """What to draw or photograph for this model: 'digit', or its own classes ('circle, square or triangle'),
    as markdown (a class name is somebody's text: shown as it is, never as formatting)."""
    names = [markdown_text(n) for n in info.class_names]
    if names == [str(d) for d in range(10)]:
        return "digit"
    shown = names if len(names) <= 6 else [*names[:5], "…"]
    return ", ".join(shown[:-1]) + f" or {shown[-1]}" if len(shown) > 1 else shown[0]


def draw_ui(thing: str = "digit"):
    """The drawing as an RGBA array (rasterised from the strokes the canvas sent), or None before anything is
    drawn."""
    left, right = st.columns([3, 2])
    with right:
        width = st.slider("Stroke width", 8, 40, 22, key="predict_stroke",
                          help="MNIST strokes are about 2–3 px thick at 28×28: on this 280 px canvas, ~20")
        st.caption(f"Draw one {thing}, large and centred or not — the preprocessing crops and centres it. "
                   "Undo, redo and clear (the bin) are in the canvas's toolbar.")
    with left:
        # The canvas forgets its strokes when another input is shown: it starts from the last drawing.
        kept = st.session_state.get(DRAWING)
        canvas = st_canvas(stroke_width=width, stroke_color="#FFFFFF", background_color="#000000", height=CANVAS,
                           width=CANVAS, drawing_mode="freedraw", key="predict_canvas", initial_drawing=kept)
    sent = canvas.json_data if canvas is not None else None
    if sent is None:  # nothing sent yet: the canvas shows the kept drawing
        drawing = kept
    else:
        drawing = vet_drawing(sent, CANVAS)
        if drawing is None:
            st.warning("The canvas sent a drawing this page cannot read, so it was ignored: clear the canvas "
                       "(the bin in its toolbar) and draw again.")
    st.session_state[f"{DRAWING}_now"] = drawing  # what is on the canvas now, for when Draw is opened again
    if not drawing or not drawing["objects"]:
        return None, "drawing"
    return rasterise(drawing, CANVAS), "drawing"


def upload_ui(info, invert, recipe):
    """One chosen upload (bytes) and its name; a results table when several files are uploaded."""
    files = st.file_uploader("Images (png, jpg, webp, bmp, gif, tiff) — one or many", type=UPLOAD_TYPES,
                             accept_multiple_files=True, key="predict_upload")
    if not files:
        return None, None
    if len(files) > 1:
        rows = [{"file": r["file"], "prediction": r.get("prediction", "–"),
                 "confidence": probability_text(r["confidence"]) if r.get("confidence") is not None else "–",
                 "note": r["error"] or "; ".join(n for n, on in (
                     ("unusual: unlike its training images", r.get("unusual")),
                     ("low confidence", r["confidence"] < LOW_CONFIDENCE)) if on)}
                for r in predict_images(chrome.load_model(info), [(f.name, f.getvalue()) for f in files],
                                        info.input_shape, info.class_names, invert=invert, recipe=recipe,
                                        calibration=resources.calibration(info)[0])]
        st.dataframe(rows, hide_index=True, width="stretch", key="predict_results")
    names = [f.name for f in files]
    picked = st.selectbox("Look inside", names, key="predict_upload_pick") if len(files) > 1 else names[0]
    chosen = files[names.index(picked)]
    return chosen.getvalue(), chosen.name


def camera_ui(thing: str = "digit", photos: bool = False):
    """A photo from the device's camera (a JPEG, like an upload), or None before one is taken. `photos`: the
    model reads colour photos (of objects), not drawings."""
    left, right = st.columns([3, 2])
    with right:
        st.caption(f":material/photo_camera: Photograph a {thing}, filling most of the picture: the middle of the "
                   "photo is cropped and resized, as for uploads (see the inspector below)." if photos else
                   f":material/photo_camera: Draw a {thing} large and dark on white paper and photograph it, filling "
                   "about a third of the picture. The preprocessing finds the ink, crops and centres it, as for "
                   "uploads (see the inspector below).")
        st.caption(":material/lock: Your browser asks for permission to use the camera first; on a phone, allow it "
                   "and pick the back camera if offered. The camera only works on a secure (https) page — as on "
                   "Streamlit Community Cloud — or on this computer itself.")
    with left:
        photo = st.camera_input(f"Take a picture of a {thing}" if thing == "digit" else "Take a picture",
                                key=session.PREDICT_CAMERA)
    return (None, None) if photo is None else (photo.getvalue(), "camera")


def sample_ui(info):
    """A random test image of the model's dataset (already a model input) and its true label."""
    try:
        data = resources.model_dataset(info)
    except CnnError as exc:
        st.warning(f"No samples: {exc}")
        return None, None
    chrome.show_dataset_note(info, data)
    if tuple(data.input_shape) != tuple(info.input_shape):
        st.warning(f"{info.dataset} images are {data.input_shape}, the model takes {info.input_shape}.")
        return None, None
    key = "predict_sample_index"
    if key not in st.session_state or st.session_state[key] >= data.num_test:
        st.session_state[key] = int(np.random.default_rng().integers(data.num_test))
    if st.button("Next sample", key="predict_next"):
        st.session_state[key] = int(np.random.default_rng().integers(data.num_test))
    index = st.session_state[key]
    label = int(data.y_test[index])
    st.caption(f"Test image #{index} of {dataset_title(data.name)} — true label: "
               f"**{markdown_text(data.class_names[label])}**")
    return data.x_test[index], label


# ---------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------

def switches_ui(box, recipe: str) -> tuple:
    """The inspector's switches for the recipe's optional steps; returns the steps switched off."""
    box.caption("The same function prepares drawings, uploads and the CLI's files. Switch a step off to see "
                "what it does to the prediction.")
    optional = optional_steps(recipe)
    # Rows of at most three switches: their names stay readable on a tablet.
    cols = [col for start in range(0, len(optional), 3) for col in box.columns(3)]
    return tuple(name for col, name in zip(cols, optional)
                 if not col.toggle(name, value=True, key=f"predict_step_{name}"))


def steps_ui(box, steps) -> None:
    """Each preprocessing step's image (sent as an image) and what it did."""
    # Rows of at most four steps: each note keeps a readable width on a tablet (a phone stacks them).
    cols = [col for start in range(0, len(steps), 4) for col in box.columns(4)]
    for col, step in zip(cols, steps):
        with col:
            st.image(enlarge(step.image, side=150), width="stretch")
            st.caption(f"**{step.name}**{' (off)' if not step.enabled else ''}: {step.note}")


def activations_ui(model, result) -> None:
    names = [l.name for l in inner_layers(model)]
    maps = map_layers(model)
    shown = [n for n in names if n in maps or result.activations[n].ndim == 1]
    layer = st.selectbox("Layer", shown, index=shown.index(maps[0]) if maps else 0, key="predict_layer",
                         format_func=lambda n: f"{n} — {' × '.join(map(str, result.activations[n].shape))}")
    values = result.activations[layer]
    if values.ndim == 3:
        shared = st.toggle("One colour scale for all maps", value=True, key="predict_shared_scale")
        st.plotly_chart(feature_maps(values, f"{layer}: {values.shape[-1]} feature maps of "
                                             f"{values.shape[0]}×{values.shape[1]}", shared_scale=shared),
                        width="stretch", key="predict_maps")
    else:
        st.plotly_chart(vector_bars(values, f"{layer}: {values.shape[0]} units"), width="stretch",
                        key="predict_vector")


def verdict_ui(verdict, calibration, uncalibrated: str | None, info, blank: bool = False) -> None:
    """Beside the prediction: does the input look like the images the model was trained on? (`blank`: no input
    yet, an empty gauge.)"""
    thing = "digit" if info.dataset in ("mnist", "mnist-sample") else "image"
    if blank and calibration is not None:
        st.caption(f":material/help: Whether it looks like the {thing}s it was trained on shows here.")
        st.plotly_chart(ood_gauge(None, calibration.ood.threshold, float(calibration.ood.quantiles[50])),
                        width="stretch", key="predict_gauge", config=GAUGE)
        return
    if verdict is None:
        st.caption(f"No check of whether this looks like the model's training {thing}s: {uncalibrated}")
        return
    if verdict.flagged:
        st.warning(f"**Doesn't look like a {thing} this model knows.** {verdict.message}")
    else:
        st.caption(f":material/check_circle: Looks like the {thing}s it was trained on.")
    st.plotly_chart(ood_gauge(verdict.score, verdict.threshold, float(calibration.ood.quantiles[50])),
                    width="stretch", key="predict_gauge", config=GAUGE)


def filters_ui(model) -> None:
    """The first conv layer's kernels, the weights the model learned."""
    if not conv_layers(model):
        st.info("This model has no convolution layer.")
        return
    first = conv_layers(model)[0]
    kernels = conv_kernels(model, first)
    st.plotly_chart(kernels_grid(kernels, f"{first}: {len(kernels)} kernels of {kernels.shape[1]}×{kernels.shape[2]}"
                                          f"×{kernels.shape[3]} (red = positive weight, blue = negative)"),
                    width="stretch", key="predict_filters")


def cam_ui(model, info, x, result_class: int):
    """Grad-CAM class and layer pickers; returns (class_index or None, layer name)."""
    cols = st.columns(2)
    predicted = -1  # the option that follows the prediction (a real value: None would read "Choose an option")
    options = [predicted, *range(len(info.class_names))]
    cls = cols[0].selectbox("Explain class", options, key="predict_cam_class",
                            format_func=lambda i: f"the predicted class ({info.class_names[result_class]})"
                            if i == predicted else str(info.class_names[i]))
    layers = conv_layers(model) or map_layers(model)
    layer = cols[1].selectbox("Layer", layers, index=len(layers) - 1, key="predict_cam_layer")
    return (None if cls == predicted else cls), layer


chrome.title("Predict")
info = chrome.require_active_info()  # its model is loaded in the fragment: the canvas need not wait for it

source_kind = st.segmented_control("Input", ["Draw", "Upload", "Camera", "Sample"], default="Draw",
                                   key=session.PREDICT_SOURCE, required=True)
settings = st.columns(2)
invert = INVERT_CHOICES[settings[0].selectbox("Invert (ink must be bright on dark)", list(INVERT_CHOICES), key="predict_invert",
                                      help="auto: invert when the background is light (dark ink on paper)")]
recipe_default = default_recipe(info.input_shape, info.dataset)
recipe = settings[1].selectbox("Recipe", RECIPES, index=RECIPES.index(recipe_default), key="predict_recipe",
                               help="mnist: crop, fit 20×20, centre by mass · fit: crop and fill · resize: "
                                    "centre-crop and resize (colour)")

if source_kind != "Draw":  # the canvas is not shown: keep its strokes for when it is opened again
    st.session_state[DRAWING] = st.session_state.get(f"{DRAWING}_now")

VIEWS = ["Activation maps", "Filters", "Grad-CAM & saliency", "Robustness"]
# Right after the server starts, TensorFlow may still be loading (app/warmup.py): the canvas is shown at once,
# and the prediction part looks again every second until the model is ready.
WARMING = warmup.status()["running"]


@chrome.fragment(run_every=1.0 if WARMING else None)
def prediction() -> None:
    """Input → prediction → the open view. A stroke, an upload or 'Next sample' reruns only this part; the
    prediction is sent before the view is computed, and only the open view is computed at all."""
    if WARMING and not warmup.status()["running"]:
        st.rerun()  # the model is ready: the page runs once more, without looking again every second
    true_label, x, source = None, None, None
    if source_kind == "Sample":
        x, true_label = sample_ui(info)
    elif source_kind == "Upload":
        source, _ = upload_ui(info, invert, recipe)
    elif source_kind == "Camera":
        source, _ = camera_ui(subject(info), photos=info.input_shape[-1] == 3)
    else:
        source, _ = draw_ui(subject(info))
    model = chrome.model_when_ready(info)  # None while the server's warm-up still loads TensorFlow

    # The page keeps one shape with or without an input (the inspector, the notes, the prediction, the views):
    # the first stroke then updates what is shown instead of building it, and the browser has loaded every
    # element's code while the visitor draws.
    if source_kind != "Sample":
        # Its step images are drawn only while it is open: a stroke then sends the prediction sooner.
        inspector = st.expander("Preprocessing inspector", expanded=False, key=session.PREDICT_INSPECTOR_OPEN,
                                on_change="rerun")
        disabled = switches_ui(inspector, recipe)
    notes = st.container()  # what is wrong with the input, or how it was read
    if source is not None:
        steps = []
        try:  # the recipe runs once: its steps for the inspector, its last step for the model
            steps, x = prepare(source, info.input_shape, invert=invert, recipe=recipe, disabled=disabled)
        except EmptyImageError as exc:
            steps = exc.steps
            notes.info("Draw something: the canvas is empty." if source_kind == "Draw" else
                       "The photo is blank (all one colour): point the camera at something and take it again." if
                       source_kind == "Camera" and info.input_shape[-1] == 3 else
                       f"No {'digit' if subject(info) == 'digit' else 'drawing'} found in the picture: draw it "
                       "darker and larger, and take it again." if
                       source_kind == "Camera" else "The image is blank: nothing to predict." if exc.blank
                       else str(exc))
        except ImageError as exc:
            notes.error(str(exc))
        if fell_back(steps):
            notes.caption(":material/info: The recipe found no ink standing out from the picture's border, so "
                          "the whole picture was resized as it is (the preprocessing inspector shows each step).")
        if inspector.open:
            steps_ui(inspector, steps)
    elif source_kind != "Sample":
        notes.info({"Draw": "Draw something on the canvas.", "Camera": "Take a picture with the camera above."}.get(
            source_kind, "Upload one or more images."))
    if x is not None:
        st.session_state[session.PREDICT_INPUT] = {"x": np.asarray(x), "model": info.name, "label": true_label}
    elif source_kind == "Sample":
        return
    if model is None:
        if x is not None:
            notes.info(":material/hourglass_top: Loading TensorFlow and the model — once, after the server starts; "
                       "the prediction appears here in a few seconds.")
        return
    result_ui(info, model, x, true_label)


def result_ui(info, model, x, true_label) -> None:
    """The prediction and the open view for the model input `x`; with no input (None), the same layout for an
    empty input: no prediction, and the views of a blank image."""
    blank = x is None
    if blank:
        x = np.zeros(info.input_shape, dtype=np.uint8)
    # The prediction first: one compiled pass (probabilities, every layer's output, the default Grad-CAM), then
    # the calibrated probabilities and the verdict from the same pass's activations.
    probe = explain(model, x)
    calibration, uncalibrated = resources.calibration(info)
    judged = None if blank else assess(model, calibration, x, probe.activations)
    probabilities = np.zeros(len(info.class_names)) if blank else judged.probabilities
    top = int(probabilities.argmax())
    ink = lessons.ink_pixels(x)
    head, chart = st.columns([1, 2])
    with head:
        shape = "×".join(map(str, x.shape))
        st.image(enlarge(x, side=224), caption=f"model input ({shape}) · " + ("nothing yet" if blank else f"{ink} ink pixels"),
                 width="stretch")  # never wider than its column (224 px cut it off on a tablet)
        if blank:
            st.metric("Prediction", "—", "nothing to read yet", delta_color="off")
        else:
            st.metric("Prediction", str(info.class_names[top]), f"{probability_text(probabilities[top])} confident",
                      delta_color="off")
        verdict_ui(None if blank else judged.verdict, calibration, uncalibrated, info, blank)
        if not blank and probabilities[top] < LOW_CONFIDENCE:
            st.warning(f"Low confidence: the model is unsure (top probability "
                       f"{probability_text(probabilities[top], 0)}).")
        if true_label is not None:
            (st.success if true_label == top else st.warning)(
                f"True label {markdown_text(info.class_names[true_label])}: {'right' if true_label == top else 'wrong'}")
    with chart:
        st.plotly_chart(probabilities_bar(probabilities, info.class_names, true_label), width="stretch",
                        key="predict_probs")
        if calibration is not None:
            raw = probabilities if blank else judged.raw_probabilities
            temperature = calibration.temperature if blank else judged.temperature
            raw_box = st.expander(f"Calibrated probabilities (temperature {temperature:.2f}) and the raw "
                                  "softmax", key=session.PREDICT_RAW_OPEN, on_change="rerun")
            if raw_box.open:  # drawn only while open: a stroke then costs the browser one chart less
                with raw_box:
                    st.plotly_chart(temperature_bars(info.class_names, raw, probabilities, temperature),
                                    width="stretch", key="predict_raw")
                    st.caption("The model's raw softmax is over-sure; dividing its scores by the temperature fitted "
                               "on held-out images makes \"90%\" right about 90% of the time. Both always add up "
                               "to 1.")

    # Then the open view only (the tabs remember which one is open; the others cost nothing).
    tabs = dict(zip(VIEWS, st.tabs(VIEWS, key="predict_view", on_change="rerun")))
    computed_for = ("For an empty input: each map shows only its layer's biases. Draw or pick an image to see what "
                    "lights up." if blank else
                    f"For the image predicted as **{markdown_text(info.class_names[top])}** ({ink} ink pixels).")
    if tabs["Activation maps"].open:
        with tabs["Activation maps"]:
            activations_ui(model, probe)
            st.caption(computed_for)
    if tabs["Filters"].open:
        with tabs["Filters"]:
            filters_ui(model)
    if tabs["Grad-CAM & saliency"].open:
        with tabs["Grad-CAM & saliency"]:
            if blank:
                st.info("Draw or pick an image: Grad-CAM and saliency show where the model looked in it.")
            else:
                cam_ui_and_maps(info, model, x, top, computed_for)
    if tabs["Robustness"].open:
        with tabs["Robustness"]:
            if blank:
                st.info("Draw or pick an image: its prediction is then tried rotated, shifted, scaled and noisier.")
            else:
                robustness_ui(info, model, x, top, computed_for)


def cam_ui_and_maps(info, model, x, top: int, computed_for: str) -> None:
    """Grad-CAM and saliency for the picked class and layer, side by side."""
    cam_class, cam_layer = cam_ui(model, info, x, top)
    result = explain(model, x, cam_class, cam_layer)
    name = info.class_names[result.class_index]
    cols = st.columns(2)
    cols[0].plotly_chart(overlay(x, result.grad_cam, f"Grad-CAM for '{name}' at {cam_layer}"),
                         width="stretch", key="predict_gradcam")
    cols[1].plotly_chart(overlay(x, result.saliency, f"Saliency for '{name}'", opacity=0.6),
                         width="stretch", key="predict_saliency")
    st.caption("Grad-CAM: where the chosen layer's features pushed the class score up (coarse: that "
               "layer's resolution). Saliency: which input pixels change the score most. " + computed_for)


def robustness_ui(info, model, x, top: int, computed_for: str) -> None:
    """The class probabilities as the input is rotated, shifted, scaled or made noisier."""
    kind = st.radio("Change", list(SWEEPS), horizontal=True, key="predict_sweep",
                    format_func=lambda k: SWEEPS[k][1])
    values, probs = robustness(model, x, kind)
    st.plotly_chart(sweep_lines(values, probs, info.class_names, SWEEPS[kind][1], highlight=top),
                    width="stretch", key="predict_sweep_fig")
    stable = values[probs.argmax(axis=1) == top]
    st.caption(f"The prediction stays '{markdown_text(info.class_names[top])}' for {len(stable)} of {len(values)} settings"
               + (f" ({stable.min():g} to {stable.max():g})." if len(stable) else ".") + " " + computed_for)


prediction()

"""Your classes: name 2–10 classes, add examples by drawing, with the camera or by uploading pictures, see what the
model will see, and train a model of your own on them in seconds (cnn/data/own.py keeps them as class folders)."""
import json

import numpy as np
import streamlit as st
from streamlit_drawable_canvas import st_canvas

from app import chrome, jobs, resources, session, workspaces
from app.drawing import rasterise, vet_drawing
from cnn.analysis.calibration import MIN_VALIDATION
from cnn.core.errors import CnnError, EmptyImageError
from cnn.core.text import markdown_text, safe_label
from cnn.data.imageio import ACCEPTED_FORMATS
from cnn.data.own import (FOLDER, KINDS, MAX_CLASSES, MAX_EXAMPLES, MIN_EXAMPLES, SUGGESTED_EXAMPLES, ClassSet,
                          spec_for, trained_models, transfer_difference)
from cnn.data.uploads import store_upload
from cnn.model.spec import ModelSpec
from cnn.store import registry

tab = chrome.page_setup()

CANVAS = 280  # the drawing canvas's side, as on Predict
THUMBS = 24  # examples shown per class before "all"
KIND_TEXT = {"drawings": "Drawings — 28×28 grey, cropped to the ink and centred (as MNIST digits)",
             "photos": "Photos — 32×32 colour, centre-cropped (camera or pictures)"}
PICK = "classes_pick"  # the class examples are added to
ROUND = "classes_round"  # bumped after each add: the canvas, camera and uploader start empty again
ADDED = "classes_added"  # the strokes of the drawing last added (until the canvas sends its cleared state)
UPLOADED = "classes_uploaded"  # (the kind and file ids, their model inputs, why the others cannot be examples)
UPLOAD_TYPES = [*ACCEPTED_FORMATS, "jpeg", "tif"]
SHIPPED = "mnist-default"  # the shipped model whose filters a drawn set may start from


def class_set() -> ClassSet:
    return ClassSet(workspaces.classes_dir(workspaces.current()))


def next_round() -> None:
    st.session_state[ROUND] = st.session_state.get(ROUND, 0) + 1


# ---------------------------------------------------------------------------
# Callbacks (run before the page is drawn again; problems are flashed)
# ---------------------------------------------------------------------------

@chrome.in_workspace
def add_class() -> None:
    try:
        name = class_set().add_class(st.session_state.get("classes_new", ""))
    except CnnError as exc:
        session.flash(str(exc)[0].upper() + str(exc)[1:] + ".", "error")
        return
    st.session_state["classes_new"] = ""
    st.session_state[PICK] = name


@chrome.in_workspace
def rename_class(old: str) -> None:
    try:
        new = class_set().rename_class(old, st.session_state.get(f"classes_rename_{old}", ""))
    except CnnError as exc:
        session.flash(str(exc)[0].upper() + str(exc)[1:] + ".", "error")
        return
    if st.session_state.get(PICK) == old:
        st.session_state[PICK] = new


@chrome.in_workspace
def remove_class(name: str) -> None:
    try:
        class_set().remove_class(name)
    except CnnError:  # already gone (removed in another tab): nothing to do
        return
    session.flash(f"Removed the class {name!r} and its examples.", "info")


@chrome.in_workspace
def remove_example(name: str, example: str) -> None:
    try:
        class_set().remove_example(name, example)
    except CnnError:  # its class is gone (another tab)
        pass


@chrome.in_workspace
def set_kind() -> None:
    try:
        class_set().set_kind(st.session_state["classes_kind"])
    except CnnError as exc:
        session.flash(str(exc)[0].upper() + str(exc)[1:] + ".", "error")


@chrome.in_workspace
def start_again() -> None:
    class_set().clear()
    st.session_state.pop(PICK, None)
    session.flash("Every class and example is gone; models trained on them keep working.", "info")


# ---------------------------------------------------------------------------
# UI pieces: each returns plain values
# ---------------------------------------------------------------------------

def kind_ui(own: ClassSet, empty: bool) -> None:
    st.session_state["classes_kind"] = own.kind
    st.segmented_control("What are your examples?", list(KINDS), key="classes_kind", required=True,
                         format_func=lambda k: k.capitalize(), on_change=set_kind, disabled=not empty,
                         help="Chosen before the first example: each example is stored as the model will see it")
    st.caption(KIND_TEXT[own.kind] + ("" if empty else " · delete every example to change this"))


def add_class_ui(count: int) -> None:
    with st.form("classes_add", clear_on_submit=False, border=False):
        left, right = st.columns([3, 1], vertical_alignment="bottom")
        left.text_input("New class", key="classes_new", max_chars=24, disabled=count >= MAX_CLASSES,
                        placeholder="e.g. circle" if count == 0 else "another class",
                        help=f"2 to {MAX_CLASSES} classes: letters, digits, spaces, - and _")
        right.form_submit_button("Add class", icon=":material/add:", on_click=add_class, width="stretch",
                                 disabled=count >= MAX_CLASSES)


def prepared(own: ClassSet, source):
    """(the model input, None) or (None, why it cannot be an example)."""
    try:
        return own.prepare(source)[1], None
    except EmptyImageError:
        return None, "Nothing to learn from: the picture is blank."
    except CnnError as exc:
        return None, str(exc)


def add(own: ClassSet, name: str, inputs: list) -> None:
    """Store prepared inputs in class `name` and say what happened (on the next run)."""
    added = same = 0
    for x in inputs:
        try:
            new = own.add_example(name, x)[1]
        except CnnError as exc:
            session.flash(str(exc)[0].upper() + str(exc)[1:] + ".", "error")
            break
        added, same = added + new, same + (not new)
    if added:
        st.toast(f"Added {added} example{'s' if added > 1 else ''} to {name} ({len(own.examples(name))}).",
                 icon=":material/check:")
    if same:
        st.toast(f"{same} {'was' if same == 1 else 'were'} already in {name}: the same picture is kept once.",
                 icon=":material/info:")
    next_round()
    st.rerun()


def model_view(x: np.ndarray) -> None:
    """The prepared example beside its size: what it will be stored and learned as."""
    st.markdown(f"**What the model will see** ({'×'.join(map(str, x.shape[:2]))}"
                f"{' grey' if x.shape[-1] == 1 else ' colour'})")
    st.image(x[..., 0] if x.shape[-1] == 1 else x, width=84)


def draw_ui(own: ClassSet, name: str, round_: int) -> None:
    left, right = st.columns([3, 2])
    with right:
        width = st.slider("Stroke width", 8, 40, 22, key="classes_stroke")
        st.caption("Draw one example, then press **Add**: the canvas clears for the next. Vary size, place and "
                   "slant a little, as different people would. Undo, redo and clear are in the canvas's toolbar.")
    with left:
        st.caption(f"Draw one **{name}**")
        # One canvas for the whole page: a new (empty) initial drawing each round clears it in place, so that a
        # stroke begun right after Add lands on the canvas that stays (a new key would mount another one).
        canvas = st_canvas(stroke_width=width, stroke_color="#FFFFFF", background_color="#000000", height=CANVAS,
                           width=CANVAS, drawing_mode="freedraw", key="classes_canvas",
                           initial_drawing={"objects": [], "cnnRound": round_})
    drawing = vet_drawing(canvas.json_data, CANVAS) if canvas is not None and canvas.json_data else None
    if drawing is not None and json.dumps(drawing["objects"]) == st.session_state.get(ADDED):
        drawing = None  # the canvas has not sent its cleared state yet: that drawing is already an example
    x, why = (None, None)
    if drawing and drawing["objects"]:
        x, why = prepared(own, rasterise(drawing, CANVAS))
    with right:
        if x is not None:
            model_view(x)
        elif why:
            st.warning(why)
        if st.button(f"Add to {name}", key="classes_add_drawing", type="primary", icon=":material/add:",
                     disabled=x is None):
            st.session_state[ADDED] = json.dumps(drawing["objects"])
            add(own, name, [x])


def camera_ui(own: ClassSet, name: str, round_: int) -> None:
    photo = st.camera_input(f"Take a photo for {name}", key=f"classes_camera_{round_}")
    if photo is None:
        return
    x, why = prepared(own, photo.getvalue())
    if why:
        st.warning(why)
        return
    model_view(x)
    if st.button(f"Add this photo to {name}", key="classes_add_photo", type="primary", icon=":material/add:"):
        add(own, name, [x])


def prepared_files(own: ClassSet, files) -> tuple[list, list]:
    """(model inputs, what was wrong with the others) for uploaded files, prepared once per set of files: the
    page reruns on every click, and preparing hundreds of pictures each time would make it crawl."""
    key = (own.kind, tuple(f.file_id for f in files))
    kept = st.session_state.get(UPLOADED)
    if kept is None or kept[0] != key:
        good, bad = [], []
        for f in files:
            x, why = prepared(own, f.getvalue())
            (good.append(x) if x is not None else bad.append(f"{safe_label(f.name, 40)} ({why.rstrip('.')})"))
        kept = st.session_state[UPLOADED] = (key, good, bad)
    return kept[1], kept[2]


def upload_ui(own: ClassSet, name: str, round_: int) -> None:
    folder = st.toggle("A whole folder", key="classes_folder", help="Pick a folder: every picture in it is added")
    files = st.file_uploader(f"Pictures for {name} (png, jpg, webp, bmp, gif, tiff)", type=UPLOAD_TYPES,
                             accept_multiple_files="directory" if folder else True, key=f"classes_files_{round_}")
    if not files:
        return
    room = max(0, MAX_EXAMPLES - len(own.examples(name)))
    good, bad = prepared_files(own, files[:room])
    if len(files) > room:
        st.warning(f"{name!r} has room for {room} more of its {MAX_EXAMPLES} examples: only the first {room} "
                   f"of the {len(files)} pictures can be added.")
    if bad:
        st.warning(f"{len(bad)} picture(s) cannot be examples: " + "; ".join(bad[:3]) + (" …" if len(bad) > 3 else ""))
    if good:
        st.image([x[..., 0] if x.shape[-1] == 1 else x for x in good[:12]], width=56)
        if st.button(f"Add {len(good)} picture{'s' if len(good) > 1 else ''} to {name}", key="classes_add_files",
                     type="primary", icon=":material/add:"):
            add(own, name, good)


def class_card(own: ClassSet, name: str) -> None:
    examples = own.examples(name)
    with st.container(border=True, key=f"classes_card_{name}"):
        row = st.container(horizontal=True, vertical_alignment="center", gap="small")  # wraps when narrow
        short = MIN_EXAMPLES - len(examples)
        row.markdown(f"**{markdown_text(name)}** · {len(examples)} example{'s' if len(examples) != 1 else ''}"
                     + (f" · :orange[{short} more needed]" if short > 0 else ""), width="stretch")
        row = row.container(horizontal=True, width="content", gap="small")  # the two buttons wrap together
        with row.popover("Rename", icon=":material/edit:"):
            st.text_input("New name", value=name, key=f"classes_rename_{name}", max_chars=24)
            st.button("Rename", key=f"classes_do_rename_{name}", on_click=rename_class, args=(name,))
        with row.popover("Remove", icon=":material/delete:"):
            st.caption(f"Remove {markdown_text(repr(name))} and its {len(examples)} examples?")
            st.button("Remove the class", key=f"classes_do_remove_{name}", on_click=remove_class, args=(name,),
                      type="primary")
        if not examples:
            return
        everything = len(examples) <= THUMBS or st.toggle(f"Show all {len(examples)}", key=f"classes_all_{name}")
        shown = examples[::-1] if everything else examples[::-1][:THUMBS]  # newest first
        row = st.container(horizontal=True, gap="small")  # wraps on narrow screens
        for example in shown:
            picture = own.example_bytes(name, example)
            if picture is None:  # deleted meanwhile (another tab)
                continue
            with row.container(width=64, gap=None, horizontal_alignment="center"):
                st.image(picture, width=56)
                st.button(":material/close:", key=f"classes_del_{name}_{example}", type="tertiary",
                          on_click=remove_example, args=(name, example), help="Delete this example")


def train_ui(own: ClassSet) -> None:
    ready = own.readiness()
    for problem in ready.problems:
        st.info(f"To train: {problem}.")
    for warning in ready.warnings:
        st.warning(warning[0].upper() + warning[1:] + ".")
    if not ready.problems:
        st.caption(f"{ready.trained_on} examples to learn from and {ready.held_out} held out to test the model "
                   f"(one in five, the same ones every time for these examples). With fewer than 100 a class, "
                   "each training image is shifted, turned and zoomed a little at random (augmentation).")
        if ready.held_out < MIN_VALIDATION:
            st.caption(f":material/info: With {ready.held_out} held out (fewer than {MIN_VALIDATION}: about "
                       f"{5 * MIN_VALIDATION} examples in all), the model is not calibrated: Predict shows its raw "
                       "probabilities and cannot say when a picture looks like none of your classes.")
    transfer = False
    if own.kind == "drawings" and registry.is_shipped(SHIPPED):
        transfer = st.toggle(f"Start from the MNIST model's filters ({SHIPPED})", key="classes_transfer",
                             help="Transfer learning: its convolution filters, learned on 60,000 digits, are copied "
                                  "and kept as they are; their batch normalisations adjust to your drawings and the "
                                  "layers after them learn your classes. It helps most when you have few examples "
                                  "(bench/own_classes.py measures it)")
    busy = jobs.job_running()
    if st.button("Train a model on these classes", key="classes_train", type="primary",
                 icon=":material/model_training:", disabled=bool(ready.problems) or busy,
                 help=jobs.JOB_RUNNING.capitalize() if busy else "Starts at once and opens Train"):
        problem = start(own, transfer)
        if problem is None:
            st.switch_page("pages/train.py")
        st.error(problem)
    trained_ui(own)


def trained_ui(own: ClassSet) -> None:
    """The models trained on these classes, with their held-out accuracy: train once from scratch and once from
    the MNIST filters to see what transfer learning changes."""
    trained = trained_models(own.root, registry.list_models())
    if not trained:
        return
    st.markdown("**Trained on your classes**")
    st.dataframe([{"Model": t.name,  # accuracy second: on a phone the columns after it scroll
                   "Held-out accuracy": None if t.accuracy is None else round(100 * t.accuracy, 1),
                   "Started from": "scratch" if t.start_from == "scratch" else f"{t.start_from}'s filters",
                   "Learned from": t.trained_on, "Held out": t.held_out, "Seconds": t.seconds} for t in trained[:10]],
                 hide_index=True, key="classes_trained",
                 column_config={"Held-out accuracy": st.column_config.NumberColumn(format="%.1f %%"),
                                "Seconds": st.column_config.NumberColumn(format="%.1f")})
    difference = transfer_difference(trained, few=MIN_VALIDATION)
    if difference:
        st.caption(f":material/compare_arrows: {markdown_text(difference)}")
    elif own.kind == "drawings" and len(trained) == 1:
        st.caption("Train again with the other start (the switch above) to see what the MNIST filters change.")


def start(own: ClassSet, transfer: bool) -> str | None:
    """Freeze the classes, make them Configure's dataset with a spec for a small set (from the shipped model's
    filters when `transfer`), and queue the training."""
    quota = workspaces.quota_problem(workspaces.current())
    if quota:
        return quota[0].upper() + quota[1:] + "."
    try:
        snapshot = str(own.snapshot())
        data = resources.dataset(snapshot)
        layers = ModelSpec.from_dict(registry.model_info(SHIPPED).spec).layers if transfer else None
        spec = spec_for(own.kind, data.num_classes, data.num_train, SHIPPED if transfer else "scratch", layers)
        jobs.start_job(spec, data, registry.unique_name(FOLDER))
        own.prune_snapshots({snapshot, *(info.dataset_source for info in registry.list_models())})
    except CnnError as exc:
        return str(exc)[0].upper() + str(exc)[1:] + "."
    tab.dataset, tab.spec = snapshot, spec
    st.session_state.pop(session.TRAIN_NAME, None)  # Train proposes a fresh name for the next run
    return None


def files_ui(own: ClassSet) -> None:
    left, right = st.columns(2)
    with left:
        st.download_button("Download as .zip", data=own.zip_bytes, file_name=f"{FOLDER}.zip", mime="application/zip",
                           icon=":material/download:", key="classes_download",
                           disabled=not any(own.counts().values()),
                           help="One folder per class: Configure reads it back as a dataset, and so does this page")
        with st.popover("Start again", icon=":material/restart_alt:"):
            st.caption("Delete every class and example? Models trained on them keep working.")
            st.button("Delete everything", key="classes_clear", on_click=start_again, type="primary")
    with right:
        upload = st.file_uploader("Add classes from a .zip (one folder per class)", type=["zip"], key="classes_zip")
        if upload is not None and st.session_state.get("classes_zip_done") != upload.file_id:
            st.session_state["classes_zip_done"] = upload.file_id
            try:
                path, _ = store_upload(upload.getvalue(), upload.name)
                with st.spinner("Checking and adding every picture…"):
                    added, notes = own.import_zip(path)
            except CnnError as exc:
                st.error(f"{safe_label(upload.name, 40)}: {exc}")
                return
            session.flash(f"Added {added} example(s) from {safe_label(upload.name, 40)}."
                          + "".join(f" {n[0].upper()}{n[1:]}." for n in notes), "success")
            st.rerun()


# ---------------------------------------------------------------------------
# The page
# ---------------------------------------------------------------------------

chrome.title("Your classes")
st.caption("Make a dataset of your own: name a few classes (shapes, letters, objects…), give each about "
           f"{SUGGESTED_EXAMPLES} examples, and train a CNN on them in seconds. Then Predict, Evaluate, Learn and What "
           "it learned all work on it.")
own = class_set()
counts = own.counts()
kind_ui(own, empty=not any(counts.values()))
add_class_ui(len(counts))
if not counts:
    st.info("Start with a class: type its name above (for example circle, then square and triangle).")
    files_ui(own)
    st.stop()

names = list(counts)
if sum(counts.values()) >= len(names) * 2:  # examples are coming in: a training is likely in a minute
    jobs.prewarm_worker()
if st.session_state.get(PICK) not in names:
    st.session_state[PICK] = names[0]
name = st.segmented_control("Add examples to", names, key=PICK, required=True,
                            format_func=lambda n: f"{n} ({counts.get(n, 0)})")
round_ = st.session_state.get(ROUND, 0)
sources = ["Draw", "Camera", "Upload"] if own.kind == "drawings" else ["Camera", "Upload"]
source = st.segmented_control("With", sources, key="classes_source", default=sources[0], required=True)
if source == "Draw":
    draw_ui(own, name, round_)
elif source == "Camera":
    camera_ui(own, name, round_)
else:
    upload_ui(own, name, round_)

st.subheader("Your examples")
for class_name in names:
    class_card(own, class_name)
st.subheader("Train")
train_ui(own)
st.divider()
files_ui(own)

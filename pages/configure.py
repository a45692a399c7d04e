"""Configure: dataset, preset, the layer list and training settings, with live shapes, parameters, MACs,
memory and time per epoch, inline validation errors, JSON import/export and the equivalent Keras script."""
import uuid
from dataclasses import fields

import streamlit as st

from app import chrome, resources, session
from cnn.core.errors import CnnError, SpecError, TrainingError
from cnn.core.text import safe_label
from cnn.data.datasets import CATALOG, SAMPLE
from cnn.data.load import where
from cnn.data.uploads import store_upload
from cnn.model.builder import export_script
from cnn.model.memory import check_memory, estimate_for, memory_budget
from cnn.model.spec import (LAYER_TYPES, PRESET_NOTES, PRESETS, Augmentation, ModelSpec, TrainConfig, kind_of, preset,
                            validate)

tab = chrome.page_setup()

UPLOAD = "upload"
FIELD_WIDTH = 130  # px per layer/training field: fields wrap onto more rows on narrow screens
# The editor and the summary sit side by side when there is room (≥ 520 + 340 px) and stack when there is not.
LAYOUT_CSS = """<style>
div:has(> .st-key-cfg_editor) { flex: 3 1 520px !important; min-width: 0; }
div:has(> .st-key-cfg_summary) { flex: 2 1 340px !important; min-width: 0; }
</style>"""


# ---------------------------------------------------------------------------
# State helpers (callbacks run before the script, so the page always renders the updated spec)
# ---------------------------------------------------------------------------

def set_spec(new: ModelSpec) -> None:
    tab.spec = new
    st.session_state[session.LAYER_IDS] = [uuid.uuid4().hex[:8] for _ in new.layers]


def layer_ids() -> list[str]:
    ids = st.session_state.get(session.LAYER_IDS)
    if ids is None or len(ids) != len(tab.spec.layers):
        set_spec(tab.spec)
    return st.session_state[session.LAYER_IDS]


def move_layer(index: int, offset: int) -> None:
    s, ids = tab.spec, layer_ids()
    j = index + offset
    s.layers[index], s.layers[j] = s.layers[j], s.layers[index]
    ids[index], ids[j] = ids[j], ids[index]
    s.preset = "custom"


def remove_layer(index: int) -> None:
    del tab.spec.layers[index], layer_ids()[index]
    tab.spec.preset = "custom"


def add_layer() -> None:
    kind, position = st.session_state["cfg_add_kind"], st.session_state["cfg_add_at"]
    s, ids = tab.spec, layer_ids()
    at = len(s.layers) if position == 0 else position  # 0 = at the end, n = after layer n
    s.layers.insert(at, LAYER_TYPES[kind]())
    ids.insert(at, uuid.uuid4().hex[:8])
    s.preset = "custom"


def load_preset() -> None:
    set_spec(resources.adapted_preset(st.session_state["cfg_preset"], tab.dataset))


def choose_dataset(name: str) -> None:
    """Make `name` the dataset and fit the spec's input shape and classes to it."""
    tab.dataset = name
    if name in CATALOG:
        shape, classes = CATALOG[name].input_shape, len(CATALOG[name].class_names)
    else:
        data = resources.dataset(name)
        shape, classes = data.input_shape, data.num_classes
    tab.spec = tab.spec.with_data(shape, classes)


def on_dataset_pick() -> None:
    picked = st.session_state["cfg_dataset"]
    if picked != UPLOAD:
        choose_dataset(picked)


# ---------------------------------------------------------------------------
# UI pieces: each returns plain values
# ---------------------------------------------------------------------------

def dataset_ui() -> str:
    """The chosen dataset name (or class-folder path)."""
    current = tab.dataset
    options = [*CATALOG, UPLOAD]
    st.session_state.setdefault("cfg_dataset", current if current in CATALOG else UPLOAD)
    picked = st.selectbox("Dataset", options, key="cfg_dataset", on_change=on_dataset_pick,
                          format_func=lambda n: CATALOG[n].title if n in CATALOG else "Upload class folders (.zip)")
    if picked in CATALOG:
        st.caption(f"{CATALOG[picked].description} · loads from: {where(picked)}")
        return picked
    upload = st.file_uploader("A .zip with one sub-folder of images per class (png, jpg, bmp, gif)", type=["zip"],
                              key="cfg_zip")
    if upload is not None:
        upload_zip(upload)
        problem = st.session_state.get(session.ZIP_PROBLEM)
        if problem and problem[0] == upload.file_id:  # the refusal stays beside the upload it is about
            st.error(problem[1])
    current = tab.dataset
    if current not in CATALOG:
        try:
            data = resources.dataset(current)
        except CnnError as exc:  # e.g. the upload cache was trimmed since: say so, and go back to the sample
            st.warning(f"The class folders chosen earlier cannot be read any more ({exc}); using the MNIST "
                       "sample until you upload them again.")
            choose_dataset(SAMPLE)
            return SAMPLE
        st.caption(f"{len(data.class_names)} classes ({', '.join(data.class_names[:8])}"
                   f"{'…' if len(data.class_names) > 8 else ''}); {data.num_train:,} training images streamed "
                   f"from disk, {data.num_test:,} held out; images resized to "
                   f"{'×'.join(map(str, data.input_shape))}")
        for note in data.notes:
            st.warning(note)
    else:
        st.caption("Upload a .zip to use your own images.")
    return current


def upload_zip(upload) -> None:
    """Store an uploaded class-folder .zip (under its content hash: its name never becomes a path), read it,
    and make it the dataset — or keep the refusal to show, leaving the dataset as it was."""
    if st.session_state.get(session.ZIP_HANDLED) == upload.file_id:
        return
    st.session_state[session.ZIP_HANDLED] = upload.file_id
    try:
        path, _ = store_upload(upload.getvalue(), upload.name)
        resources.dataset(str(path))  # checks every image (headers first) before anything is chosen
    except CnnError as exc:
        st.session_state[session.ZIP_PROBLEM] = (upload.file_id, f"{safe_label(upload.name)}: {exc}")
        return
    st.session_state.pop(session.ZIP_PROBLEM, None)
    choose_dataset(str(path))


def preset_ui() -> None:
    names = list(PRESETS)
    with st.container(horizontal=True, vertical_alignment="bottom"):
        st.selectbox("Preset", names, key="cfg_preset", format_func=lambda n: f"{n} — {PRESET_NOTES[n]}",
                     index=names.index(tab.spec.preset) if tab.spec.preset in names else 0, width="stretch")
        st.button("Load preset", key="cfg_load_preset", on_click=load_preset, icon=":material/restart_alt:",
                  help="Replace the layers and training settings with the preset's")


def field_ui(obj, f, key: str, label: str | None = None, width: int = FIELD_WIDTH):
    """One widget for one dataclass field, from its metadata; returns the value."""
    meta, value, label = f.metadata, getattr(obj, f.name), label or f.name.replace("_", " ")
    if "choices" in meta:
        choices = list(meta["choices"])
        return st.selectbox(label, choices, index=choices.index(value) if value in choices else 0, key=key,
                            help=meta["help"], width=width)
    if isinstance(value, int):
        return int(st.number_input(label, min_value=meta["min"], max_value=meta["max"], value=value, step=1,
                                   key=key, help=meta["help"], width=width))
    step = 0.05 if meta["max"] <= 1 else (1.0 if meta["max"] >= 10 else 0.01)
    return float(st.number_input(label, min_value=float(meta["min"]), max_value=float(meta["max"]),
                                 value=float(value), step=step, key=key, help=meta["help"], format="%g",
                                 width=width))


def layers_ui() -> tuple[list, dict]:
    """The editable layer list; returns the layers as the widgets now say, and an error slot per layer
    (filled once the edited spec is validated, so the message matches what is on screen)."""
    layers, ids, out, slots = tab.spec.layers, layer_ids(), [], {}
    if not layers:
        st.info("No hidden layers: the input goes straight to the output layer. Add layers below.")
    for i, (layer, uid) in enumerate(zip(layers, ids)):
        kind = kind_of(layer)
        with st.container(border=True):
            # Title and the move/remove buttons; the buttons stay together and wrap below on narrow screens.
            with st.container(horizontal=True, vertical_alignment="center"):
                st.markdown(f"**{i + 1} · {kind}** — {type(layer).__doc__.splitlines()[0]}", width="stretch")
                with st.container(horizontal=True, width="content", gap="small"):
                    st.button("", icon=":material/arrow_upward:", key=f"L{uid}_up", disabled=i == 0,
                              on_click=move_layer, args=(i, -1), help="Move up")
                    st.button("", icon=":material/arrow_downward:", key=f"L{uid}_down",
                              disabled=i == len(layers) - 1, on_click=move_layer, args=(i, 1), help="Move down")
                    st.button("", icon=":material/close:", key=f"L{uid}_remove", on_click=remove_layer, args=(i,),
                              help="Remove")
            values = {}
            if fields(layer):
                with st.container(horizontal=True):
                    for f in fields(layer):
                        values[f.name] = field_ui(layer, f, f"L{uid}_{f.name}")
            slots[i + 1] = st.empty()
        out.append(type(layer)(**values))
    with st.container(border=True, horizontal=True, vertical_alignment="bottom"):
        st.selectbox("Add a layer", list(LAYER_TYPES), key="cfg_add_kind", width=220)
        st.selectbox("Position", list(range(len(layers) + 1)), key="cfg_add_at", width=160,
                     format_func=lambda n: "at the end" if n == 0 else f"after layer {n}")
        st.button("Add", key="cfg_add", on_click=add_layer, icon=":material/add:")
    slots[len(layers) + 1] = st.empty()  # the implied output layer
    return out, slots


def train_config_ui(config: TrainConfig) -> TrainConfig:
    """Training hyper-parameters; returns a new TrainConfig."""
    by_name = {f.name: f for f in fields(TrainConfig)}
    values = {}
    with st.container(horizontal=True):
        for name in ["optimizer", "learning_rate", "lr_schedule", "batch_size", "epochs", "validation_split", "seed",
                     "start_from"]:
            values[name] = field_ui(config, by_name[name], f"cfg_{name}")
    st.markdown("**Augmentation** (training images only; 0 = off)")
    aug = {}
    with st.container(horizontal=True):
        for f in fields(Augmentation):
            aug[f.name] = field_ui(config.augmentation, f, f"cfg_aug_{f.name}")
    return TrainConfig(**values, augmentation=Augmentation(**aug))


def analysis_table(infos) -> list[dict]:
    return [{"#": i.index, "layer": i.name, "type": i.kind,
             "output shape": " × ".join(map(str, i.output_shape)), "params": i.params, "MACs": i.macs,
             "how": i.arithmetic} for i in infos]


def import_ui() -> None:
    upload = st.file_uploader("Import a spec (.json)", type=["json"], key="cfg_import")
    if upload is None or st.session_state.get(session.SPEC_IMPORTED) == upload.file_id:
        return
    st.session_state[session.SPEC_IMPORTED] = upload.file_id
    try:
        imported = ModelSpec.from_json(upload.getvalue().decode("utf-8", errors="replace"))
        validate(imported)
    except SpecError as exc:
        st.error(f"{upload.name}: {exc}")
        return
    current = tab.spec
    if (tuple(imported.input_shape), imported.num_classes) != (tuple(current.input_shape), current.num_classes):
        st.warning(f"{upload.name} was made for {imported.input_shape} images and {imported.num_classes} classes; "
                   f"adapted to this dataset ({current.input_shape}, {current.num_classes} classes).")
        imported = imported.with_data(current.input_shape, current.num_classes)
    set_spec(imported)
    st.rerun()


# ---------------------------------------------------------------------------
# The page
# ---------------------------------------------------------------------------

chrome.title("Configure")
st.html(LAYOUT_CSS)
dataset = dataset_ui()
preset_ui()

with st.container(horizontal=True, gap="large", key="cfg_layout"):
    editor, summary = st.container(key="cfg_editor"), st.container(key="cfg_summary")
with editor:
    st.subheader("Layers")
    st.caption(f"Input {' × '.join(map(str, tab.spec.input_shape))} (uint8, rescaled to 0…1 inside the model) → "
               "your layers → output Dense with softmax over "
               f"{tab.spec.num_classes} classes (added automatically).")
    new_layers, error_slots = layers_ui()
    st.subheader("Training")
    new_config = train_config_ui(tab.spec.train)

edited = ModelSpec(tab.spec.input_shape, tab.spec.num_classes, new_layers, new_config, tab.spec.preset)
if edited.preset in PRESETS and edited.layers != preset(edited.preset).layers:
    edited.preset = "custom"
tab.spec = edited  # a browser refresh keeps it: the tab is remembered
try:
    analysis, error = validate(edited), None
except SpecError as exc:
    analysis, error = None, exc
if error is not None and error.layer in error_slots:
    error_slots[error.layer].error(str(error), icon=":material/error:")

with summary:
    st.subheader("Shapes, parameters, cost")
    if error is not None:
        st.error(str(error), icon=":material/error:")
        st.dataframe(analysis_table(error.partial), hide_index=True, width="stretch", key="cfg_table")
    else:
        st.dataframe(analysis_table(analysis.layers), hide_index=True, width="stretch", key="cfg_table")
        cfg = edited.train
        n_train = resources.dataset_size(dataset)
        fit_images = int(n_train * (1 - cfg.validation_split))
        speed = resources.machine_speed()
        from cnn.model.timing import epoch_seconds

        seconds = epoch_seconds(analysis, fit_images, cfg.batch_size, speed)
        metrics = st.container(horizontal=True)
        metrics.metric("Parameters", f"{analysis.params:,}", help=f"{analysis.trainable:,} trainable", width="content")
        metrics.metric("MACs per image", f"{analysis.macs / 1e6:.2f} M", width="content")
        need = estimate_for(edited, CATALOG[dataset] if dataset in CATALOG else resources.dataset(dataset))
        metrics.metric("Training memory (est.)", f"{need.total / 2**20:,.0f} MiB", width="content",
                       help=f"{need.text()}. Checked against the memory budget before training starts.")
        metrics.metric("Time per epoch (est.)", f"{seconds:.0f} s" if seconds >= 1 else f"{seconds:.2f} s",
                       width="content",
                       help=f"{fit_images:,} images on this machine, from a measured probe "
                            f"({speed.step_overhead * 1e3:.1f} ms/step + {speed.macs_per_second / 1e9:.2f} GMAC/s)")
        budget = memory_budget()
        if need.total > budget:  # said here, before anyone presses Start
            try:
                check_memory(edited, CATALOG[dataset] if dataset in CATALOG else resources.dataset(dataset), budget=budget)
            except TrainingError as exc:
                st.error(f"Too big to train here: {exc}.", icon=":material/memory:")

    st.subheader("Import / export")
    import_ui()
    st.download_button("Download spec.json", edited.to_json(), file_name="spec.json", mime="application/json",
                       key="cfg_export_json", width="stretch", on_click="ignore")
    script = export_script(edited, dataset if dataset in CATALOG else "folder", "cnn_studio_model")
    st.download_button("Download Keras script (.py)", script, file_name="cnn_studio_model.py", mime="text/x-python",
                       key="cfg_export_script", width="stretch", disabled=error is not None,
                       on_click="ignore")
    with st.expander("Equivalent Keras script"):
        st.code(script, language="python")

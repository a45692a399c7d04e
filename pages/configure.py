"""Configure: dataset, preset, the layer list and training settings, with live shapes, parameters, MACs,
memory and time per epoch, inline validation errors, JSON import/export and the equivalent Keras script."""
import hashlib
import uuid
from dataclasses import fields

import streamlit as st

from cnn import state
from cnn.builder import export_script
from cnn.data import CATALOG, cache_dir, where
from cnn.errors import CnnError, SpecError
from cnn.spec import (LAYER_TYPES, PRESET_NOTES, PRESETS, Augmentation, ModelSpec, TrainConfig, kind_of, preset,
                      validate)

state.page_setup()

UPLOAD = "upload"
MAX_ZIP_BYTES = 100_000_000
LAYER_IDS = "cfg_layer_ids"  # one stable id per layer: widget keys follow a layer when it moves


# ---------------------------------------------------------------------------
# State helpers (callbacks run before the script, so the page always renders the updated spec)
# ---------------------------------------------------------------------------

def spec() -> ModelSpec:
    return st.session_state[state.SPEC]


def set_spec(new: ModelSpec) -> None:
    st.session_state[state.SPEC] = new
    st.session_state[LAYER_IDS] = [uuid.uuid4().hex[:8] for _ in new.layers]


def layer_ids() -> list[str]:
    ids = st.session_state.get(LAYER_IDS)
    if ids is None or len(ids) != len(spec().layers):
        set_spec(spec())
    return st.session_state[LAYER_IDS]


def move_layer(index: int, offset: int) -> None:
    s, ids = spec(), layer_ids()
    j = index + offset
    s.layers[index], s.layers[j] = s.layers[j], s.layers[index]
    ids[index], ids[j] = ids[j], ids[index]
    s.preset = "custom"


def remove_layer(index: int) -> None:
    del spec().layers[index], layer_ids()[index]
    spec().preset = "custom"


def add_layer() -> None:
    kind, position = st.session_state["cfg_add_kind"], st.session_state["cfg_add_at"]
    s, ids = spec(), layer_ids()
    at = len(s.layers) if position == 0 else position  # 0 = at the end, n = after layer n
    s.layers.insert(at, LAYER_TYPES[kind]())
    ids.insert(at, uuid.uuid4().hex[:8])
    s.preset = "custom"


def load_preset() -> None:
    set_spec(state.adapted_preset(st.session_state["cfg_preset"], st.session_state[state.DATASET]))


def choose_dataset(name: str) -> None:
    """Make `name` the dataset and fit the spec's input shape and classes to it."""
    st.session_state[state.DATASET] = name
    if name in CATALOG:
        shape, classes = CATALOG[name].input_shape, len(CATALOG[name].class_names)
    else:
        data = state.load_dataset(name)
        shape, classes = data.input_shape, data.num_classes
    st.session_state[state.SPEC] = spec().with_data(shape, classes)


def on_dataset_pick() -> None:
    picked = st.session_state["cfg_dataset"]
    if picked != UPLOAD:
        choose_dataset(picked)


# ---------------------------------------------------------------------------
# UI pieces: each returns plain values
# ---------------------------------------------------------------------------

def dataset_ui() -> str:
    """The chosen dataset name (or class-folder path)."""
    current = st.session_state[state.DATASET]
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
        if upload.size > MAX_ZIP_BYTES:
            st.error(f"{upload.name} is {upload.size / 1e6:.0f} MB; the limit is {MAX_ZIP_BYTES / 1e6:.0f} MB.")
        else:
            data = upload.getvalue()
            target = cache_dir() / "uploads" / f"{hashlib.sha1(data).hexdigest()[:16]}-{upload.name}"
            try:
                if not target.exists():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(data)
                if st.session_state[state.DATASET] != str(target):
                    choose_dataset(str(target))
            except CnnError as exc:
                st.error(f"{upload.name}: {exc}")
                target.unlink(missing_ok=True)
    current = st.session_state[state.DATASET]
    if current not in CATALOG:
        data = state.load_dataset(current)
        st.caption(f"{len(data.class_names)} classes ({', '.join(data.class_names[:8])}"
                   f"{'…' if len(data.class_names) > 8 else ''}); {data.num_train:,} training images streamed "
                   f"from disk, {data.num_test:,} held out; images resized to "
                   f"{'×'.join(map(str, data.input_shape))}")
    else:
        st.caption("Upload a .zip to use your own images.")
    return current


def preset_ui() -> None:
    names = list(PRESETS)
    cols = st.columns([3, 1])
    cols[0].selectbox("Preset", names, key="cfg_preset", format_func=lambda n: f"{n} — {PRESET_NOTES[n]}",
                      index=names.index(spec().preset) if spec().preset in names else 0)
    cols[1].button("Load preset", key="cfg_load_preset", on_click=load_preset, width="stretch",
                   help="Replace the layers and training settings with the preset's")


def field_ui(obj, f, key: str, label: str | None = None):
    """One widget for one dataclass field, from its metadata; returns the value."""
    meta, value, label = f.metadata, getattr(obj, f.name), label or f.name.replace("_", " ")
    if "choices" in meta:
        choices = list(meta["choices"])
        return st.selectbox(label, choices, index=choices.index(value) if value in choices else 0, key=key,
                            help=meta["help"])
    if isinstance(value, int):
        return int(st.number_input(label, min_value=meta["min"], max_value=meta["max"], value=value, step=1,
                                   key=key, help=meta["help"]))
    step = 0.05 if meta["max"] <= 1 else (1.0 if meta["max"] >= 10 else 0.01)
    return float(st.number_input(label, min_value=float(meta["min"]), max_value=float(meta["max"]),
                                 value=float(value), step=step, key=key, help=meta["help"], format="%g"))


def layers_ui() -> tuple[list, dict]:
    """The editable layer list; returns the layers as the widgets now say, and an error slot per layer
    (filled once the edited spec is validated, so the message matches what is on screen)."""
    layers, ids, out, slots = spec().layers, layer_ids(), [], {}
    if not layers:
        st.info("No hidden layers: the input goes straight to the output layer. Add layers below.")
    for i, (layer, uid) in enumerate(zip(layers, ids)):
        kind = kind_of(layer)
        with st.container(border=True):
            params = [f for f in fields(layer)]
            head = st.columns([7, 1, 1, 1], vertical_alignment="center")
            head[0].markdown(f"**{i + 1} · {kind}** — {type(layer).__doc__.splitlines()[0]}")
            head[1].button("↑", key=f"L{uid}_up", disabled=i == 0, on_click=move_layer, args=(i, -1),
                           help="Move up", width="stretch")
            head[2].button("↓", key=f"L{uid}_down", disabled=i == len(layers) - 1, on_click=move_layer,
                           args=(i, 1), help="Move down", width="stretch")
            head[3].button("✕", key=f"L{uid}_remove", on_click=remove_layer, args=(i,), help="Remove",
                           width="stretch")
            values = {}
            for f, col in zip(params, st.columns(max(len(params), 1)) if params else []):
                with col:
                    values[f.name] = field_ui(layer, f, f"L{uid}_{f.name}")
            slots[i + 1] = st.empty()
        out.append(type(layer)(**values))
    with st.container(border=True):
        cols = st.columns([3, 3, 1.2], vertical_alignment="bottom")
        cols[0].selectbox("Add a layer", list(LAYER_TYPES), key="cfg_add_kind")
        cols[1].selectbox("Position", list(range(len(layers) + 1)), key="cfg_add_at",
                          format_func=lambda n: "at the end" if n == 0 else f"after layer {n}")
        cols[2].button("Add", key="cfg_add", on_click=add_layer, width="stretch")
    slots[len(layers) + 1] = st.empty()  # the implied output layer
    return out, slots


def train_config_ui(config: TrainConfig) -> TrainConfig:
    """Training hyper-parameters; returns a new TrainConfig."""
    by_name = {f.name: f for f in fields(TrainConfig)}
    cols = st.columns(4)
    values = {}
    for col, name in zip(cols * 2, ["optimizer", "learning_rate", "lr_schedule", "batch_size", "epochs",
                                    "validation_split", "seed"]):
        with col:
            values[name] = field_ui(config, by_name[name], f"cfg_{name}")
    st.markdown("**Augmentation** (training images only; 0 = off)")
    cols = st.columns(3)
    aug = {}
    for col, f in zip(cols, fields(Augmentation)):
        with col:
            aug[f.name] = field_ui(config.augmentation, f, f"cfg_aug_{f.name}")
    return TrainConfig(**values, augmentation=Augmentation(**aug))


def analysis_table(infos) -> list[dict]:
    return [{"#": i.index, "layer": i.name, "type": i.kind,
             "output shape": " × ".join(map(str, i.output_shape)), "params": i.params, "MACs": i.macs,
             "how": i.arithmetic} for i in infos]


def import_ui() -> None:
    upload = st.file_uploader("Import a spec (.json)", type=["json"], key="cfg_import")
    if upload is None or st.session_state.get("_cfg_imported") == upload.file_id:
        return
    st.session_state["_cfg_imported"] = upload.file_id
    try:
        imported = ModelSpec.from_json(upload.getvalue().decode("utf-8", errors="replace"))
        validate(imported)
    except SpecError as exc:
        st.error(f"{upload.name}: {exc}")
        return
    current = spec()
    if (tuple(imported.input_shape), imported.num_classes) != (tuple(current.input_shape), current.num_classes):
        st.warning(f"{upload.name} was made for {imported.input_shape} images and {imported.num_classes} classes; "
                   f"adapted to this dataset ({current.input_shape}, {current.num_classes} classes).")
        imported = imported.with_data(current.input_shape, current.num_classes)
    set_spec(imported)
    st.rerun()


# ---------------------------------------------------------------------------
# The page
# ---------------------------------------------------------------------------

st.title("🧱 Configure")
dataset = dataset_ui()
preset_ui()

editor, summary = st.columns([3, 2], gap="large")
with editor:
    st.subheader("Layers")
    st.caption(f"Input {' × '.join(map(str, spec().input_shape))} (uint8, rescaled to 0…1 inside the model) → "
               "your layers → output Dense with softmax over "
               f"{spec().num_classes} classes (added automatically).")
    new_layers, error_slots = layers_ui()
    st.subheader("Training")
    new_config = train_config_ui(spec().train)

edited = ModelSpec(spec().input_shape, spec().num_classes, new_layers, new_config, spec().preset)
if edited.preset in PRESETS and edited.layers != preset(edited.preset).layers:
    edited.preset = "custom"
st.session_state[state.SPEC] = edited
state.remember_tab()  # a browser refresh keeps this edit
try:
    analysis, error = validate(edited), None
except SpecError as exc:
    analysis, error = None, exc
if error is not None and error.layer in error_slots:
    error_slots[error.layer].error(str(error), icon="⛔")

with summary:
    st.subheader("Shapes, parameters, cost")
    if error is not None:
        st.error(str(error), icon="⛔")
        st.dataframe(analysis_table(error.partial), hide_index=True, width="stretch", key="cfg_table")
    else:
        st.dataframe(analysis_table(analysis.layers), hide_index=True, width="stretch", key="cfg_table")
        cfg = edited.train
        n_train = state.dataset_size(dataset)
        fit_images = int(n_train * (1 - cfg.validation_split))
        speed = state.machine_speed()
        from cnn.estimate import epoch_seconds

        seconds = epoch_seconds(analysis, fit_images, cfg.batch_size, speed)
        cols = st.columns(2)
        cols[0].metric("Parameters", f"{analysis.params:,}", help=f"{analysis.trainable:,} trainable")
        cols[1].metric("MACs per image", f"{analysis.macs / 1e6:.2f} M")
        cols[0].metric("Training memory (est.)", f"{analysis.memory_bytes(cfg.batch_size, cfg.optimizer) / 2**20:.0f} MiB",
                       help="float32 weights, gradients and optimizer slots plus one batch of activations")
        cols[1].metric("Time per epoch (est.)", f"{seconds:.0f} s" if seconds >= 1 else f"{seconds:.2f} s",
                       help=f"{fit_images:,} images on this machine, from a measured probe "
                            f"({speed.step_overhead * 1e3:.1f} ms/step + {speed.macs_per_second / 1e9:.2f} GMAC/s)")

    st.subheader("Import / export")
    import_ui()
    st.download_button("Download spec.json", edited.to_json(), file_name="spec.json", mime="application/json",
                       key="cfg_export_json", width="stretch")
    script = export_script(edited, dataset if dataset in CATALOG else "folder", "cnn_studio_model")
    st.download_button("Download Keras script (.py)", script, file_name="cnn_studio_model.py", mime="text/x-python",
                       key="cfg_export_script", width="stretch", disabled=error is not None)
    with st.expander("Equivalent Keras script"):
        st.code(script, language="python")

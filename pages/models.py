"""Models: the registry as a table; one model's spec, curves and metrics; set active, rename, delete,
download; upload a .keras file or a bundle; compare several models' curves and metrics."""
from datetime import datetime

import streamlit as st

from app import chrome, learned, resources, session, workspaces
from cnn.analysis.calibration import calibration_summary
from cnn.core.errors import CnnError
from cnn.core.text import accuracy_text, safe_label
from cnn.data.datasets import CATALOG, dataset_title
from cnn.figures.curves import compare_curves, history_curves
from cnn.model.spec import ModelSpec, SpecError, validate
from cnn.run.workflows import calibrate_if_possible
from cnn.store import bundles, registry
from cnn.store.export import (FORMATS, MAX_FLOAT_DIFF, MAX_INT8_DROP, available_formats, cache_path, download_bytes,
                              export_for_app, size_text)

tab = chrome.page_setup()


def created_at(info) -> datetime | None:
    """The model's creation time as a datetime (metrics.json keeps ISO 8601 text), None if unreadable."""
    try:
        return datetime.fromisoformat(str(info.created))
    except ValueError:
        return None


def rows(infos) -> list[dict]:
    return [{"name": i.name, "dataset": dataset_title(i.dataset), "preset": i.preset, "parameters": i.params,
             "test accuracy": i.test_accuracy, "epochs": i.epochs, "created": created_at(i),
             "files": "ok" if not i.damaged else "damaged" if i.usable else "unusable"} for i in infos]


TABLE_COLUMNS = {
    "parameters": st.column_config.NumberColumn(format="localized"),
    "test accuracy": st.column_config.NumberColumn(format="percent", help="Blank: not evaluated"),
    "created": st.column_config.DatetimeColumn(format="D MMM YYYY, HH:mm"),
}


def upload_ui() -> None:
    """Upload a .keras model or a .zip bundle; refusals leave the registry untouched."""
    upload = st.file_uploader("Upload a model (.keras file, or a .zip downloaded from this page)",
                              type=["keras", "zip"], key="models_upload")
    if upload is None or st.session_state.get(session.MODELS_UPLOADED) == upload.file_id:
        return
    st.session_state[session.MODELS_UPLOADED] = upload.file_id
    quota = workspaces.quota_problem(workspaces.current())
    if quota:
        session.flash(f"Not imported: {quota}.", "error")
        st.rerun()
    dataset = tab.dataset
    try:  # the Configure page's own class folders also count as a dataset the model may fit
        extra = [] if dataset in CATALOG else [resources.dataset(dataset).input_shape]
    except CnnError:
        extra = []
    with st.spinner(f"Checking {upload.name}…"):
        try:
            info = bundles.import_model(upload.getvalue(), upload.name, allowed_shapes=extra)
        except CnnError as exc:
            session.flash(f"Not imported: {exc}", "error")
        else:
            chrome.set_active_model(info.name)
            session.flash(f"Imported {safe_label(upload.name)} as {info.name!r} and made it the active model.",
                          "success")
            if info.import_notes:
                session.flash("Left out of the upload (it did not pass the checks): " + "; ".join(info.import_notes),
                              "warning")
            if not calibration_summary(info)["calibrated"]:  # arrived without one: fit it if its data is here
                with st.spinner("Calibrating it on its dataset…"):
                    found, reason = calibrate_if_possible(info.name, dataset_for(info))
                session.flash("Calibrated it on its dataset." if found is not None else reason.capitalize() + ".",
                              "info")
    st.rerun()


def dataset_for(info):
    """The dataset to calibrate `info` on, if it can be had here (else None: calibrate_if_possible says why)."""
    try:
        return resources.model_dataset(info)
    except CnnError:
        return None


@chrome.in_workspace
def calibrate(name: str) -> None:
    """Callback: fit (or refit) the model's calibration on its dataset."""
    found, reason = calibrate_if_possible(name, dataset_for(registry.model_info(name)))
    session.flash(f"Calibrated {name!r}: temperature {found.temperature:.2f}." if found is not None else
                  reason.capitalize() + ".", "success" if found is not None else "warning")


@chrome.in_workspace
def rename(old: str) -> None:
    """Callback: rename `old` to the name typed in its text box (callbacks run before widgets exist)."""
    new = st.session_state[f"models_rename_{old}"].strip()
    try:
        registry.rename_model(old, new)
    except CnnError as exc:
        session.flash(str(exc), "error")
        return
    if tab.active_model == old:
        chrome.set_active_model(new)
    st.session_state[session.MODELS_PICK] = new
    session.flash(f"Renamed {old!r} to {new!r}.", "success")


@chrome.in_workspace
def delete(name: str) -> None:
    """Callback: delete `name` (only reachable after the confirmation box is ticked)."""
    try:
        registry.delete_model(name)
    except CnnError as exc:  # e.g. already deleted from another tab
        session.flash(str(exc), "error")
        return
    st.session_state.pop(session.MODELS_PICK, None)
    session.flash(f"Deleted {name!r}.", "success")


def manage_ui(info) -> None:
    """Set active, rename, download, delete (with confirmation) for one model."""
    if registry.is_shipped(info.name):  # read-only for everyone: say so rather than offer what would fail
        cols = st.columns(2, vertical_alignment="bottom")
        active = tab.active_model == info.name
        cols[0].button("Active ✓" if active else "Set active", key="models_set_active", disabled=active,
                       on_click=chrome.set_active_model, args=(info.name,), width="stretch")
        cols[1].download_button("Download .zip", lambda: bundles.bundle_bytes(info.name),
                                file_name=f"{info.name}.zip", mime="application/zip", key="models_download",
                                width="stretch", on_click="ignore")
        st.caption(":material/lock: This model ships with CNN Studio, so it is read-only: it cannot be renamed, "
                   "replaced or deleted, and it is there for everyone. Download it to make a copy of your own.")
        return
    if not info.usable:
        st.caption("This model cannot be loaded, so it can only be deleted.")
        delete_ui(info)
        return
    cols = st.columns(4, vertical_alignment="bottom")
    active = tab.active_model == info.name
    cols[0].button("Active ✓" if active else "Set active", key="models_set_active", disabled=active,
                   on_click=chrome.set_active_model, args=(info.name,), width="stretch")
    cols[1].download_button("Download .zip", lambda: bundles.bundle_bytes(info.name), file_name=f"{info.name}.zip",
                            mime="application/zip", key="models_download", width="stretch", on_click="ignore")
    new_name = cols[2].text_input("New name", value=info.name, key=f"models_rename_{info.name}")
    cols[3].button("Rename", key="models_rename", width="stretch", disabled=new_name.strip() == info.name,
                   on_click=rename, args=(info.name,))
    delete_ui(info)


def delete_ui(info) -> None:
    """Delete, once the box is ticked."""
    with st.expander("Delete this model", key=f"models_delete_open_{info.name}"):
        confirm = st.checkbox(f"Yes, delete {info.name!r} and its files", key=f"models_confirm_{info.name}")
        st.button("Delete", key="models_delete", type="primary", disabled=not confirm, on_click=delete,
                  args=(info.name,))


def details_ui(info) -> None:
    if info.damaged:
        st.warning(f"This model's folder is {'damaged' if info.usable else 'unusable'}: " + "; ".join(info.problems)
                   + (" — what was unreadable was left out." if info.usable else
                      " — it cannot be loaded: delete it on Manage, or train or upload it again."))
    if info.import_notes:
        st.caption("Left out when it was imported: " + "; ".join(info.import_notes))
    if not info.usable:
        return
    left, right = st.columns([3, 2], gap="large")
    with left:
        st.plotly_chart(history_curves(info.history(), title=f"{info.name}: training curves"),
                        width="stretch", key="models_curves")
    with right:
        m = info.metrics
        cols = st.columns(2)
        cols[0].metric("Test accuracy", accuracy_text(m.get("test_accuracy")))
        cols[1].metric("Test loss", f"{m['test_loss']:.4f}" if m.get("test_loss") is not None else "–")
        st.caption(f"{m.get('num_test', '?')} test images of {dataset_title(info.dataset)} · trained {info.epochs} epoch(s) in "
                   f"{m.get('train_seconds', '?')} s · Keras {m.get('keras_version', '?')}"
                   + (f" · imported from {m['imported_from']}" if m.get("imported_from") else ""))
        try:
            spec = ModelSpec.from_dict(info.spec)
            table = [{"layer": i.name, "type": i.kind, "output": " × ".join(map(str, i.output_shape)),
                      "params": i.params} for i in validate(spec).layers]
            st.dataframe(table, hide_index=True, width="stretch", key="models_spec_table")
            cfg = spec.train
            st.caption(f"{cfg.optimizer}, lr {cfg.learning_rate:g} ({cfg.lr_schedule}), batch {cfg.batch_size}, "
                       f"seed {cfg.seed}")
        except SpecError as exc:
            st.warning(f"Its spec.json cannot be read: {exc}")
        summary = calibration_summary(info)
        if summary["calibrated"]:
            st.caption(f":material/tune: Calibrated: {summary['note']} (calibration error "
                       f"{summary['ece_before']:.4f} → {summary['ece_after']:.4f} on its validation images).")
        else:
            st.caption(f":material/warning: {summary['note']}")
        st.button("Recalibrate" if summary["calibrated"] else "Calibrate", key="models_calibrate", on_click=calibrate,
                  args=(info.name,), help="Fit the temperature and the out-of-distribution statistics on the "
                                          "model's own dataset (a few seconds)")
        if m.get("calibration_note"):
            st.caption(m["calibration_note"])


def film_ui(info) -> None:
    """Replay the film recorded while the model trained."""
    if not info.usable:
        st.caption("This model cannot be loaded.")
        return
    try:
        film = resources.film(info)
    except CnnError as exc:
        st.warning(f"Its film cannot be shown: {exc}")
        return
    if film is None:
        st.info(f"{info.name} was trained without a film (films are recorded by Train and `python -m cnn train` "
                "since this version; imported models and older ones have none). Train a model to watch one.")
        return
    learned.film_player(film, f"models_film_{info.name}", class_names=info.class_names)


EXPORT_TITLES = {"keras": "Keras", "savedmodel": "TensorFlow SavedModel", "tflite": "TensorFlow Lite (float32)",
                 "tflite-int8": "TensorFlow Lite (int8)", "onnx": "ONNX"}


def made_export(info, fmt: str):
    """The export of this model file in `fmt` if it was already made (its report is kept beside it), else None."""
    path = cache_path(info, fmt)
    if not (path.exists() and (path.parent / f"{path.name}.report.json").is_file()):
        return None
    try:
        return export_for_app(info.name, fmt)  # reads the kept report; nothing is written
    except CnnError:
        return None


def export_text(report) -> str:
    """Size and agreement with Keras, in words."""
    same = "all" if report.agreement == 1 else f"{report.agreement:.2%} of the"
    text = (f"**{size_text(report.size)}** · checked on {report.images:,} test images of "
            f"{dataset_title(report.dataset)}: same top class as Keras on {same} images, ")
    if report.format == "tflite-int8":
        return text + (f"accuracy {accuracy_text(report.export_accuracy)} vs Keras {accuracy_text(report.keras_accuracy)}"
                       f" ({report.accuracy_drop * 100:+.2f} points lost; at most {MAX_INT8_DROP * 100:.1f} allowed).")
    return text + (f"largest probability difference {report.max_diff:.1e} (at most {MAX_FLOAT_DIFF:.0e} allowed), "
                   f"accuracy {accuracy_text(report.export_accuracy)} like Keras's "
                   f"{accuracy_text(report.keras_accuracy)}.")


def export_ui(info) -> None:
    """Each deployment format: a button that writes and verifies it (once per model file), then its download
    with its size and how well it agrees with the Keras model."""
    if not info.usable:
        st.caption("This model cannot be loaded, so it cannot be exported.")
        return
    st.markdown("Copies of this model for deployment. Each one is checked right after it is written: run by its "
                "own runtime on the model's test images and compared with Keras. Every format takes images of "
                "0…255 pixel values and returns class probabilities.")
    for fmt, reason in available_formats().items():
        with st.container(border=True):
            st.markdown(f"**{EXPORT_TITLES.get(fmt, fmt)}** · {FORMATS[fmt][1]}")
            if reason:
                st.caption(f":material/block: {reason}")
                continue
            report = made_export(info, fmt)
            if report is None and st.button(f"Make the {EXPORT_TITLES.get(fmt, fmt)} export", icon=":material/build:",
                                            key=f"models_export_{fmt}"):
                with st.spinner(f"Writing the {fmt} export and checking it on the test images (a few seconds)…"):
                    try:
                        report = export_for_app(info.name, fmt)
                    except CnnError as exc:
                        st.error(f"The {fmt} export failed: {exc}")
                        continue
            if report is None:
                continue
            name = report.path.name + (".zip" if report.path.is_dir() else "")
            cols = st.columns([1, 3], vertical_alignment="center")
            cols[0].download_button(f"Download {name}", lambda report=report: download_bytes(report)[1],
                                    file_name=name, mime="application/zip" if name.endswith(".zip") else
                                    "application/octet-stream", key=f"models_export_download_{fmt}",
                                    icon=":material/download:", on_click="ignore", width="stretch")
            cols[1].markdown(export_text(report))
            if not report.passed:
                st.warning(f"This export did not pass its check ({report.criterion}): use it with care, or use "
                           "another format.")


def compare_ui(infos) -> None:
    names = [i.name for i in infos]
    default = names[:2] if len(names) >= 2 else names
    picked = st.multiselect("Models to compare", names, default=default, key="models_compare")
    if len(picked) < 2:
        st.caption("Pick two or more models.")
        return
    chosen = [i for i in infos if i.name in picked]
    metric = st.radio("Curve", ["val_accuracy", "val_loss", "accuracy", "loss"], horizontal=True,
                      key="models_compare_metric")
    st.plotly_chart(compare_curves({i.name: i.history() for i in chosen}, metric), width="stretch",
                    key="models_compare_chart")
    st.dataframe([{"metric": k, **{i.name: v for i, v in zip(chosen, values)}} for k, values in {
        "dataset": [dataset_title(i.dataset) for i in chosen],
        "preset": [i.preset for i in chosen],
        "parameters": [f"{i.params:,}" for i in chosen],
        "test accuracy": [accuracy_text(i.test_accuracy) for i in chosen],
        "test loss": [f"{i.metrics['test_loss']:.4f}" if i.metrics.get("test_loss") is not None else "–"
                      for i in chosen],
        "epochs": [str(i.epochs) for i in chosen],
        "train seconds": [str(i.metrics.get("train_seconds", "–")) for i in chosen],
    }.items()], hide_index=True, width="stretch", key="models_compare_table")


def workspace_ui() -> None:
    """Whose models these are, and (hosted) how much room is left and how long they are kept."""
    workspace = workspaces.current()
    if not workspace.private:
        return
    kept = "kept while your account exists" if workspace.kind == "account" else \
        f"deleted after {workspaces.idle_hours():g} hours without a visit" + \
        (" — sign in (sidebar) to keep them" if workspaces.auth_configured() else "")
    st.caption(f":material/folder_shared: Your private workspace ({workspace.label}): "
               f"{workspaces.usage(workspace).text()}; {kept}. Nobody else sees it; shipped models are shared and "
               "read-only.")


chrome.title("Models")
workspace_ui()

infos = registry.list_models()
if not infos:
    st.info("No saved models yet. Train one on **Train**, or upload one below.")
else:
    st.dataframe(rows(infos), hide_index=True, width="stretch", key="models_table", column_config=TABLE_COLUMNS)
    names = [i.name for i in infos]
    if st.session_state.get(session.MODELS_PICK) not in names:
        st.session_state[session.MODELS_PICK] = tab.active_model if \
            tab.active_model in names else names[0]
    picked = st.selectbox("Model", names, key=session.MODELS_PICK)
    info = next(i for i in infos if i.name == picked)
    # Stateful tabs: a rename or delete reruns the page and keeps the open tab (and only it is drawn).
    details, film, export, manage, compare = st.tabs(["Details", "Training film", "Export", "Manage", "Compare"],
                                                     key=session.MODELS_TABS, on_change="rerun")
    if details.open:
        with details:
            details_ui(info)
    if film.open:
        with film:
            film_ui(info)
    if export.open:
        with export:
            export_ui(info)
    if manage.open:
        with manage:
            manage_ui(info)
    if compare.open:
        with compare:
            compare_ui(infos)
upload_ui()

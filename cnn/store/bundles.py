"""A model as one download and back: `bundle_bytes(name)` zips a model's folder; `import_model(data, filename)`
checks an uploaded bundle or .keras file to the bottom (archive sizes, JSON by schema, the Keras file with
safe_mode, the calibration against the model) and saves it under a free name.
"""
from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

from cnn.analysis.calibration import Calibration
from cnn.core.errors import CalibrationError, RegistryError, SpecError
from cnn.core.text import limit_text, safe_label
from cnn.data.archive import KERAS_MAX_BYTES, ArchiveError, check_keras_archive, check_zip
from cnn.data.datasets import CATALOG, UNKNOWN
from cnn.model.builder import rebuild
from cnn.model.spec import ModelSpec, TrainConfig
from cnn.store.metadata import clean_history, clean_metrics
from cnn.store.registry import (EXTRA_FILES, FILES, MAX_JSON_BYTES, MAX_UPLOAD_BYTES, ModelInfo, check_name,
                                keras_reason, model_info, save_model, unique_name)

# ---------------------------------------------------------------------------
# Download and upload
# ---------------------------------------------------------------------------


def bundle_bytes(name: str) -> bytes:
    """A .zip of the model's folder (model.keras, spec.json, history.json, metrics.json)."""
    import io
    import zipfile

    info = model_info(name)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for file in FILES + tuple(f for f in EXTRA_FILES if (info.path / f).is_file()):
            zf.write(info.path / file, f"{name}/{file}")
    return buffer.getvalue()


def _guess_dataset(shape: tuple, classes: int) -> str:
    for dataset in ("mnist", "fashion_mnist", "cifar10"):
        info = CATALOG[dataset]
        if tuple(info.input_shape) == tuple(shape) and len(info.class_names) == classes:
            return dataset
    return UNKNOWN


def _read_member(archive, member, limit: int) -> bytes:
    """An entry's bytes, at most `limit` of them (zipfile stops at the size the directory declares, and
    check_zip has bounded that)."""
    if member.file_size > limit:
        raise RegistryError(f"{member.filename} is {member.file_size / 1e6:,.1f} MB; the limit is {limit / 1e6:g} MB")
    with archive.open(member) as stream:
        return stream.read(limit + 1)[:limit]


def read_bundle(data: bytes, label: str) -> tuple[bytes, dict, list[str]]:
    """(the .keras bytes, the bundle's parsed spec/history/metrics JSON, notes on files dropped) of an upload
    that is a .keras file or a .zip bundle. Every zip — the bundle and the model.keras inside it — is
    checked from its directory (count, sizes, ratios) before anything is unpacked; RegistryError if unsafe."""
    import io
    import zipfile

    if not data.startswith(b"PK\x03\x04"):
        raise RegistryError(f"{label} is not a Keras model: expected a .keras file or a .zip bundle")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise RegistryError(f"{label} is truncated or damaged: it starts like a .keras/.zip file but its zip "
                            "directory is missing or broken — download or save it again") from None
    extras, notes = {}, []
    try:
        with archive:
            names = {m.filename.rsplit("/", 1)[-1] for m in archive.infolist()}
            if "config.json" in names and "model.keras" not in names:
                keras_bytes = data  # a bare .keras file: checked as one below
            elif "model.keras" in names:
                members = {m.filename.rsplit("/", 1)[-1]: m
                           for m in check_zip(archive, max_files=50, max_bytes=KERAS_MAX_BYTES + 4 * 20_000_000)}
                keras_bytes = _read_member(archive, members["model.keras"], KERAS_MAX_BYTES)
                if "calibration.json" in members:  # raw bytes: checked against the model once it is built
                    try:
                        extras["calibration.json"] = _read_member(archive, members["calibration.json"],
                                                                  MAX_JSON_BYTES["calibration.json"])
                    except RegistryError as exc:
                        notes.append(f"calibration.json dropped ({exc})")
                for extra in ("spec.json", "history.json", "metrics.json"):
                    if extra not in members:
                        continue
                    try:
                        extras[extra] = json.loads(_read_member(archive, members[extra], MAX_JSON_BYTES[extra]))
                    except RegistryError as exc:
                        notes.append(f"{extra} dropped ({exc})")
                    except (ValueError, RecursionError):  # not JSON, not UTF-8, absurd numbers or nesting
                        notes.append(f"{extra} dropped (not valid JSON)")
            else:
                raise RegistryError(f"{label} is not a Keras model: no config.json or model.keras inside")
    except ArchiveError as exc:
        raise RegistryError(f"{label}: {exc}") from None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:  # CRC errors, truncated entries, zlib
        raise RegistryError(f"{label} is damaged ({str(exc)[:80]}) — download or save it again") from None
    try:
        check_keras_archive(keras_bytes)
    except ArchiveError as exc:
        inner = "" if keras_bytes is data else "the model.keras inside it: "
        raise RegistryError(f"{label}: {inner}{exc}") from None
    return keras_bytes, extras, notes


def import_model(data: bytes, filename: str, name: str | None = None, allowed_shapes=(),
                 max_bytes: int = MAX_UPLOAD_BYTES) -> ModelInfo:
    """Accept an uploaded .keras file or a .zip bundle (as `bundle_bytes` makes) into the registry.

    Refused with RegistryError — and nothing written — when the file is too large, not a Keras model,
    truncated, unsafe (zip bombs at either level), contains code (Lambda layers), uses layers CNN Studio
    cannot rebuild, or takes an input shape that no dataset fits (catalogue shapes plus `allowed_shapes`).
    The bundle's metadata goes through the schema (cnn.store.metadata): what fails it is dropped, and the notes
    saying so are kept in the model's metrics (`ModelInfo.import_notes`) for the page to show. A dataset
    is kept only as a catalogue name; a path the upload names is never used.
    """
    label = safe_label(filename)
    if len(data) > max_bytes:
        raise RegistryError(f"{label} is {limit_text(len(data), max_bytes)}")
    if name is not None:
        check_name(name)
    keras_bytes, extras, notes = read_bundle(data, label)
    model = _load_upload(keras_bytes, label)
    shape = tuple(model.inputs[0].shape[1:])
    allowed = {tuple(i.input_shape) for i in CATALOG.values()} | {tuple(s) for s in allowed_shapes}
    if shape not in allowed:
        raise RegistryError(f"{label} takes {'×'.join(map(str, shape))} images, which no dataset here fits "
                            f"(datasets: {', '.join('×'.join(map(str, s)) for s in sorted(allowed))})")
    # Training settings and preset from its spec.json, if they pass the spec's own checks.
    train, preset = None, None
    if "spec.json" in extras:
        try:
            theirs = ModelSpec.from_dict(extras["spec.json"])
            train, preset = theirs.train, theirs.preset
        except SpecError as exc:
            notes.append(f"spec.json: training settings and preset dropped ({exc})")
    try:
        ours, spec = rebuild(model, train or TrainConfig())
    except SpecError as exc:
        raise RegistryError(f"{label}: {exc}") from None
    if preset:
        spec.preset = preset
    # Metrics and history through the one schema; what fails is dropped with a note.
    metrics, dropped = clean_metrics(extras.get("metrics.json", {}), imported=True)
    notes += dropped
    history, dropped = clean_history(extras.get("history.json", {}))
    notes += dropped
    k = spec.num_classes
    for key in ("class_names", "confusion_matrix", "per_class"):
        if key in metrics and len(metrics[key]) != k:
            notes.append(f"metrics.json: {key} dropped (it has {len(metrics[key])} entries; the model has {k} "
                         "classes)")
            del metrics[key]
    dataset = metrics.get("dataset") or _guess_dataset(shape, k)
    if dataset in CATALOG and (tuple(CATALOG[dataset].input_shape) != shape or len(CATALOG[dataset].class_names) != k):
        notes.append(f"metrics.json: dataset {dataset!r} dropped (the model takes {'×'.join(map(str, shape))} "
                     f"images and has {k} classes)")
        dataset = _guess_dataset(shape, k)
    classes = metrics.get("class_names") or (list(CATALOG[dataset].class_names) if dataset in CATALOG
                                             else [str(i) for i in range(k)])
    if len(notes) > 50:
        notes = notes[:49] + [f"… and {len(notes) - 49} more"]
    metrics = {**metrics, "dataset": dataset, "class_names": [str(c) for c in classes], "imported_from": label,
               "import_notes": [note[:400] for note in notes]}
    extra_files, note = _checked_calibration(extras.get("calibration.json"), ours)
    if note:
        metrics["calibration_note"] = note
    target = name or unique_name(label.rsplit(".", 1)[0])
    return save_model(target, ours, spec, history, metrics, if_taken="error" if name else "rename",
                      extra_files=extra_files)


def _checked_calibration(data: bytes | None, model) -> tuple[dict | None, str]:
    """A bundle's calibration.json kept only when it reads as a calibration and fits the model:
    ({'calibration.json': data} or None, a note saying why it was left out, or '')."""
    if data is None:
        return None, ""
    try:
        Calibration.from_json(data).check_model(model)
    except (CalibrationError, RecursionError) as exc:
        return None, f"the bundle's calibration.json was left out ({exc}); the model is uncalibrated"
    return {"calibration.json": data}, ""


def _load_upload(keras_bytes: bytes, label: str):
    """Load checked .keras bytes with safe_mode=True from a private temporary file."""
    import keras

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "upload.keras"
        path.write_bytes(keras_bytes)
        try:
            return keras.saving.load_model(path, compile=False, safe_mode=True)
        except Exception as exc:  # noqa: BLE001 — Keras raises many kinds for bad files
            reason = keras_reason(exc)
            if reason.startswith("it contains code"):
                raise RegistryError(f"{label} contains code (a Lambda layer or a custom object); CNN Studio "
                                    "only loads models made of standard layers") from None
            raise RegistryError(f"{label} could not be loaded as a Keras model: {reason}") from None

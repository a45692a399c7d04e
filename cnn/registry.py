"""The model registry: one folder per saved model under CNN_MODELS_DIR (default: models/).

    models/<name>/model.keras    weights + architecture (no optimizer state), loaded with safe_mode=True
    models/<name>/spec.json      the ModelSpec it was built from (a checkpoint stores its own config)
    models/<name>/history.json   per-epoch curves
    models/<name>/metrics.json   test accuracy/loss, confusion matrix, dataset, created, versions

Saving writes a hidden temporary folder and renames it into place, so a crash never leaves a
half-written model. Listing reads only the JSON files: no TensorFlow needed.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from cnn.data import PROJECT_ROOT, UNKNOWN
from cnn.errors import RegistryError

FILES = ("model.keras", "spec.json", "history.json", "metrics.json")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
DEFAULT_MODEL = "mnist-default"


def models_dir() -> Path:
    """CNN_MODELS_DIR if set, else the project's models/ folder."""
    return Path(os.environ.get("CNN_MODELS_DIR") or PROJECT_ROOT / "models").expanduser()


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about a saved model without loading it."""

    name: str
    path: Path
    spec: dict  # spec.json
    metrics: dict  # metrics.json
    mtime: float  # of model.keras: a cache key that changes when the file does

    @property
    def dataset(self) -> str:
        return self.metrics.get("dataset", UNKNOWN)

    @property
    def preset(self) -> str:
        return self.spec.get("preset", "custom")

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.spec.get("input_shape", ()))

    @property
    def class_names(self) -> list[str]:
        return list(self.metrics.get("class_names") or range(self.spec.get("num_classes", 0)))

    @property
    def test_accuracy(self) -> float | None:
        return self.metrics.get("test_accuracy")

    @property
    def params(self) -> int:
        return int(self.metrics.get("params", 0))

    @property
    def epochs(self) -> int:
        return int(self.metrics.get("epochs", 0))

    @property
    def created(self) -> str:
        return self.metrics.get("created", "")

    def history(self) -> dict:
        return _read_json(self.path / "history.json")


def check_name(name: str) -> str:
    """`name` if it is a valid model name, else RegistryError saying what is allowed."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise RegistryError(f"invalid model name {name!r}: use 1–64 letters, digits, '.', '_' or '-', "
                            "starting with a letter or digit")
    return name


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise RegistryError(f"cannot read {path}: {exc}") from None


def model_info(name: str) -> ModelInfo:
    folder = models_dir() / check_name(name)
    missing = [f for f in FILES if not (folder / f).is_file()]
    if not folder.is_dir():
        known = ", ".join(i.name for i in list_models()) or "none yet"
        raise RegistryError(f"no saved model named {name!r} in {models_dir()} (saved models: {known})")
    if missing:
        raise RegistryError(f"model {name!r} is incomplete: missing {', '.join(missing)}")
    return ModelInfo(name, folder, _read_json(folder / "spec.json"), _read_json(folder / "metrics.json"),
                     (folder / "model.keras").stat().st_mtime)


def list_models() -> list[ModelInfo]:
    """Every complete saved model, newest first (hidden temporary folders are skipped)."""
    root = models_dir()
    infos = []
    if root.is_dir():
        for folder in root.iterdir():
            if folder.is_dir() and NAME_RE.match(folder.name) and all((folder / f).is_file() for f in FILES):
                try:
                    infos.append(model_info(folder.name))
                except RegistryError:
                    continue  # unreadable JSON: not offered, never crashes a listing
    return sorted(infos, key=lambda i: (i.created, i.name), reverse=True)


def unique_name(base: str, reserved=()) -> str:
    """`base`, or `base-2`, `base-3`, … whichever is free (and not in `reserved`, e.g. a running job's name)."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip("-._")[:58] or "model"
    name, n = base, 1
    while (models_dir() / name).exists() or name in reserved:
        n += 1
        name = f"{base}-{n}"
    return name


def _strip_optimizer(model):
    """A copy of `model` without optimizer state: smaller files, nothing but what prediction needs."""
    # from_config, not keras.models.clone_model: since Keras 3.15 the clone comes back compiled.
    clone = type(model).from_config(model.get_config())
    clone.set_weights(model.get_weights())
    return clone


# Optional files a model folder may hold besides FILES, written by save_model(extra_files=...) and copied by
# rename/bundle/import: what other engine modules store with a model (calibration, training film, ...).
EXTRA_FILES = ("calibration.json", "film.npz")


def save_model(name: str, model, spec, history: dict, metrics: dict, overwrite: bool = False,
               extra_files: dict[str, bytes] | None = None) -> ModelInfo:
    """Write the four files (and any `extra_files`, named in EXTRA_FILES) into a temporary folder, then rename
    it to models/<name> (atomic)."""
    import keras
    import tensorflow as tf

    check_name(name)
    root = models_dir()
    root.mkdir(parents=True, exist_ok=True)
    target = root / name
    if target.exists() and not overwrite:
        raise RegistryError(f"a model named {name!r} already exists; choose another name or delete it first")
    metrics = {
        **metrics,
        "created": metrics.get("created") or datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "keras_version": keras.__version__,
        "tensorflow_version": tf.__version__,
        "params": int(model.count_params()),
    }
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=root))
    try:
        _strip_optimizer(model).save(tmp / "model.keras")
        (tmp / "spec.json").write_text(spec.to_json() if hasattr(spec, "to_json") else json.dumps(spec, indent=2))
        (tmp / "history.json").write_text(json.dumps(history))
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2))
        for file, data in (extra_files or {}).items():
            if file not in EXTRA_FILES:
                raise RegistryError(f"unexpected model file {file!r} (allowed: {', '.join(EXTRA_FILES)})")
            (tmp / file).write_bytes(data)
        if target.exists():
            trash = root / f".trash-{name}-{uuid.uuid4().hex[:8]}"
            os.replace(target, trash)
            os.replace(tmp, target)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return model_info(name)


def write_extra_file(name: str, file: str, data: bytes) -> Path:
    """Add or replace one of EXTRA_FILES in an existing model's folder, atomically (a temporary file in the
    same folder renamed over it): the model file and the other files are untouched."""
    if file not in EXTRA_FILES:
        raise RegistryError(f"unexpected model file {file!r} (allowed: {', '.join(EXTRA_FILES)})")
    info = model_info(name)
    handle, tmp = tempfile.mkstemp(prefix=f".tmp-{file}-", dir=info.path)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; model files are as readable as any other
        os.replace(tmp, info.path / file)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return info.path / file


def load_model(name: str):
    """The saved keras.Model, loaded with safe_mode=True (no arbitrary code, e.g. Lambda layers)."""
    import keras

    info = model_info(name)
    try:
        return keras.saving.load_model(info.path / "model.keras", compile=False, safe_mode=True)
    except Exception as exc:  # noqa: BLE001 — Keras raises ValueError/TypeError/OSError variously
        raise RegistryError(f"cannot load model {name!r}: {exc}") from None


def delete_model(name: str) -> None:
    info = model_info(name)
    trash = info.path.parent / f".trash-{name}-{uuid.uuid4().hex[:8]}"
    os.replace(info.path, trash)  # disappears from listings at once, even if removal is slow
    shutil.rmtree(trash, ignore_errors=True)


def rename_model(old: str, new: str) -> ModelInfo:
    model_info(old)
    check_name(new)
    target = models_dir() / new
    if target.exists():
        raise RegistryError(f"a model named {new!r} already exists; choose another name")
    os.replace(models_dir() / old, target)
    return model_info(new)


# ---------------------------------------------------------------------------
# Download and upload
# ---------------------------------------------------------------------------

MAX_UPLOAD_BYTES = 50_000_000


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
    from cnn.data import CATALOG

    for dataset in ("mnist", "fashion_mnist", "cifar10"):
        info = CATALOG[dataset]
        if tuple(info.input_shape) == tuple(shape) and len(info.class_names) == classes:
            return dataset
    return UNKNOWN


def import_model(data: bytes, filename: str, name: str | None = None, allowed_shapes=(),
                 max_bytes: int = MAX_UPLOAD_BYTES) -> ModelInfo:
    """Accept an uploaded .keras file or a .zip bundle (as `bundle_bytes` makes) into the registry.

    Refused with RegistryError — and nothing written — when the file is too large, not a Keras model,
    contains code (Lambda layers), uses layers CNN Studio cannot rebuild, or takes an input shape that no
    dataset fits (catalogue shapes plus `allowed_shapes`).
    """
    import io
    import zipfile

    from cnn.archive import ArchiveError, check_zip
    from cnn.data import CATALOG
    from cnn.errors import SpecError
    from cnn.spec import ModelSpec, TrainConfig

    if len(data) > max_bytes:
        raise RegistryError(f"{filename} is {len(data) / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB")
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise RegistryError(f"{filename} is not a Keras model: expected a .keras file or a .zip bundle")
    extras: dict = {}
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        try:
            members = {m.filename.rsplit("/", 1)[-1]: m for m in check_zip(zf, max_files=50, max_bytes=4 * max_bytes)}
        except ArchiveError as exc:
            raise RegistryError(f"{filename}: {exc}") from None
        if "config.json" in members and "model.keras" not in members:
            keras_bytes = data  # a bare .keras file
        elif "model.keras" in members:
            keras_bytes = zf.read(members["model.keras"])
            for extra in ("spec.json", "history.json", "metrics.json"):
                if extra in members:
                    try:
                        extras[extra] = json.loads(zf.read(members[extra]))
                    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
                        raise RegistryError(f"{filename}: {extra} is not valid JSON") from None
            if "calibration.json" in members:
                extras["calibration.json"] = zf.read(members["calibration.json"])  # checked once the model is built
        else:
            raise RegistryError(f"{filename} is not a Keras model: no config.json or model.keras inside")
    model = _load_upload(keras_bytes, filename)
    shape = tuple(model.inputs[0].shape[1:])
    allowed = {tuple(i.input_shape) for i in CATALOG.values()} | {tuple(s) for s in allowed_shapes}
    if shape not in allowed:
        raise RegistryError(f"{filename} takes {'×'.join(map(str, shape))} images, which no dataset here fits "
                            f"(datasets: {', '.join('×'.join(map(str, s)) for s in sorted(allowed))})")
    train = None
    if isinstance(extras.get("spec.json"), dict):
        try:
            train = ModelSpec.from_dict(extras["spec.json"]).train
        except SpecError:
            train = None
    from cnn.builder import rebuild

    try:
        ours, spec = rebuild(model, train or TrainConfig())
    except SpecError as exc:
        raise RegistryError(f"{filename}: {exc}") from None
    if isinstance(extras.get("spec.json"), dict) and extras["spec.json"].get("preset"):
        spec.preset = str(extras["spec.json"]["preset"])
    metrics = extras.get("metrics.json") if isinstance(extras.get("metrics.json"), dict) else {}
    classes = metrics.get("class_names")
    dataset = metrics.get("dataset") or _guess_dataset(shape, spec.num_classes)
    if not (isinstance(classes, list) and len(classes) == spec.num_classes):
        classes = list(CATALOG[dataset].class_names) if dataset in CATALOG else [str(i) for i in range(spec.num_classes)]
    keep = {k: metrics[k] for k in ("test_accuracy", "test_loss", "num_test", "confusion_matrix", "per_class",
                                    "epochs", "num_train", "train_seconds", "dataset_source", "created")
            if k in metrics}
    history = extras.get("history.json") if isinstance(extras.get("history.json"), dict) else {}
    base = name or filename.rsplit(".", 1)[0]
    target = check_name(name) if name else unique_name(base)
    extra_files, note = _checked_calibration(extras.get("calibration.json"), ours)
    if note:
        keep["calibration_note"] = note
    return save_model(target, ours, spec, history,
                      {**keep, "dataset": dataset, "class_names": [str(c) for c in classes], "imported_from": filename},
                      extra_files=extra_files)


def _checked_calibration(data: bytes | None, model) -> tuple[dict | None, str]:
    """A bundle's calibration.json kept only when it reads as a calibration and fits the model:
    ({'calibration.json': data} or None, a note saying why it was left out, or '')."""
    from cnn.calibration import Calibration, CalibrationError

    if data is None:
        return None, ""
    try:
        Calibration.from_json(data).check_model(model)
    except (CalibrationError, RecursionError) as exc:
        return None, f"the bundle's calibration.json was left out ({exc}); the model is uncalibrated"
    return {"calibration.json": data}, ""


def _load_upload(keras_bytes: bytes, filename: str):
    """Load .keras bytes with safe_mode=True from a private temporary file."""
    import keras

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "upload.keras"
        path.write_bytes(keras_bytes)
        try:
            return keras.saving.load_model(path, compile=False, safe_mode=True)
        except Exception as exc:  # noqa: BLE001 — Keras raises many kinds for bad files
            text = str(exc)
            if "Lambda" in text or "safe_mode" in text or "arbitrary code" in text:
                raise RegistryError(f"{filename} contains code (a Lambda layer or a custom object); CNN Studio "
                                    "only loads models made of standard layers") from None
            raise RegistryError(f"{filename} could not be loaded as a Keras model ({type(exc).__name__}: "
                                f"{text.splitlines()[0][:200] if text else 'no details'})") from None

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

from cnn.data import PROJECT_ROOT
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
        return self.metrics.get("dataset", "?")

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


def unique_name(base: str) -> str:
    """`base`, or `base-2`, `base-3`, … whichever is free."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip("-._")[:58] or "model"
    name, n = base, 1
    while (models_dir() / name).exists():
        n += 1
        name = f"{base}-{n}"
    return name


def _strip_optimizer(model):
    """A copy of `model` without optimizer state: smaller files, nothing but what prediction needs."""
    # from_config, not keras.models.clone_model: since Keras 3.15 the clone comes back compiled.
    clone = type(model).from_config(model.get_config())
    clone.set_weights(model.get_weights())
    return clone


def save_model(name: str, model, spec, history: dict, metrics: dict, overwrite: bool = False) -> ModelInfo:
    """Write the four files into a temporary folder, then rename it to models/<name> (atomic)."""
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

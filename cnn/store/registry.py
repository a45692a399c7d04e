"""The model registry: one folder per saved model under CNN_MODELS_DIR (default: models/).

    models/<name>/model.keras    weights + architecture (no optimizer state), loaded with safe_mode=True
    models/<name>/spec.json      the ModelSpec it was built from (a checkpoint stores its own config)
    models/<name>/history.json   per-epoch curves
    models/<name>/metrics.json   test accuracy/loss, confusion matrix, dataset, created, versions

Saving writes a hidden temporary folder and renames it onto a name no folder has (exclusive: of two saves of
one name exactly one gets it, the other keeps its model under a free name), so a crash never leaves a
half-written model. Listing reads only the JSON files, through the one schema of cnn.store.metadata: no
TensorFlow needed, and a damaged or hostile folder is listed as damaged, never breaks the listing.
"""
from __future__ import annotations

import contextlib
import contextvars
import errno
import json
import os
import re
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from cnn.core.errors import DatasetError, RegistryError
from cnn.data.archive import ArchiveError, check_keras_archive
from cnn.data.datasets import PROJECT_ROOT, UNKNOWN, dataset_title, is_folder
from cnn.store.metadata import Invalid, clean_history, clean_metrics, clean_spec, folder_source

MAX_UPLOAD_BYTES = 50_000_000


FILES = ("model.keras", "spec.json", "history.json", "metrics.json")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
DEFAULT_MODEL = "mnist-default"
MAX_JSON_BYTES = {"spec.json": 2_000_000, "metrics.json": 20_000_000, "history.json": 50_000_000,
                  "calibration.json": 20_000_000}


# The registry folder of the current visitor: set per script run by the app (a hosted workspace), and
# carried into a training job's thread with the job's context. Unset: CNN_MODELS_DIR, else models/.
_MODELS_DIR: contextvars.ContextVar[Path | None] = contextvars.ContextVar("cnn_models_dir", default=None)
SHIPPED_LIST = "shipped.json"  # {"models": [...]}: the models in shipped_dir() that ship with the app


def models_dir() -> Path:
    """Where models are saved: the folder set for this context (use_models_dir), else CNN_MODELS_DIR, else the
    project's models/ folder."""
    chosen = _MODELS_DIR.get()
    return chosen if chosen is not None else Path(os.environ.get("CNN_MODELS_DIR") or PROJECT_ROOT / "models").expanduser()


def use_models_dir(path) -> contextvars.Token:
    """Save to and list from `path` for the rest of this context (None: back to the default)."""
    return _MODELS_DIR.set(None if path is None else Path(path))


@contextlib.contextmanager
def using_models_dir(path):
    """`use_models_dir` for the duration of a with-block."""
    token = use_models_dir(path)
    try:
        yield
    finally:
        _MODELS_DIR.reset(token)


def shipped_dir() -> Path:
    """Where the models that ship with the app live: CNN_SHIPPED_DIR, else the project's models/ folder."""
    return Path(os.environ.get("CNN_SHIPPED_DIR") or PROJECT_ROOT / "models").expanduser()


def shipped_names() -> tuple[str, ...]:
    """The names of the shipped models (read-only everywhere): shipped_dir()/shipped.json's list."""
    try:
        names = json.loads((shipped_dir() / SHIPPED_LIST).read_text()).get("models", [])
    except (OSError, ValueError, AttributeError):
        return ()
    return tuple(n for n in names if isinstance(n, str) and NAME_RE.match(n))


def is_shipped(name: str) -> bool:
    return name in shipped_names()


def _writable(name: str) -> str:
    """`name` if a user may create, replace, rename or delete a model of that name; else RegistryError."""
    if is_shipped(name):
        raise RegistryError(f"{name!r} is a model that ships with CNN Studio: it is read-only (it cannot be "
                            "replaced, renamed or deleted); use another name")
    return name


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about a saved model without loading it. `spec` and `metrics` passed the
    schema (cnn.store.metadata): every value has the type and range it should, so the accessors are safe."""

    name: str
    path: Path
    spec: dict  # spec.json as ModelSpec.to_dict writes it; {} when it is unreadable (then usable is False)
    metrics: dict  # metrics.json, only the keys and values that fit the schema
    mtime: float  # of model.keras: a cache key that changes when the file does
    problems: tuple[str, ...] = ()  # what was wrong with its files: dropped metadata, unreadable files
    usable: bool = True  # False when spec.json is unreadable: it can be listed and deleted, not loaded

    @property
    def damaged(self) -> bool:
        """Whether any of its files had something the schema refused (see `problems`)."""
        return bool(self.problems)

    @property
    def dataset(self) -> str:
        """A catalogue name, 'folder:<label>' or 'unknown' (never a path)."""
        return self.metrics.get("dataset", UNKNOWN)

    @property
    def dataset_source(self) -> str | None:
        """Where this server read the model's class folders from; None for catalogue datasets and for
        imported models (an upload's idea of a server path is never used)."""
        if "imported_from" in self.metrics:
            return None
        return self.metrics.get("dataset_source")

    @property
    def preset(self) -> str:
        return self.spec.get("preset", "custom")

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.spec.get("input_shape", ()))

    @property
    def num_classes(self) -> int:
        return int(self.spec.get("num_classes", 0))

    @property
    def class_names(self) -> list[str]:
        return list(self.metrics.get("class_names") or [str(i) for i in range(self.num_classes)])

    @property
    def test_accuracy(self) -> float | None:
        return self.metrics.get("test_accuracy")

    @property
    def params(self) -> int:
        return self.metrics.get("params", 0)

    @property
    def epochs(self) -> int:
        return self.metrics.get("epochs", 0)

    @property
    def created(self) -> str:
        return self.metrics.get("created", "")

    @property
    def import_notes(self) -> list[str]:
        """What was dropped from the uploaded file's metadata when it was imported (for the Models page)."""
        return list(self.metrics.get("import_notes", []))

    def history(self) -> dict:
        """Per-epoch curves (and per-batch under 'batches'); {} when history.json is missing or unreadable.
        Only curves that are lists of numbers are kept."""
        raw, problem = _read_json(self.path / "history.json")
        return clean_history(raw)[0] if problem is None else {}


def check_name(name: str) -> str:
    """`name` if it is a valid model name, else RegistryError saying what is allowed."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise RegistryError(f"invalid model name {name!r}: use 1–64 letters, digits, '.', '_' or '-', "
                            "starting with a letter or digit")
    return name


def _read_json(path: Path):
    """(the parsed JSON, None) or (None, why it cannot be read). Never raises: files may be hostile."""
    limit = MAX_JSON_BYTES.get(path.name, 20_000_000)
    try:
        size = path.stat().st_size
        if size > limit:
            return None, f"{path.name} is {size / 1e6:,.1f} MB; the limit is {limit / 1e6:g} MB"
        return json.loads(path.read_bytes()), None
    except FileNotFoundError:
        return None, f"{path.name} is missing"
    except OSError as exc:
        return None, f"{path.name} cannot be read ({exc.strerror or exc})"
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, huge integers
        return None, f"{path.name} is not valid JSON ({str(exc)[:80]})"


def read_metadata(folder: Path) -> tuple[dict | None, dict, list[str]]:
    """(spec or None when unusable, metrics, problems) of a model folder, through the schema."""
    problems = []
    raw_spec, problem = _read_json(folder / "spec.json")
    spec = None
    if problem:
        problems.append(problem)
    else:
        spec, notes = clean_spec(raw_spec)
        problems += notes
    raw_metrics, problem = _read_json(folder / "metrics.json")
    metrics = {}
    if problem:
        problems.append(problem)
    else:
        metrics, notes = clean_metrics(raw_metrics)
        problems += notes
    if "imported_from" in metrics and "dataset_source" in metrics:  # kept by versions before the schema
        problems.append("metrics.json: dataset_source dropped (an uploaded model's data location is never used)")
        del metrics["dataset_source"]
    if is_folder(metrics.get("dataset")) and "dataset_source" in metrics:
        try:
            folder_source(metrics["dataset_source"])
        except Invalid as exc:
            problems.append(f"metrics.json: dataset_source dropped ({exc})")
            del metrics["dataset_source"]
    if spec is not None and "class_names" in metrics and len(metrics["class_names"]) != spec["num_classes"]:
        problems.append(f"metrics.json: class_names dropped ({len(metrics['class_names'])} names for a model with "
                        f"{spec['num_classes']} classes)")
        del metrics["class_names"]
        for key in ("confusion_matrix", "per_class"):
            if key in metrics and len(metrics[key]) != spec["num_classes"]:
                metrics.pop(key)
    return spec, metrics, problems


def model_info(name: str) -> ModelInfo:
    """What the registry knows about `name`. RegistryError when there is no such model (or no model.keras in
    its folder); damaged metadata never raises: it is in `problems`, and `usable` says whether it loads."""
    folder = models_dir() / check_name(name)
    if not folder.is_dir() and is_shipped(name):  # shown to every workspace, from where it ships
        folder = shipped_dir() / name
    if not folder.is_dir():
        known = ", ".join(i.name for i in list_models()) or "none yet"
        raise RegistryError(f"no saved model named {name!r} in {models_dir()} (saved models: {known})")
    try:
        mtime = (folder / "model.keras").stat().st_mtime
    except OSError:
        missing = [f for f in FILES if not (folder / f).is_file()]
        raise RegistryError(f"model {name!r} is incomplete: missing {', '.join(missing)}") from None
    spec, metrics, problems = read_metadata(folder)
    return ModelInfo(name, folder, spec or {}, metrics, mtime, tuple(problems), spec is not None)


def list_models() -> list[ModelInfo]:
    """Every saved model (a folder with a model.keras), newest first; damaged ones are listed with their
    `problems` (sorted last: no date) and hidden temporary folders are skipped. Never raises for what is in
    a folder."""
    root = models_dir()
    infos = []
    try:
        folders = list(root.iterdir()) if root.is_dir() else []
    except OSError:
        folders = []
    here = {f.name for f in folders}
    folders += [shipped_dir() / n for n in shipped_names() if n not in here]  # the shipped ones, wherever saved
    for folder in folders:
        if NAME_RE.match(folder.name) and folder.is_dir() and (folder / "model.keras").is_file():
            try:
                infos.append(model_info(folder.name))
            except (RegistryError, OSError):
                continue  # removed or renamed meanwhile
    return sorted(infos, key=lambda i: (i.created, i.name), reverse=True)


def dataset_split(info: ModelInfo) -> dict:
    """load_dataset's options that give the held-out images `info` was tested on: class folders were split by
    class from Dec 2026 ("split" in metrics.json), a seeded shuffle before."""
    return {"split": info.metrics.get("split", "shuffled")} if is_folder(info.dataset) else {}


def dataset_to_load(info: ModelInfo) -> str:
    """What to pass to cnn.data.datasets.load_dataset for the images `info` was trained on: a catalogue name, or the
    class folders this server read. DatasetError (for the page to show) when they are not available here."""
    if is_folder(info.dataset):
        if info.dataset_source:
            return info.dataset_source
        why = "a model imported from a file never brings its images" if "imported_from" in info.metrics else \
            "its metadata does not say where they were"
        raise DatasetError(f"model {info.name!r} was trained on {dataset_title(info.dataset)}, which are not "
                           f"available here ({why}); choose a dataset with the same image size instead")
    if info.dataset == "unknown":
        raise DatasetError(f"model {info.name!r} does not say which dataset it was trained on; choose one")
    return info.dataset


def unique_name(base: str, reserved=()) -> str:
    """`base`, or `base-2`, `base-3`, … whichever is free (and not in `reserved`, e.g. a running job's name)."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip("-._")[:58] or "model"
    name, n = base, 1
    while (models_dir() / name).exists() or name in reserved or is_shipped(name):
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
               extra_files: dict[str, bytes] | None = None, if_taken: str = "error") -> ModelInfo:
    """Write the four files (and any `extra_files`, named in EXTRA_FILES) into a temporary folder, then
    rename it onto models/<name> — atomic and exclusive: the rename never replaces a model.

    A name taken before saving starts is refused (RegistryError) with `if_taken="error"`, or saved under the
    next free name with `if_taken="rename"`; `overwrite=True` replaces it. A name another save takes while
    this one writes is never replaced: this model is kept under the next free name. Either way the returned
    ModelInfo's `name` says where the model is — compare it with `name` to tell the user.
    """
    import keras
    import tensorflow as tf

    check_name(name)
    if if_taken not in ("error", "rename"):
        raise ValueError(f"if_taken must be 'error' or 'rename', not {if_taken!r}")
    if is_shipped(name):  # never replaced: refused, or (a training that must not be lost) saved beside it
        name = _writable(name) if if_taken == "error" or overwrite else unique_name(name)
    root = models_dir()
    root.mkdir(parents=True, exist_ok=True)
    if (root / name).exists() and not overwrite and if_taken == "error":
        raise RegistryError(f"a model named {name!r} already exists; choose another name or delete it first")
    metrics = {
        **metrics,
        "created": metrics.get("created") or datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "keras_version": keras.__version__,
        "tensorflow_version": tf.__version__,
        "params": int(model.count_params()),
    }
    # The pid in the name lets start-up clean-up (cnn.store.housekeeping) tell an orphan from a save in progress.
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-{os.getpid()}-", dir=root))
    try:
        _strip_optimizer(model).save(tmp / "model.keras")
        (tmp / "spec.json").write_text(spec.to_json() if hasattr(spec, "to_json") else json.dumps(spec, indent=2))
        (tmp / "history.json").write_text(json.dumps(history))
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2))
        for file, data in (extra_files or {}).items():
            if file not in EXTRA_FILES:
                raise RegistryError(f"unexpected model file {file!r} (allowed: {', '.join(EXTRA_FILES)})")
            (tmp / file).write_bytes(data)
        saved = _move_into_place(tmp, name, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return model_info(saved)


def _rename_exclusive(source: Path, target: Path) -> bool:
    """Rename the folder `source` to `target` unless `target` exists (then False). On POSIX, rename onto an
    existing non-empty folder fails (ENOTEMPTY/EEXIST) instead of replacing it, and every saved model folder
    holds files: of two renames onto one new name exactly one succeeds."""
    try:
        os.rename(source, target)
    except OSError as exc:
        if exc.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
            return False
        raise
    return True


def _move_into_place(tmp: Path, name: str, overwrite: bool) -> str:
    """Rename the finished temporary folder onto `name` (first moving the model there aside if `overwrite`),
    or onto the next free name if another save holds it. The name it got."""
    root = models_dir()
    trash = None
    if overwrite and (root / name).exists():
        trash = root / f".trash-{name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            os.rename(root / name, trash)  # the old model disappears from listings at once
        except FileNotFoundError:
            trash = None  # deleted meanwhile
    try:
        candidate = name
        for _ in range(1000):
            if _rename_exclusive(tmp, root / candidate):
                return candidate
            candidate = unique_name(name)  # another save took it: the next free name
        raise RegistryError(f"could not find a free name for {name!r} after 1,000 tries")
    finally:
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)


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


def load_model(name):
    """The saved keras.Model `name` (or of a ModelInfo), loaded with safe_mode=True (no arbitrary code, e.g.
    Lambda layers), after its metadata and its model.keras (sizes, zip bombs) are checked: a tampered folder
    gets a RegistryError."""
    import keras

    info = name if isinstance(name, ModelInfo) else model_info(name)
    name = info.name
    if not info.usable:
        raise RegistryError(f"cannot load model {name!r}: it is damaged ({info.problems[0]}); delete it, or train "
                            "or upload it again")
    path = info.path / "model.keras"
    try:
        size = path.stat().st_size
        if size > MAX_UPLOAD_BYTES * 3:
            raise RegistryError(f"cannot load model {name!r}: model.keras is {size / 1e6:,.0f} MB, far larger than "
                                "any model CNN Studio saves")
        check_keras_archive(path.read_bytes())
    except ArchiveError as exc:
        raise RegistryError(f"cannot load model {name!r}: {exc}") from None
    except OSError as exc:
        raise RegistryError(f"cannot load model {name!r}: cannot read model.keras ({exc.strerror or exc})") from None
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # noqa: BLE001 — Keras raises ValueError/TypeError/OSError variously
        raise RegistryError(f"cannot load model {name!r}: {keras_reason(exc)}") from None


def delete_model(name: str) -> None:
    """Remove a model (damaged ones too; never a shipped one)."""
    info = model_info(_writable(name))
    trash = info.path.parent / f".trash-{name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        os.rename(info.path, trash)  # disappears from listings at once, even if removal is slow
    except FileNotFoundError:
        raise RegistryError(f"model {name!r} was deleted meanwhile") from None
    shutil.rmtree(trash, ignore_errors=True)


def rename_model(old: str, new: str) -> ModelInfo:
    model_info(_writable(old))
    _writable(check_name(new))
    target = models_dir() / new
    if target.exists() or not _rename_exclusive(models_dir() / old, target):
        raise RegistryError(f"a model named {new!r} already exists; choose another name")
    return model_info(new)


def keras_reason(exc: Exception) -> str:
    """Why Keras could not load a file, in one line that names the part at fault (a custom class's name
    comes last in Keras's long message, so it is looked for, not cut off)."""
    text = str(exc)
    custom = re.search(r"Could not locate (class|function) '([^']{1,100})'", text)
    if custom:
        return (f"it uses a custom {custom.group(1)} {custom.group(2)!r} that is not part of Keras; CNN Studio "
                "only loads models made of standard Keras layers")
    if "Lambda" in text or "safe_mode" in text or "arbitrary code" in text:
        return ("it contains code (a Lambda layer or a custom object); CNN Studio only loads models made of "
                "standard layers")
    if re.search(r"truncated|unable to (open|read|synchronously)|bad ?zip|CRC|EOF|signature", text, re.IGNORECASE):
        return f"the file is truncated or damaged ({type(exc).__name__}) — download or save it again"
    first = next((line for line in text.splitlines() if line.strip()), "no details")
    return f"{type(exc).__name__}: {first[:300]}"

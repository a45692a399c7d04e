"""The one schema for a saved model's metadata (metrics.json, spec.json, history.json): types, ranges, known keys.

Every model folder is read through it — the ones this server wrote, older ones, tampered ones, and bundles
uploaded by anyone — so the rest of CNN Studio can trust `ModelInfo.metrics` to hold what the schema says
(a float accuracy, an int epoch count, a readable date...). A value that fails is dropped and a note says
which and why; nothing here raises for bad metadata. A dataset named in metadata is a catalogue name,
'folder:<label>' or 'unknown' — never a path. Only numpy-free Python here: listing needs no TensorFlow.
"""
from __future__ import annotations

import math
import re
from datetime import datetime

from cnn.core.errors import SpecError
from cnn.data.datasets import CATALOG, FOLDER
from cnn.model.spec import ModelSpec, validate

MAX_CLASSES = 1000  # as validate() allows
MAX_NOTES = 50  # import notes kept with a model


class Invalid(ValueError):
    """A metadata value that does not fit the schema; the message says why, for people."""


# ---------------------------------------------------------------------------
# Value checks: each returns the clean value or raises Invalid with the reason
# ---------------------------------------------------------------------------

def _show(value, limit: int = 40) -> str:
    """A short repr for notes (hostile values can be huge)."""
    if isinstance(value, (dict, list)):
        return f"a {'list' if isinstance(value, list) else 'JSON object'} of {len(value)}"
    text = repr(value) if not (isinstance(value, int) and abs(value) > 10 ** 30) else "a huge number"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _number(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Invalid(f"{_show(value)} is not a number")
    try:
        number = float(value)
    except OverflowError:
        raise Invalid("the number is far too large") from None
    if not math.isfinite(number):
        raise Invalid(f"{number} is not a finite number")
    return number


def real(value) -> float:
    """Any finite number (a score that may be negative)."""
    return _number(value)


def flag(value) -> bool:
    """true or false."""
    if not isinstance(value, bool):
        raise Invalid(f"{_show(value)} is not true or false")
    return value


def share(value) -> float:
    """A fraction 0…1 (accuracy, precision)."""
    number = _number(value)
    if not 0 <= number <= 1:
        raise Invalid(f"{number} is outside 0…1")
    return number


def amount(limit: float):
    """A finite number 0…limit (seconds, a loss)."""
    def check(value) -> float:
        number = _number(value)
        if not 0 <= number <= limit:
            raise Invalid(f"{number} is outside 0…{limit:g}")
        return number
    return check


def count(limit: int):
    """A whole number 0…limit (images, epochs, parameters); 3.0 counts as 3."""
    def check(value) -> int:
        number = _number(value)
        if not number.is_integer() or not 0 <= number <= limit:
            raise Invalid(f"{_show(value)} is not a whole number 0…{limit:,}")
        return int(number)
    return check


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def text(limit: int):
    """A one-line string of at most `limit` characters."""
    def check(value) -> str:
        if not isinstance(value, str):
            raise Invalid(f"{_show(value)} is not text")
        if len(value) > limit or _CONTROL.search(value):
            raise Invalid(f"text longer than {limit} characters or with control characters")
        return value
    return check


def choice(options: tuple[str, ...]):
    def check(value) -> str:
        if not isinstance(value, str) or value not in options:
            raise Invalid(f"{_show(value)} is not one of {', '.join(options)}")
        return value
    return check


def timestamp(value) -> str:
    """An ISO 8601 date and time, as save_model writes it."""
    text(40)(value)
    try:
        datetime.fromisoformat(value)
    except ValueError:
        raise Invalid(f"{_show(value)} is not an ISO 8601 date and time") from None
    return value


def class_names(value) -> list[str]:
    if not isinstance(value, list) or not 2 <= len(value) <= MAX_CLASSES:
        raise Invalid(f"{_show(value)} is not a list of 2…{MAX_CLASSES} class names")
    return [text(100)(name) for name in value]


def matrix(value) -> list[list[int]]:
    """A square confusion matrix of counts."""
    if not isinstance(value, list) or not 2 <= len(value) <= MAX_CLASSES:
        raise Invalid(f"{_show(value)} is not a square matrix of counts")
    size, check = len(value), count(10 ** 12)
    if any(not isinstance(row, list) or len(row) != size for row in value):
        raise Invalid(f"not a square {size}×{size} matrix")
    return [[check(v) for v in row] for row in value]


def per_class(value) -> list[dict]:
    if not isinstance(value, list) or len(value) > MAX_CLASSES:
        raise Invalid(f"{_show(value)} is not a list of per-class rows")
    rows = []
    for row in value:
        if not isinstance(row, dict) or set(row) != {"class", "precision", "recall", "f1", "support"}:
            raise Invalid("a row is not {class, precision, recall, f1, support}")
        rows.append({"class": text(100)(row["class"]), "precision": share(row["precision"]),
                     "recall": share(row["recall"]), "f1": share(row["f1"]), "support": count(10 ** 12)(row["support"])})
    return rows


def notes(value) -> list[str]:
    if not isinstance(value, list) or len(value) > MAX_NOTES:
        raise Invalid(f"{_show(value)} is not a list of notes")
    return [text(400)(note) for note in value]


FOLDER_LABEL = re.compile(r"^[^/\\\x00-\x1f\x7f]{1,80}$")  # a label, never a path


def dataset_name(value) -> str:
    """A catalogue name, 'unknown', or 'folder:<label>' (a label of class folders, not a path)."""
    if isinstance(value, str) and (value in CATALOG or value == "unknown"):
        return value
    if isinstance(value, str) and value.startswith(FOLDER) and FOLDER_LABEL.match(value[len(FOLDER):]) \
            and value[len(FOLDER):] not in (".", ".."):
        return value
    raise Invalid(f"{_show(value)} is not a dataset name (a catalogue name or 'folder:<label>', never a path)")


def folder_source(value) -> str:
    """Where this server read a model's class folders: an absolute path, no '..', at least two folders deep
    (so never '/', '/etc' or '/home'), to a folder or a .zip. Anything else is not trusted."""
    from pathlib import PurePosixPath

    text(4096)(value)
    path = PurePosixPath(value)
    if not path.is_absolute() or ".." in path.parts or len(path.parts) < 3:
        raise Invalid(f"{_show(value)} is not a class-folder location this server would have read")
    return value


# ---------------------------------------------------------------------------
# The schemas
# ---------------------------------------------------------------------------

# metrics.json: every key a model folder may hold, and its check.
METRICS = {
    "test_accuracy": share,
    "test_loss": amount(1e9),
    "num_test": count(10 ** 9),
    "num_train": count(10 ** 9),
    "class_names": class_names,
    "confusion_matrix": matrix,
    "per_class": per_class,
    "eval_seconds": amount(1e9),
    "epochs": count(100_000),
    "train_seconds": amount(1e9),
    "status": choice(("completed", "stopped", "failed")),
    "created": timestamp,
    "keras_version": text(40),
    "tensorflow_version": text(40),
    "params": count(10 ** 10),
    "dataset": dataset_name,
    "dataset_source": text(4096),  # where the images were on this server; never taken from an upload
    "split": choice(("by-class", "shuffled")),  # how a folder's held-out images were chosen (absent: shuffled)
    "imported_from": text(200),  # the uploaded file's name (sanitised)
    "import_notes": notes,  # what import_model dropped, for the Models page
    # Calibration (cnn.analysis.calibration): the numbers Evaluation.summary() adds, and why a model has none.
    "calibrated": flag,
    "temperature": amount(1e6),
    "test_loss_raw": amount(1e9),
    "ece_before": share,
    "ece_after": share,
    "ood_threshold": real,
    "ood_flagged_share": share,
    "calibration_note": text(600),
}

# The metrics an upload may bring (everything else is recomputed or set by import_model).
IMPORTED_METRICS = ("test_accuracy", "test_loss", "num_test", "num_train", "class_names", "confusion_matrix",
                    "per_class", "eval_seconds", "epochs", "train_seconds", "status", "created", "dataset")

HISTORY_KEY = re.compile(r"^[A-Za-z0-9_]{1,40}$")
MAX_HISTORY = 200_000  # points per curve (batch-level curves of long runs)


def clean_metrics(raw, imported: bool = False) -> tuple[dict, list[str]]:
    """(the metrics that fit the schema, a note for each that did not). `imported`: the metrics came in an
    uploaded bundle, so only IMPORTED_METRICS are taken and `dataset` must be a catalogue name."""
    if not isinstance(raw, dict):
        return {}, [f"metrics.json is {_show(raw)}, not a JSON object: all its metrics were dropped"]
    allowed = IMPORTED_METRICS if imported else tuple(METRICS)
    clean, dropped = {}, []
    for key, value in raw.items():
        name = key if isinstance(key, str) and len(key) <= 40 else _show(key)
        if key not in allowed:
            why = "an uploaded model's data location is never used" if key == "dataset_source" else \
                "set by this server" if key in METRICS else "not a known metric"
            dropped.append(f"metrics.json: {name} dropped ({why})")
            continue
        try:
            clean[key] = METRICS[key](value)
        except Invalid as exc:
            dropped.append(f"metrics.json: {name} dropped ({exc})")
    if imported and clean.get("dataset") not in (*CATALOG, None):
        dropped.append(f"metrics.json: dataset {_show(clean.pop('dataset'))} dropped (the images of an uploaded "
                       "model's class folders are not on this server)")
    # Cross-checks: per-class tables must agree with the class names.
    k = len(clean.get("class_names", ()))
    for key in ("confusion_matrix", "per_class"):
        if key in clean and k and len(clean[key]) != k:
            dropped.append(f"metrics.json: {key} dropped (it has {len(clean[key])} rows for {k} classes)")
            del clean[key]
    return clean, dropped


def clean_history(raw) -> tuple[dict, list[str]]:
    """(per-epoch and per-batch curves that are lists of numbers, a note for each dropped one)."""
    if not isinstance(raw, dict):
        return {}, [f"history.json is {_show(raw)}, not a JSON object: the training curves were dropped"]
    clean, dropped = {}, []

    def curve(key, value, where):
        ok = isinstance(value, list) and len(value) <= MAX_HISTORY and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and (not isinstance(v, int) or abs(v) < 2 ** 63)
            for v in value)
        if not ok:
            dropped.append(f"history.json: {where} dropped (not a list of at most {MAX_HISTORY:,} numbers)")
        return ok

    for key, value in raw.items():
        if not isinstance(key, str) or not HISTORY_KEY.match(key):
            dropped.append(f"history.json: key {_show(key)} dropped (not a curve name)")
        elif key == "batches":
            if not isinstance(value, dict):
                dropped.append("history.json: batches dropped (not a JSON object)")
                continue
            clean["batches"] = {k: [float(x) for x in v] for k, v in value.items()
                                if isinstance(k, str) and HISTORY_KEY.match(k) and curve(k, v, f"batches.{k}")}
        elif curve(key, value, key):
            clean[key] = [float(x) if isinstance(x, float) else x for x in value]
    return clean, dropped


def clean_spec(raw) -> tuple[dict | None, list[str]]:
    """(the spec as ModelSpec.to_dict writes it, []) when spec.json is a valid, buildable spec; else
    (None, [why])."""
    try:
        spec = ModelSpec.from_dict(raw)
        validate(spec)
    except SpecError as exc:
        return None, [f"spec.json is not a valid spec: {exc}"]
    return spec.to_dict(), []

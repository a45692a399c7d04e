"""Values read back from calibration.json, each checked (a wrong one raises CalibrationError)."""
from __future__ import annotations

import math

import numpy as np

from cnn.core.errors import CalibrationError

# ---------------------------------------------------------------------------
# JSON helpers: every value from a file is checked
# ---------------------------------------------------------------------------

def rounded(array) -> list:
    """Float32 precision is plenty and keeps the file small."""
    return np.asarray(array, dtype=np.float32).astype(float).round(8).tolist()


def finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def checked_field(data: dict, key: str, kind):
    if not isinstance(data, dict) or key not in data:
        raise CalibrationError(f"missing {key!r}")
    value = data[key]
    if kind is float:
        if not finite(value):
            raise CalibrationError(f"{key!r} must be a finite number, got {value!r}")
        return float(value)
    if not isinstance(value, kind):
        raise CalibrationError(f"{key!r} must be a {kind.__name__}, got {type(value).__name__}")
    return value


def checked_matrix(rows, what: str) -> np.ndarray:
    """A non-empty 2-D array of finite numbers from nested lists."""
    try:
        array = np.array(rows, dtype=np.float64)
    except (ValueError, TypeError):
        raise CalibrationError(f"{what} must be a rectangular table of numbers") from None
    if array.ndim != 2 or array.size == 0 or not np.isfinite(array).all():
        raise CalibrationError(f"{what} must be a non-empty rectangular table of finite numbers")
    if array.shape[1] > 4096:
        raise CalibrationError(f"{what} has {array.shape[1]} columns; at most 4096 are allowed")
    return array

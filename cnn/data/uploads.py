"""Uploads and the cache: content-addressed, capped, least recently used first out.
"""
from __future__ import annotations

import hashlib
import math
import os
import re
import uuid
from pathlib import Path

from cnn.core.errors import DatasetError
from cnn.core.text import limit_text, megabytes, safe_label
from cnn.data.archive import ArchiveError, check_zip

# ---------------------------------------------------------------------------
# Uploads and the cache: content-addressed, capped, least recently used first out
# ---------------------------------------------------------------------------

MAX_UPLOAD_ZIP_BYTES = 100_000_000  # a class-folder .zip a person may upload
DEFAULT_CACHE_MB = 2_000  # CNN_CACHE_MB: the most the upload/extraction cache may hold
CACHE_GRACE_SECONDS = 600  # entries used this recently are never evicted (a page or a training may read them)


def cache_dir() -> Path:
    """CNN_CACHE_DIR, else ~/.cache/cnn-studio: uploaded .zips (uploads/) and their extractions (datasets/)."""
    return Path(os.environ.get("CNN_CACHE_DIR") or Path.home() / ".cache" / "cnn-studio").expanduser()


def cache_limit() -> int:
    """The cache's size cap in bytes: CNN_CACHE_MB (default 2,000 MB)."""
    value = os.environ.get("CNN_CACHE_MB", "")
    try:
        mb = float(value) if value else DEFAULT_CACHE_MB
    except ValueError:
        mb = math.nan
    if not math.isfinite(mb) or mb <= 0:
        raise DatasetError(f"CNN_CACHE_MB must be a positive number of megabytes, got {value!r}")
    return int(mb * 1e6)


def store_upload(data: bytes, filename: str) -> tuple[Path, str]:
    """Keep an uploaded class-folder .zip in the cache: (its path, a label for people).

    The path is made of the content's hash alone (`uploads/<sha256>.zip`): the client's file name never
    becomes part of a path. The label, `filename` sanitised, is kept beside it (`<sha256>.json`) and is what
    load_dataset names the dataset. The zip's directory is checked first (ArchiveError: traversal, bombs,
    too many or too large entries), and the cache is trimmed to its cap (DatasetError if it cannot make room).
    """
    import io
    import json
    import zipfile

    label = safe_label(filename, 40, strict=True)
    if len(data) > MAX_UPLOAD_ZIP_BYTES:
        raise DatasetError(f"{label}.zip is {limit_text(len(data), MAX_UPLOAD_ZIP_BYTES)}")
    if not bytes(data[:4]) == b"PK\x03\x04":
        raise DatasetError(f"{label} is not a .zip file; upload a .zip with one sub-folder of images per class")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            check_zip(archive)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise ArchiveError(f"{label}.zip is truncated or damaged: its zip directory is missing or broken") from None
    digest = hashlib.sha256(data).hexdigest()[:32]
    folder = cache_dir() / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    path, sidecar = folder / f"{digest}.zip", folder / f"{digest}.json"
    writes = [(sidecar, json.dumps({"label": label, "bytes": len(data)}).encode())]
    if path.is_file():
        touch(path)  # the same content again: only its label may change
    else:
        make_room(len(data), keep=(path,))
        writes.insert(0, (path, bytes(data)))
    for target, payload in writes:
        tmp = folder / f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.write_bytes(payload)
        os.replace(tmp, target)  # atomic: a reader never sees half a file
    return path, label


def upload_label(path) -> str | None:
    """The label store_upload kept for a cached upload, or None for any other path."""
    import json

    path = Path(path)
    sidecar = path.with_suffix(".json")
    if path.parent != cache_dir() / "uploads" or not sidecar.is_file():
        return None
    try:
        label = json.loads(sidecar.read_text()).get("label")
    except (OSError, ValueError, AttributeError):
        return None
    return safe_label(label, 40, strict=True) if isinstance(label, str) else None


def discard_upload(path) -> None:
    """Remove a cached upload (and its label) that turned out unusable; nothing outside the cache."""
    path = Path(path)
    if path.parent == cache_dir() / "uploads":
        path.unlink(missing_ok=True)
        path.with_suffix(".json").unlink(missing_ok=True)


def _size(path: Path) -> int:
    """Bytes on disk under `path` (a file or a folder)."""
    if path.is_file():
        return path.stat().st_size
    total = 0
    for base, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(base, name)).st_size
            except OSError:
                pass
    return total


def cache_entries() -> list[tuple[float, int, Path]]:
    """(last use, bytes, path) of every cached upload and extraction, least recently used first."""
    entries = []
    for sub, pattern in (("uploads", "*.zip"), ("datasets", "*")):
        folder = cache_dir() / sub
        if not folder.is_dir():
            continue
        for path in folder.glob(pattern):
            if path.name.startswith("."):
                continue  # temporaries: start-up clean-up's business
            try:
                entries.append((path.stat().st_mtime, _size(path), path))
            except OSError:
                continue
    return sorted(entries)


def touch(path: Path) -> None:
    """Mark a cache entry as just used (the cache evicts the least recently used first)."""
    try:
        os.utime(path)
    except OSError:
        pass


def make_room(needed: int, keep=()) -> list[Path]:
    """Evict least-recently-used cache entries (not `keep`, not used in the last CACHE_GRACE_SECONDS) until
    `needed` more bytes fit under the cap; the paths removed. DatasetError when they cannot be made to fit."""
    import shutil
    import time

    limit, keep = cache_limit(), {Path(k) for k in keep}
    entries = cache_entries()
    total = sum(size for _, size, _ in entries)
    removed = []
    for used, size, path in entries:
        if total + needed <= limit:
            break
        if path in keep or time.time() - used < CACHE_GRACE_SECONDS:
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            discard_upload(path) if path.suffix == ".zip" else path.unlink(missing_ok=True)
        total -= size
        removed.append(path)
    if total + needed > limit:
        raise DatasetError(f"the server's upload cache is full: {megabytes(total)} in use by datasets opened in "
                           f"the last {CACHE_GRACE_SECONDS // 60} minutes, this needs {megabytes(needed)} more, and "
                           f"the cap (CNN_CACHE_MB) is {limit / 1e6:,g} MB; try again in a few minutes")
    return removed


def trim_cache() -> list[Path]:
    """Evict least-recently-used entries until the cache is under its cap (at start-up and after use)."""
    try:
        return make_room(0)
    except DatasetError:
        return []  # what is left is in use; the next upload will say so

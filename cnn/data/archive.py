"""Safe .zip extraction for user uploads (class-folder datasets, saved-model bundles), and the check of a
.keras file (itself a zip) before Keras reads it.

Refuses path traversal, absolute paths, links, too many files, too many bytes and zip bombs (one entry or
many together, and one level down: the model.keras inside a bundle); everything is decided from the zip's
directory before a byte is unpacked. Extracts into a temporary folder and renames it into place, so a
refused archive leaves nothing behind.
"""
from __future__ import annotations

import os
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from cnn.core.errors import CnnError
from cnn.core.text import limit_text

MAX_FILES = 20_000
MAX_BYTES = 300_000_000  # uncompressed total
MAX_RATIO = 200  # uncompressed/compressed per member and overall; text compresses ~10×, bombs ~1000×
RATIO_FLOOR = 10_000_000  # below this many unpacked bytes the overall ratio is not checked (tiny zips)

# A .keras file (a zip): config.json and metadata.json are JSON Keras reads whole into memory; the weights
# of the largest model CNN Studio allows (20 M float32 parameters) are 80 MB.
KERAS_MAX_FILES = 16
KERAS_MAX_JSON = 16_000_000  # each .json entry (a 100-layer config is ~100 kB)
KERAS_MAX_BYTES = 120_000_000  # all entries together


class ArchiveError(CnnError):
    """A .zip that is unreadable or unsafe to extract."""


def check_zip(archive: zipfile.ZipFile, max_files: int = MAX_FILES, max_bytes: int = MAX_BYTES,
              max_ratio: float = MAX_RATIO) -> list[zipfile.ZipInfo]:
    """The members to extract (files only), or ArchiveError naming the first unsafe one."""
    members = [m for m in archive.infolist() if not m.is_dir()]
    if len(members) > max_files:
        raise ArchiveError(f"the zip holds {len(members):,} files; the limit is {max_files:,}")
    total = sum(m.file_size for m in members)
    if total > max_bytes:
        raise ArchiveError(f"the zip unpacks to {limit_text(total, max_bytes)}")
    packed = sum(m.compress_size for m in members)
    if total > RATIO_FLOOR and total > max_ratio * max(packed, 1):
        # Many entries that each stay under the per-entry check can still fill a disk together.
        raise ArchiveError(f"the zip's {len(members):,} entries unpack to {total / 1e6:,.0f} MB from "
                           f"{packed / 1e6:,.2f} MB ({total / max(packed, 1):,.0f}×; the limit is {max_ratio}×): "
                           "a zip bomb? Refusing it")
    for m in members:
        path = PurePosixPath(m.filename.replace("\\", "/"))
        if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
            raise ArchiveError(f"the zip entry {m.filename!r} points outside the archive folder; refusing it")
        if stat.S_ISLNK(m.external_attr >> 16):
            raise ArchiveError(f"the zip entry {m.filename!r} is a symbolic link; links are not allowed")
        if m.file_size > 1_000_000 and m.file_size > max_ratio * max(m.compress_size, 1):
            raise ArchiveError(f"the zip entry {m.filename!r} expands {m.file_size / max(m.compress_size, 1):,.0f}× "
                               "(a zip bomb?); refusing it")
    return members


def extract_zip(source, dest: Path, **limits) -> Path:
    """Extract `source` (path or file-like) into `dest` atomically; return `dest`."""
    dest = Path(dest)
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ArchiveError(f"not a readable .zip file ({exc})") from None
    with archive:
        members = check_zip(archive, **limits)
        budget = sum(m.file_size for m in members)
        dest.parent.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(dest.parent).free
        if budget + 100_000_000 > free:  # keep 100 MB free for everything else
            raise ArchiveError(f"the zip unpacks to {budget / 1e6:,.0f} MB but only {free / 1e6:,.0f} MB of disk "
                               "space is free here; try again later")
        # The pid in the name lets start-up clean-up (cnn.store.housekeeping) tell orphans from live extractions.
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{dest.name}-{os.getpid()}-", dir=dest.parent))
        try:
            written = 0
            for m in members:
                target = tmp.joinpath(*PurePosixPath(m.filename.replace("\\", "/")).parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(m) as src, open(target, "wb") as out:
                    # Count real bytes: a forged header can understate the size.
                    while chunk := src.read(1 << 20):
                        written += len(chunk)
                        if written > budget:
                            raise ArchiveError("the zip's entries are larger than its header says; refusing it")
                        out.write(chunk)
            if dest.exists():
                shutil.rmtree(dest)
            os.replace(tmp, dest)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise ArchiveError(f"the zip is damaged ({exc})") from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return dest


def check_keras_archive(data: bytes, max_files: int = KERAS_MAX_FILES, max_json: int = KERAS_MAX_JSON,
                        max_bytes: int = KERAS_MAX_BYTES) -> None:
    """Check the bytes of a .keras file (a zip) before Keras reads it: a readable zip whose entries are few,
    small enough (each .json at most `max_json` bytes unpacked: Keras reads them whole) and not bombs.
    ArchiveError says what is wrong; only the zip's directory is read."""
    import io

    if not data.startswith(b"PK\x03\x04"):
        raise ArchiveError("it is not a Keras model (a .keras file is a zip; this one does not start like one)")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise ArchiveError("the .keras file is truncated or damaged (it starts like one but its zip directory "
                           "is missing or broken) — download or save it again") from None
    with archive:
        for m in archive.infolist():  # the JSON Keras reads whole first: name the culprit
            if m.filename.lower().endswith(".json") and m.file_size > max_json:
                raise ArchiveError(f"its {m.filename[:60]} unpacks to {limit_text(m.file_size, max_json)} — not a "
                                   "model file CNN Studio or Keras wrote (a zip bomb?); refusing it")
        members = check_zip(archive, max_files=max_files, max_bytes=max_bytes)
        if "config.json" not in {m.filename for m in members}:
            raise ArchiveError("it is not a Keras model: no config.json inside")

"""Safe .zip extraction for user uploads (class-folder datasets, saved-model bundles).

Refuses path traversal, absolute paths, links, too many files, too many bytes and zip bombs; extracts
into a temporary folder and renames it into place, so a refused archive leaves nothing behind.
"""
from __future__ import annotations

import os
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from cnn.errors import CnnError

MAX_FILES = 20_000
MAX_BYTES = 300_000_000  # uncompressed total
MAX_RATIO = 200  # uncompressed/compressed per member; text compresses ~10×, bombs ~1000×


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
        raise ArchiveError(f"the zip unpacks to {total / 1e6:,.0f} MB; the limit is {max_bytes / 1e6:,.0f} MB")
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
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
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

"""Start-up clean-up: temporaries that a crashed or killed process left behind, and the cache's size cap.

Saves (cnn.store.registry) and extractions (cnn.data.archive, cnn.data.datasets) write into hidden `.tmp-<name>-<pid>-<random>`
folders and rename them into place; deletes and overwrites rename the old folder to `.trash-<name>-<pid>-…`
first. A `kill -9` in between leaves one behind. `clean_up_at_start()` — which the app and the CLI call once
when they start — removes those whose process is gone, or that are older than `max_age` seconds (a pid can
be reused, and older versions wrote no pid), so a save running in another process right now is left alone.
"""
from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

from cnn.data.uploads import cache_dir, trim_cache
from cnn.store.registry import models_dir

ORPHAN_AGE = 300  # seconds: a temporary this old is an orphan whatever its pid says (a save takes seconds)
_TEMPORARY = re.compile(r"^\.(tmp|trash)-")
_PID = re.compile(r"-(\d+)-[A-Za-z0-9_]+$")  # '.tmp-<name>-<pid>-<random>': the pid before the random tail


def _alive(pid: int) -> bool:
    """Whether a process with this pid exists on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, belongs to someone else
    return True


def is_orphan(path: Path, max_age: float = ORPHAN_AGE, now: float | None = None) -> bool:
    """Whether a temporary folder/file was left by a process that is gone (or is older than `max_age`)."""
    if not _TEMPORARY.match(path.name):
        return False
    try:
        age = (now or time.time()) - path.lstat().st_mtime
    except FileNotFoundError:
        return False
    if age > max_age:
        return True
    found = _PID.search(path.name)
    return found is not None and int(found.group(1)) != os.getpid() and not _alive(int(found.group(1)))


def remove_orphans(folder: Path, max_age: float = ORPHAN_AGE) -> list[Path]:
    """Remove the orphaned temporaries directly inside `folder`; the paths removed."""
    removed = []
    try:
        candidates = list(folder.iterdir())
    except OSError:
        return removed
    for path in candidates:
        if is_orphan(path, max_age):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def clean_up_at_start(max_age: float = ORPHAN_AGE) -> list[Path]:
    """Call once when the app or the CLI starts: remove orphaned temporaries in the registry and the cache,
    then trim the cache to CNN_CACHE_MB. The paths removed (for a log line)."""
    removed = remove_orphans(models_dir(), max_age)
    for sub in ("uploads", "datasets"):
        removed += remove_orphans(cache_dir() / sub, max_age)
    return removed + trim_cache()

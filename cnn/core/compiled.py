"""One cache for the functions compiled per model (tf.function traces): built once per model and key, dropped
with the model (weak keys: the cache never keeps a model alive)."""
from __future__ import annotations

import functools
import weakref


def per_model(build):
    """Decorator: `build(model, *key)` runs once per model and (hashable) key; later calls get what it built."""
    built: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()

    @functools.wraps(build)
    def cached(model, *key):
        per_key = built.setdefault(model, {})
        if key not in per_key:
            per_key[key] = build(model, *key)
        return per_key[key]

    return cached


def batches(x, size: int, on_progress=None):
    """Consecutive slices x[start:start + size] of an array (the one batching loop); `on_progress(done, total)`
    after each slice has been used."""
    total = len(x)
    for start in range(0, total, size):
        yield x[start:start + size]
        if on_progress is not None:
            on_progress(min(start + size, total), total)

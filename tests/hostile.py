"""A corpus of hostile files, made on demand: model bundles with lying metadata, zip bombs (flat, many-entry and
nested inside a bundle's model.keras), huge, truncated and misnamed images, traversal names, one-class zips,
models with code. Used by tests/engine/test_hostile.py and by bench/hostile_probes.py (peak memory of each probe).

Nothing here is downloaded or committed: each maker returns bytes (or writes into a folder it is given).
"""
from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib

import numpy as np
from PIL import Image

# ---------------------------------------------------------------------------
# Zip building blocks
# ---------------------------------------------------------------------------


def zip_of(entries: dict, method=zipfile.ZIP_DEFLATED) -> bytes:
    """A zip holding `entries` (name → bytes or str)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def _deflate_repeated(unit: bytes, copies: int) -> tuple[bytes, int, int]:
    """(a raw deflate stream of `unit` repeated `copies` times, its CRC-32, its size), without ever holding
    the expanded data: one independently compressed block (full flush: no back-references) is repeated."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(unit) + compressor.flush(zlib.Z_FULL_FLUSH)
    end = zlib.compressobj(9, zlib.DEFLATED, -15).flush()  # the final empty block
    crc = 0
    for _ in range(copies):
        crc = zlib.crc32(unit, crc)
    return block * copies + end, crc, len(unit) * copies


def raw_zip(entries: list[tuple[str, bytes, int, int, int]]) -> bytes:
    """A zip written by hand from (name, stored data, crc, unpacked size, method) — for members whose
    unpacked form is too large to make with zipfile (a bomb's 3 GB)."""
    out, central = io.BytesIO(), []
    for name, data, crc, size, method in entries:
        offset = out.tell()
        encoded = name.encode()
        out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0x21, crc, len(data), size,
                              len(encoded), 0) + encoded + data)
        central.append(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 0x21, crc, len(data),
                                   size, len(encoded), 0, 0, 0, 0, 0o100644 << 16, offset) + encoded)
    start = out.tell()
    for record in central:
        out.write(record)
    out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(central), len(central), out.tell() - start, start, 0))
    return out.getvalue()


# ---------------------------------------------------------------------------
# Model bundles
# ---------------------------------------------------------------------------


def bundle_with(bundle: bytes, **replace) -> bytes:
    """A copy of a real bundle (cnn.store.bundles.bundle_bytes) with some files replaced: metrics/spec/history as JSON
    values (or raw bytes), or 'model.keras' bytes. Keyword names: metrics, spec, history, model."""
    files = {"metrics": "metrics.json", "spec": "spec.json", "history": "history.json", "model": "model.keras"}
    with zipfile.ZipFile(io.BytesIO(bundle)) as zf:
        entries = {info.filename: zf.read(info) for info in zf.infolist()}
    for key, value in replace.items():
        name = next(n for n in entries if n.endswith("/" + files[key]))
        entries[name] = value if isinstance(value, bytes) else json.dumps(value)
    return zip_of(entries)


# Metadata that once broke every page (issue 11): wrong types, paths, hostile sizes.
HOSTILE_METRICS = {
    "created-int": {"created": 12345},
    "accuracy-text": {"test_accuracy": "high"},
    "epochs-text": {"epochs": "many"},
    "not-a-dict": [1, 2, 3],
    "server-folder": {"dataset": "folder:x", "dataset_source": "/"},
    "dataset-path": {"dataset": "/etc", "dataset_source": "/etc"},
    "dataset-traversal": {"dataset": "folder:../../etc"},
    "nan-accuracy": {"test_accuracy": float("nan"), "test_loss": float("inf")},
    "huge-params": {"params": 10 ** 400, "num_test": -5},
    "class-names-wrong": {"class_names": ["a", "b"], "confusion_matrix": [[1, 2], [3]]},
    "created-garbage": {"created": "yesterday-ish", "status": "pwned", "keras_version": "x" * 5000},
    "unknown-keys": {"evil": {"nested": [1, 2]}, "__proto__": 1},
}


def nested_bomb_keras(config_bytes: int = 3_000_000_000) -> bytes:
    """A .keras (zip) whose config.json unpacks to `config_bytes` of spaces — about config_bytes/1000
    bytes on disk (deflate's best ratio). A zip bomb one level down when put in a bundle."""
    data, crc, size = _deflate_repeated(b" " * (1 << 20), max(1, config_bytes >> 20))
    metadata = json.dumps({"keras_version": "3.15.0", "date_saved": "2026-01-01@00:00:00"}).encode()
    return raw_zip([("metadata.json", metadata, zlib.crc32(metadata), len(metadata), 0),
                    ("config.json", data, crc, size, 8)])


def nested_bomb_bundle(config_bytes: int = 3_000_000_000) -> bytes:
    """A bundle (model/…) whose model.keras is nested_bomb_keras: the outer zip looks harmless (stored,
    ratio 1)."""
    inner = nested_bomb_keras(config_bytes)
    return zip_of({"bomb/model.keras": inner, "bomb/metrics.json": "{}", "bomb/spec.json": "{}",
                   "bomb/history.json": "{}"}, method=zipfile.ZIP_STORED)


def many_entries_keras(count: int = 200) -> bytes:
    return zip_of({"config.json": "{}", **{f"assets/{i}.bin": b"x" for i in range(count)}})


def truncated(data: bytes, keep: float = 0.5) -> bytes:
    return data[: int(len(data) * keep)]


def lambda_model_keras(path) -> bytes:
    """A real .keras file with a Lambda layer (code)."""
    import keras

    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Lambda(lambda t: t * 2), keras.layers.Flatten(),
                              keras.layers.Dense(10, activation="softmax")])
    model.save(path)
    return path.read_bytes()


def custom_class_keras(keras_bytes: bytes, class_name: str = "HostileCustomLayer") -> bytes:
    """A real .keras file whose first Dense layer claims to be a custom class no one registered (as a model
    saved with user code looks elsewhere), with a long config before the name."""
    with zipfile.ZipFile(io.BytesIO(keras_bytes)) as zf:
        entries = {info.filename: zf.read(info) for info in zf.infolist()}
    config = json.loads(entries["config.json"])
    for layer in config["config"]["layers"]:
        if layer["class_name"] == "Dense":
            layer["class_name"] = class_name
            layer["module"] = "my_project.layers"
            layer["registered_name"] = f"MyProject>{class_name}"
            layer["config"]["padding_note"] = "x" * 500  # pushes the name far into Keras's message
            break
    entries["config.json"] = json.dumps(config).encode()
    return zip_of(entries)


# ---------------------------------------------------------------------------
# Images and dataset zips
# ---------------------------------------------------------------------------


def png_bytes(size=(16, 16), mode="L", seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(buffer, "PNG")
    return buffer.getvalue()


def huge_png(side: int = 13_300) -> bytes:
    """A real, valid side×side grayscale PNG (all black): ~side²/1000 bytes on disk, side² bytes decoded —
    made row by row, never holding the pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor, parts, row = zlib.compressobj(9), [], b"\0" * (side + 1)  # filter byte 0 + black pixels
    for _ in range(side):
        parts.append(compressor.compress(row))
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")


def image_as(fmt: str, size=(16, 16)) -> bytes:
    """An image in another format (e.g. 'WEBP', 'TIFF'), for misnamed files."""
    buffer = io.BytesIO()
    Image.fromarray(np.full((size[1], size[0], 3), 128, np.uint8)).save(buffer, fmt)
    return buffer.getvalue()


def class_zip(classes=("a", "b"), per_class: int = 6, extra: dict | None = None, wrapper: str = "") -> bytes:
    """A class-folder dataset zip of small random PNGs, plus `extra` entries (name → bytes)."""
    entries = {f"{wrapper}{c}/{i}.png": png_bytes(seed=k * 100 + i) for k, c in enumerate(classes)
               for i in range(per_class)}
    entries.update({f"{wrapper}{name}": data for name, data in (extra or {}).items()})
    return zip_of(entries)


def zero_entries_zip(count: int = 269, size: int = 1_000_000) -> bytes:
    """Many all-zero entries, each under the per-entry bomb check: `count` × `size` bytes unpacked."""
    buffer = io.BytesIO()
    zeros = b"\0" * size
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(count):
            zf.writestr(f"a/{i}.png" if i % 2 else f"b/{i}.png", zeros)
    return buffer.getvalue()


TRAVERSAL_NAMES = ["x/../../../../tmp/PWNED.zip", "../../etc/passwd.zip", "/etc/cron.d/evil.zip",
                   "C:\\Windows\\evil.zip", "..", "", "a\x00b.zip", "évil <script>.zip", "x" * 500 + ".zip"]

"""A seeded fuzzer for model specs: hostile JSON documents (and bytes) that every spec entry point must either
accept or refuse with the project's own SpecError/CnnError — never another exception.

`generate(seed, count)` yields (kind, payload): kind 'text' (a str for ModelSpec.from_json), 'bytes' (raw
bytes, as `python -m cnn train --spec` reads them) or 'dict' (a Python object for ModelSpec.from_dict).
`exercise(payload)` runs one payload through every entry point and returns the exception type name that
escaped, or None. `tally(seed, count)` counts escapes by type (used by the test and by hand:
`python -m tests.fuzz_specs 2000`).
"""
from __future__ import annotations

import json
import math
import random
from collections import Counter

from cnn.core.errors import CnnError
from cnn.model.layers import LAYER_TYPES
from cnn.model.memory import estimate
from cnn.model.spec import PRESETS, preset

HUGE = "__HUGE_INT__"  # replaced in the JSON text by a 5,000-digit integer (json.dumps cannot write one)

# Values a field may be replaced with: extreme, negative, non-finite, wrong type, huge.
HOSTILE_VALUES = [
    0, -1, 1, 2, 3, -(2 ** 31), 2 ** 31, 2 ** 63, 10 ** 30, 10 ** 400, -10 ** 400, 1e308, -1e308, 1e-320, 0.5,
    3.7, -0.0, math.inf, -math.inf, math.nan, True, False, None, "", "3", "abc", "relu", "same", "x" * 10_000,
    "Ωμέγα", "\u0000", [], [1], [1, 2], [28, 28], [28, 28, 1, 1], [28, 28, 1], ["a", "b", "c"], [math.inf] * 3,
    [[28], [28], [1]], {}, {"a": 1}, {"type": "Dense"}, ["Dense"], HUGE,
]
KINDS = list(LAYER_TYPES) + ["Lambda", "dense", "", "Conv2D ", "__class__", "InputLayer"]


def _value(rng: random.Random):
    return rng.choice(HOSTILE_VALUES)


def _random_layer(rng: random.Random) -> dict:
    """A layer of a random kind (sometimes unknown) with random settings, some hostile."""
    kind = rng.choice(KINDS)
    layer = {"type": kind}
    cls = LAYER_TYPES.get(kind)
    if cls is not None:
        from dataclasses import fields

        for f in fields(cls):
            if rng.random() < 0.5:
                meta = f.metadata
                if "choices" in meta and rng.random() < 0.5:
                    layer[f.name] = rng.choice(meta["choices"])
                elif "min" in meta and rng.random() < 0.5:
                    layer[f.name] = rng.choice([meta["min"], meta["max"], meta["min"] - 1, meta["max"] + 1,
                                                (meta["min"] + meta["max"]) / 2])
                else:
                    layer[f.name] = _value(rng)
    return layer


def _in_range_layer(rng: random.Random) -> dict:
    """A layer of a known kind with every setting inside its range: exercises validate's arithmetic."""
    from dataclasses import fields

    kind = rng.choice(list(LAYER_TYPES))
    layer = {"type": kind}
    for f in fields(LAYER_TYPES[kind]):
        meta = f.metadata
        if "choices" in meta:
            layer[f.name] = rng.choice(meta["choices"])
        elif isinstance(f.default, int):
            layer[f.name] = rng.randint(meta["min"], min(meta["max"], 64 if f.name in ("filters", "units") else 99))
        else:
            layer[f.name] = round(rng.uniform(meta["min"], meta["max"]), 3)
    return layer


def _containers(doc: dict) -> list[dict]:
    """Every dict inside a spec document that a mutation may change."""
    out = [doc]
    if isinstance(doc.get("train"), dict):
        out.append(doc["train"])
        if isinstance(doc["train"].get("augmentation"), dict):
            out.append(doc["train"]["augmentation"])
    if isinstance(doc.get("layers"), list):
        out += [layer for layer in doc["layers"] if isinstance(layer, dict)]
    return out


def _mutate(doc: dict, rng: random.Random) -> None:
    """One random change to a spec document, in place."""
    choice = rng.randrange(11)
    target = rng.choice(_containers(doc))
    if choice == 0 and target:  # a known key gets a hostile value
        target[rng.choice(list(target))] = _value(rng)
    elif choice == 1 and target:  # a key goes missing
        del target[rng.choice(list(target))]
    elif choice == 2:  # an unknown key
        target[rng.choice(["extra", "Filters", "units ", "__init__", "type", "0"])] = _value(rng)
    elif choice == 3:  # the layer list is replaced or extended with random kinds
        layers = doc.get("layers") if isinstance(doc.get("layers"), list) else []
        layers.insert(rng.randrange(len(layers) + 1), _random_layer(rng))
        doc["layers"] = layers
    elif choice == 4:  # a layer's type becomes something unhashable or odd
        layers = [l for l in doc.get("layers", []) if isinstance(l, dict)] if isinstance(doc.get("layers"), list) else []
        if layers:
            rng.choice(layers)["type"] = rng.choice([["Dense"], {"Dense": 1}, None, 3, "Lambda", math.nan])
    elif choice == 5:  # input_shape of the wrong length or content
        doc["input_shape"] = rng.choice([[], [28], [28, 28], [28, 28, 1, 1], [28, 28, 2], [0, 28, 1],
                                         [1e9, 1e9, 3], [math.inf, 28, 1], "28x28", 28, None,
                                         [28.5, 28, 1], [-28, 28, 1], [HUGE, 28, 1], [True, True, True]])
    elif choice == 6:  # train is not an object
        doc["train"] = rng.choice([[], "adam", 5, None, [["epochs", 3]], {"augmentation": []},
                                   {"augmentation": "none"}, {"augmentation": None}, {"optimizer": ["adam"]}])
    elif choice == 7:  # layers is not a list
        doc["layers"] = rng.choice([{}, "Conv2D", 3, None, {"type": "Dense"}, [[]], [None], ["Flatten"]])
    elif choice == 8:  # num_classes or preset odd
        key = rng.choice(["num_classes", "preset"])
        doc[key] = _value(rng)
    elif choice == 9:  # many layers
        doc["layers"] = [_random_layer(rng) for _ in range(rng.choice([0, 1, 30, 200]))]
    else:  # a big but in-range model: many wide layers (the parameter limit must catch it, not Python)
        doc["layers"] = [{"type": "Conv2D", "filters": 1024, "kernel": 15, "padding": "same"}] * rng.randint(1, 4) + \
                        [{"type": "Flatten"}, {"type": "Dense", "units": 8192}]


def _text(doc) -> str:
    text = json.dumps(doc, allow_nan=True)  # writes Infinity / NaN, as some tools do
    return text.replace(f'"{HUGE}"', "1" + "0" * 5000)


def _byte_mutation(text: str, rng: random.Random) -> bytes:
    """The document as bytes with a hostile change: invalid UTF-8, a flipped byte, truncation, deep nesting."""
    data = text.encode("utf-8")
    choice = rng.randrange(6)
    if choice == 0:
        at = rng.randrange(len(data) + 1)
        return data[:at] + rng.choice([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80\x80", b"\xfe\xff"]) + data[at:]
    if choice == 1:
        return bytes([0xFF, 0xFE]) + text.encode("utf-16-le")  # UTF-16 with a BOM
    if choice == 2 and data:
        at = rng.randrange(len(data))
        return data[:at] + bytes([rng.randrange(256)]) + data[at + 1:]
    if choice == 3:
        return data[: rng.randrange(len(data) + 1)]
    if choice == 4:
        depth = rng.choice([100, 5_000, 200_000])
        return b"[" * depth + b"]" * depth
    return b"\xef\xbb\xbf" + data  # a UTF-8 byte-order mark


def generate(seed: int = 0, count: int = 1000):
    """`count` hostile payloads, the same ones for the same seed."""
    rng = random.Random(seed)
    names = sorted(PRESETS)
    for i in range(count):
        doc = preset(rng.choice(names)).to_dict()
        if rng.random() < 0.25:  # a plausible spec: known kinds, in-range settings, in a random order
            doc["layers"] = [_in_range_layer(rng) for _ in range(rng.randint(1, 8))] + [{"type": "Flatten"}]
            doc["input_shape"] = [rng.randint(1, 64), rng.randint(1, 64), rng.choice([1, 3])]
        else:
            for _ in range(rng.randint(1, 4)):
                _mutate(doc, rng)
        roll = rng.random()
        if roll < 0.15:
            yield "bytes", _byte_mutation(_text(doc), rng)
        elif roll < 0.25:
            yield "dict", rng.choice([doc, [doc], "spec", 3, None, {"layers": doc.get("layers")}, doc])
        else:
            yield "text", _text(doc)


def exercise(kind: str, payload) -> str | None:
    """Run one payload through parsing, validation, costing, the JSON round trip and the memory estimate.
    The name of a non-project exception that escaped, or None."""
    from cnn.model.spec import ModelSpec, check, validate

    try:
        spec = ModelSpec.from_dict(payload) if kind == "dict" else ModelSpec.from_json(payload)
        message = check(spec)
        if message is None:
            analysis = validate(spec)
            estimate(analysis, spec.train.batch_size, spec.train.optimizer).total
            assert ModelSpec.from_json(spec.to_json()) == spec
    except CnnError:
        return None
    except Exception as exc:  # noqa: BLE001 — counting is the point
        return type(exc).__name__
    return None


def tally(seed: int = 0, count: int = 1000) -> tuple[Counter, Counter, list]:
    """(payloads by kind, escaped exceptions by type, the first few failing payloads)."""
    kinds, escaped, examples = Counter(), Counter(), []
    for kind, payload in generate(seed, count):
        kinds[kind] += 1
        name = exercise(kind, payload)
        if name:
            escaped[name] += 1
            if len(examples) < 20:
                examples.append((name, kind, repr(payload)[:300]))
    return kinds, escaped, examples


if __name__ == "__main__":
    import sys

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    kinds, escaped, examples = tally(0, n)
    print(f"{n} specs ({dict(kinds)}); escaped non-project exceptions: {sum(escaped.values())} {dict(escaped)}")
    for example in examples:
        print(" ", example)

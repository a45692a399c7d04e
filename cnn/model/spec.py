"""Model specs: JSON-serialisable dataclasses, validation (every layer's shape, parameters and MACs), presets.

The layer kinds, and each kind's own arithmetic, live in cnn.model.layers; this module walks a spec through them.
Nothing here imports TensorFlow: the spec is checked, costed and edited before any model exists.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields

from cnn.core.errors import SpecError
# The layer kinds live in cnn.model.layers, one class each. Re-exported here for the modules that import them
# from cnn.model.spec; new code imports kinds from cnn.model.layers.
from cnn.model.layers import (ACTIVATIONS, LAYER_TYPES, PADDINGS, AveragePooling2D, BatchNormalization,  # noqa: F401
                              Conv2D, Dense, Dropout, Flatten, GlobalAveragePooling2D, MaxPooling2D, _choice, _float,
                              _int, kind_of, output_size, output_size_formula, pool_stride, same_padding)

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SCHEDULES = ("constant", "cosine")
START_FROM = ("scratch", "mnist-default")  # where a training's first weights come from (cnn.run.train.reuse_filters)
MAX_PARAMS = 20_000_000  # a bigger model does not belong in a teaching app on a laptop
MAX_LAYERS = 100  # hidden layers in one spec
MAX_SPEC_BYTES = 1_000_000  # a spec file's size (a 100-layer spec is ~15 kB)


# ---------------------------------------------------------------------------
# Training config and the whole spec
# ---------------------------------------------------------------------------

@dataclass
class Augmentation:
    """Random changes applied to training images only (0 switches each one off)."""

    shift: float = _float(0.0, 0.0, 0.5, "largest shift, as a fraction of height/width")
    rotation: float = _float(0.0, 0.0, 180.0, "largest rotation, in degrees")
    zoom: float = _float(0.0, 0.0, 0.5, "largest zoom in or out, as a fraction")

    @property
    def active(self) -> bool:
        return bool(self.shift or self.rotation or self.zoom)

    def keras_layers(self, seed: int) -> list[tuple[str, str, dict]]:
        """(Keras class, layer name, keyword arguments) for each augmentation switched on, in order."""
        return [(cls, name, args(getattr(self, key), seed)) for key, cls, name, args in AUGMENTATION_LAYERS
                if getattr(self, key)]


# The training-only Keras layers, declared once: (Augmentation field, Keras class, layer name, arguments from
# the field's value and the seed). They fill with 0 = the black background of MNIST-like data, and are the
# identity at prediction time (so inference skips them and spec_from_model reads past them).
AUGMENTATION_LAYERS = (
    ("shift", "RandomTranslation", "augment_shift",
     lambda v, seed: {"height_factor": v, "width_factor": v, "fill_mode": "constant", "seed": seed}),
    ("rotation", "RandomRotation", "augment_rotate",
     lambda v, seed: {"factor": round(v / 360, 6), "fill_mode": "constant", "seed": seed}),  # degrees → turns
    ("zoom", "RandomZoom", "augment_zoom",
     lambda v, seed: {"height_factor": v, "fill_mode": "constant", "seed": seed}),
)
TRAINING_ONLY = tuple(cls for _, cls, _, _ in AUGMENTATION_LAYERS)


@dataclass
class TrainConfig:
    """How to fit the model; stored with every saved model."""

    optimizer: str = _choice("adam", OPTIMIZERS, "update rule")
    learning_rate: float = _float(1e-3, 1e-6, 1.0, "peak step size")
    lr_schedule: str = _choice("constant", SCHEDULES, "'cosine' = 10% linear warm-up, then cosine decay to 0")
    batch_size: int = _int(128, 1, 4096, "images per gradient step")
    epochs: int = _int(5, 1, 500, "passes over the training images")
    validation_split: float = _float(0.1, 0.0, 0.5, "share of training images held out to watch overfitting")
    seed: int = _int(0, 0, 2**31 - 1, "same seed + same data → same model")
    start_from: str = _choice("scratch", START_FROM, "scratch = random initial weights; mnist-default = the "
                              "shipped MNIST model's filters, copied into the layers before Flatten and frozen "
                              "(transfer learning: only the rest learns)")
    augmentation: Augmentation = field(default_factory=Augmentation)


@dataclass
class ModelSpec:
    """A CNN: input, hidden layers in order, and how to train it. The output layer is implied:
    Dense(num_classes, softmax) named 'output', after the last listed layer."""

    input_shape: tuple[int, int, int] = (28, 28, 1)  # (height, width, channels) of one uint8 image
    num_classes: int = 10  # units of the softmax output layer
    layers: list = field(default_factory=list)  # Conv2D, Dense, ... in order
    train: TrainConfig = field(default_factory=TrainConfig)
    preset: str = "custom"  # the preset it started from (for tables); 'custom' once edited by hand

    # -- JSON --------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "layers": [{"type": kind_of(layer), **asdict(layer)} for layer in self.layers],
            "train": asdict(self.train),
            "preset": self.preset,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelSpec":
        """Read a spec written by `to_dict`; anything else (unknown layer types or keys, wrong types, values
        that are not finite numbers) gives a SpecError naming it. Ranges are checked later by `validate`."""
        if not isinstance(data, dict):
            raise SpecError(f"a spec must be a JSON object, got {_kind(data)}")
        _check_keys(data, {f.name for f in fields(cls)}, "spec")
        shape = data.get("input_shape", [28, 28, 1])
        if not isinstance(shape, (list, tuple)) or len(shape) != 3:
            raise SpecError(f"spec: input_shape must be 3 whole numbers [height, width, channels], got "
                            f"{_short(shape)}", layer=0)
        input_shape = tuple(_whole(v, "spec: input_shape") for v in shape)
        num_classes = _whole(data.get("num_classes", 10), "spec: num_classes")
        layers = data.get("layers", [])
        if not isinstance(layers, list):
            raise SpecError(f"spec: 'layers' must be a list, got {_kind(layers)}")
        if len(layers) > MAX_LAYERS:
            raise SpecError(f"spec: {len(layers)} layers; the limit is {MAX_LAYERS}")
        layers = [_layer_from_dict(i, item) for i, item in enumerate(layers, start=1)]
        train = data.get("train", {})
        _check_keys(train, {f.name for f in fields(TrainConfig)}, "train")
        augmentation = train.get("augmentation", {})
        _check_keys(augmentation, {f.name for f in fields(Augmentation)}, "train.augmentation")
        config = TrainConfig(**_coerce(TrainConfig, train, "train"),
                             augmentation=Augmentation(**_coerce(Augmentation, augmentation, "train.augmentation")))
        name = data.get("preset", "custom")
        if not isinstance(name, str) or len(name) > 64:
            raise SpecError(f"spec: preset must be a name of at most 64 characters, got {_short(name)}")
        return cls(input_shape, num_classes, layers, config, name)

    @classmethod
    def from_json(cls, text: str | bytes) -> "ModelSpec":
        """Read a spec from JSON text, or from the bytes of a file (UTF-8, a byte-order mark allowed)."""
        if isinstance(text, (bytes, bytearray)):
            if len(text) > MAX_SPEC_BYTES:
                raise SpecError(f"the spec is {len(text) / 1e6:.1f} MB; the limit is {MAX_SPEC_BYTES / 1e6:g} MB")
            try:
                text = bytes(text).decode("utf-8-sig")
            except UnicodeDecodeError as exc:
                raise SpecError(f"not a JSON text file: byte 0x{exc.object[exc.start]:02x} at position {exc.start} "
                                "is not UTF-8 — save the spec as UTF-8 JSON (as Configure exports it)") from None
        if not isinstance(text, str):
            raise SpecError(f"a spec must be JSON text, got {_kind(text)}")
        if len(text) > MAX_SPEC_BYTES:
            raise SpecError(f"the spec is {len(text) / 1e6:.1f} MB; the limit is {MAX_SPEC_BYTES / 1e6:g} MB")
        try:
            data = json.loads(text.removeprefix("\ufeff"))
        except json.JSONDecodeError as exc:
            raise SpecError(f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
        except RecursionError:
            raise SpecError("not a spec: the JSON is nested too deeply") from None
        except ValueError as exc:  # e.g. an integer of more than 4,300 digits
            raise SpecError(f"not valid JSON: {_short(str(exc), 80)}") from None
        return cls.from_dict(data)

    def copy(self) -> "ModelSpec":
        return ModelSpec.from_dict(self.to_dict())

    def with_data(self, input_shape, num_classes: int) -> "ModelSpec":
        """The same spec adapted to a dataset's input shape and class count."""
        spec = self.copy()
        spec.input_shape, spec.num_classes = tuple(int(v) for v in input_shape), int(num_classes)
        return spec


def _kind(value) -> str:
    """What a JSON value is, for messages: 'a list', 'a string', 'null', ..."""
    return {dict: "an object", list: "a list", tuple: "a list", str: "a string", bool: "true/false",
            type(None): "null", int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def _short(value, limit: int = 60) -> str:
    """repr(value), cut to `limit` characters (hostile values can be huge)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10 ** 30:
        return f"a {len(str(abs(value))) if abs(value) < 10 ** 4000 else 'many'}-digit number"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _whole(value, where: str) -> int:
    """A JSON number that is a whole number (32 or 32.0) as int; SpecError for anything else."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpecError(f"{where} must be a whole number, got {_short(value)}")
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        raise SpecError(f"{where} must be a whole number, got {_short(value)}")
    if abs(value) > 2 ** 53:
        raise SpecError(f"{where} must be a whole number, got {_short(value)} (far too large)")
    return int(value)


def _number(value, where: str) -> float:
    """A JSON number as float (not-finite values are left to validate's ranges); SpecError for non-numbers."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpecError(f"{where} must be a number, got {_short(value)}")
    try:
        return float(value)
    except OverflowError:
        raise SpecError(f"{where} must be a number, got {_short(value)} (far too large)") from None


def _check_keys(data: dict, allowed: set[str], where: str) -> None:
    if not isinstance(data, dict):
        raise SpecError(f"{where}: expected a JSON object, got {_kind(data)}")
    unknown = sorted(_short(k, 30) if not isinstance(k, str) else k[:30] for k in set(data) - allowed - {"type"})
    if unknown:
        raise SpecError(f"{where}: unknown key(s) {', '.join(unknown[:10])}{' …' if len(unknown) > 10 else ''} "
                        f"(allowed: {', '.join(sorted(allowed))})")


def _coerce(cls, values: dict, where: str) -> dict:
    """Cast JSON values to the dataclass field types (JSON has no int/float distinction); SpecError for a
    value of the wrong type."""
    out = {}
    for f in fields(cls):
        if f.name not in values or f.name == "augmentation":
            continue
        value, kind = values[f.name], type(f.default)
        if kind is int:
            out[f.name] = _whole(value, f"{where}: {f.name}")
        elif kind is float:
            out[f.name] = _number(value, f"{where}: {f.name}")
        elif not isinstance(value, kind):
            raise SpecError(f"{where}: {f.name} must be {kind.__name__}, got {_short(value)}")
        else:
            out[f.name] = value
    return out


def _layer_from_dict(index: int, item) -> object:
    if not isinstance(item, dict) or "type" not in item:
        raise SpecError(f"layer {index}: expected an object with a 'type' key, got {_short(item)}", layer=index)
    kind = item["type"]
    cls = LAYER_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise SpecError(f"layer {index}: unknown type {_short(kind, 40)} (expected one of {', '.join(LAYER_TYPES)})",
                        layer=index)
    _check_keys(item, {f.name for f in fields(cls)}, f"layer {index} {kind}")
    return cls(**_coerce(cls, item, f"layer {index} {kind}"))


# ---------------------------------------------------------------------------
# Validation: every layer's output shape, parameters and MACs, with the arithmetic
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class LayerInfo:
    index: int  # position in spec.layers (1-based); 0 = input, len(layers)+1 = output layer
    name: str  # the Keras layer name the builder gives it
    kind: str  # 'Conv2D', 'Dense', ...
    output_shape: tuple[int, ...]  # without the batch axis
    params: int  # all weights, as Keras's summary counts them
    trainable: int  # the ones gradient descent changes (BatchNormalization keeps 2 per channel fixed)
    macs: int  # multiply-accumulates for one image
    arithmetic: str  # how output_shape and params were computed

    @property
    def activations(self) -> int:
        return math.prod(self.output_shape)


@dataclass(frozen=True)
class Analysis:
    layers: tuple[LayerInfo, ...]

    @property
    def params(self) -> int:
        return sum(info.params for info in self.layers)

    @property
    def trainable(self) -> int:
        return sum(info.trainable for info in self.layers)

    @property
    def macs(self) -> int:
        return sum(info.macs for info in self.layers)



def layer_names(spec: ModelSpec) -> list[str]:
    """Stable Keras names for spec.layers, e.g. ['conv1', 'maxpool1', 'conv2', ...]."""
    counts: dict[str, int] = {}
    names = []
    for layer in spec.layers:
        prefix = layer.prefix
        counts[prefix] = counts.get(prefix, 0) + 1
        names.append(f"{prefix}{counts[prefix]}")
    return names


def _check_fields(index: int, obj, where: str) -> None:
    for f in fields(obj):
        value, meta = getattr(obj, f.name), f.metadata
        if "choices" in meta and (not isinstance(value, str) or value not in meta["choices"]):
            raise SpecError(f"{where}: {f.name} {_short(value)} is not one of {', '.join(meta['choices'])}",
                            layer=index)
        if "min" in meta and (isinstance(value, bool) or not isinstance(value, (int, float))
                              or not meta["min"] <= value <= meta["max"]):
            raise SpecError(f"{where}: {f.name} {_short(value)} is outside {meta['min']}…{meta['max']} "
                            f"({meta['help']})", layer=index)


def validate(spec: ModelSpec) -> Analysis:
    """Compute every layer's output shape, parameters and MACs; raise SpecError for impossible specs."""
    shape = tuple(spec.input_shape) if isinstance(spec.input_shape, (tuple, list)) else ()
    whole = len(shape) == 3 and all(isinstance(v, int) and not isinstance(v, bool) for v in shape)
    if not whole or not (1 <= shape[0] <= 1024 and 1 <= shape[1] <= 1024) or shape[2] not in (1, 3):
        raise SpecError(f"input shape {_short(spec.input_shape)} must be (height, width, channels) with sides "
                        "1…1024 and 1 (grayscale) or 3 (colour) channels", layer=0)
    h, w, c = shape
    if isinstance(spec.num_classes, bool) or not isinstance(spec.num_classes, int) or \
            not 2 <= spec.num_classes <= 1000:
        raise SpecError(f"num_classes {_short(spec.num_classes)} must be between 2 and 1000", layer=0)
    if len(spec.layers) > MAX_LAYERS:
        raise SpecError(f"the spec has {len(spec.layers)} layers; the limit is {MAX_LAYERS}", layer=0)
    _check_fields(0, spec.train, "train")
    _check_fields(0, spec.train.augmentation, "train.augmentation")
    if spec.train.optimizer not in OPTIMIZERS:
        raise SpecError(f"train: optimizer {spec.train.optimizer!r} is not one of {', '.join(OPTIMIZERS)}", layer=0)

    infos = [LayerInfo(0, "image", "Input", (h, w, c), 0, 0, 0, f"{h}×{w}×{c} uint8, rescaled to 0…1 inside the model")]
    try:
        return _analyse_layers(spec, infos)
    except SpecError as exc:
        exc.partial = tuple(infos)  # the layers that did fit, for tables that show where it broke
        raise


def _analyse_layers(spec: ModelSpec, infos: list) -> Analysis:
    shape: tuple[int, ...] = infos[0].output_shape
    previous = "the input"
    for index, (layer, name) in enumerate(zip(spec.layers, layer_names(spec)), start=1):
        kind = kind_of(layer)
        where = f"layer {index} {kind}"
        _check_fields(index, layer, where)
        # Each kind says which input it takes; the errors name the layer that made the shape.
        flat = len(shape) == 1
        if flat and layer.needs == "image":
            raise SpecError(f"{where} needs an image-shaped input (H×W×C) but {previous} made it a flat vector "
                            f"of {shape[0]}; move it before the Flatten/GlobalAveragePooling2D", layer=index)
        if not flat and layer.needs == "flat":
            raise SpecError(f"{where} needs a flat input but {previous} gives "
                            f"{'×'.join(map(str, shape))}; add Flatten or GlobalAveragePooling2D before it",
                            layer=index)
        out = layer.output(shape, index, where)  # the kind's own arithmetic (SpecError if it cannot fit)
        trainable = out.params if out.trainable is None else out.trainable
        infos.append(LayerInfo(index, name, kind, out.shape, out.params, trainable, out.macs, out.arithmetic))
        shape, previous = out.shape, where

    index = len(spec.layers) + 1
    if len(shape) != 1:
        raise SpecError(f"the output layer needs a flat input but {previous} gives {'×'.join(map(str, shape))}; "
                        "add Flatten or GlobalAveragePooling2D at the end", layer=index)
    params = shape[0] * spec.num_classes + spec.num_classes
    infos.append(LayerInfo(index, "output", "Dense", (spec.num_classes,), params, params, shape[0] * spec.num_classes,
                           f"softmax over {spec.num_classes} classes; params {shape[0]:,}·{spec.num_classes}"
                           f"+{spec.num_classes} = {params:,}"))
    analysis = Analysis(tuple(infos))
    if analysis.params > MAX_PARAMS:
        raise SpecError(f"the model has {analysis.params:,} parameters; the limit is {MAX_PARAMS:,} — use fewer "
                        "filters/units or pool before Flatten")
    return analysis


def check(spec: ModelSpec) -> str | None:
    """The validation error message, or None if the spec is buildable (for UIs that show it inline)."""
    try:
        validate(spec)
    except SpecError as exc:
        return str(exc)
    return None


# ---------------------------------------------------------------------------
# Presets
# ---------------------------------------------------------------------------

def _lenet5() -> ModelSpec:
    # LeCun et al. 1998: C1 6@5×5, S2 avg-pool, C3 16@5×5, S4 avg-pool, C5/F6 dense 120/84, tanh.
    # 'same' on C1 turns MNIST's 28×28 into the paper's 32×32 frame (28+4 = 32 → 28×28×6).
    return ModelSpec(layers=[
        Conv2D(6, 5, 1, "same", "tanh"), AveragePooling2D(2),
        Conv2D(16, 5, 1, "valid", "tanh"), AveragePooling2D(2),
        Flatten(), Dense(120, "tanh"), Dense(84, "tanh"),
    ], train=TrainConfig(optimizer="adam", learning_rate=1e-3, batch_size=128, epochs=10), preset="lenet5")


def _keras_mnist_convnet() -> ModelSpec:
    # keras-io "Simple MNIST convnet": 34,826 params, Adam, batch 128, 15 epochs, 10% validation.
    return ModelSpec(layers=[
        Conv2D(32, 3), MaxPooling2D(2), Conv2D(64, 3), MaxPooling2D(2), Flatten(), Dropout(0.5),
    ], train=TrainConfig(optimizer="adam", learning_rate=1e-3, batch_size=128, epochs=15), preset="keras-mnist-convnet")


def _tiny_vgg() -> ModelSpec:
    # Two VGG blocks (conv-conv-pool) for 32×32 colour images such as CIFAR-10.
    return ModelSpec(input_shape=(32, 32, 3), layers=[
        Conv2D(32, 3, padding="same"), Conv2D(32, 3, padding="same"), MaxPooling2D(2),
        Conv2D(64, 3, padding="same"), Conv2D(64, 3, padding="same"), MaxPooling2D(2),
        Flatten(), Dropout(0.5),
    ], train=TrainConfig(optimizer="adam", learning_rate=1e-3, batch_size=64, epochs=20,
                         augmentation=Augmentation(shift=0.1)), preset="tiny-vgg")


def _default() -> ModelSpec:
    # Tuned for time-to-99% on MNIST on a 2-core CPU (`python bench/train_speed.py --levers` measures each
    # choice): few MACs where they cost most (8 kernels on the 28×28 image, 3×3 kernels after the first pool);
    # batch norm after each pool (4× fewer values to normalise than after the conv, same accuracy); a wide head
    # (128 units, nearly free); batch 256 at a high peak rate (8e-3) with a warm-up + cosine schedule, so three
    # epochs reach ≥ 99.2% on full MNIST.
    return ModelSpec(layers=[
        Conv2D(8, 5), MaxPooling2D(2), BatchNormalization(),
        Conv2D(32, 3), MaxPooling2D(2), BatchNormalization(),
        Flatten(), Dense(128), Dropout(0.25),
    ], train=TrainConfig(optimizer="adam", learning_rate=8e-3, lr_schedule="cosine", batch_size=256, epochs=3,
                         validation_split=0.05), preset="default")


PRESETS = {
    "default": _default,  # tuned by bench/train_speed.py
    "lenet5": _lenet5,
    "keras-mnist-convnet": _keras_mnist_convnet,
    "tiny-vgg": _tiny_vgg,
}

PRESET_NOTES = {
    "default": "fast on MNIST: few multiply-adds, batch norm, a high rate with warm-up and cosine decay — "
               "≥ 99.2% in 3 epochs (see bench/train_speed.py)",
    "lenet5": "LeNet-5 (LeCun et al., 1998): tanh, average pooling, 61,706 parameters",
    "keras-mnist-convnet": "the keras-io 'Simple MNIST convnet': 34,826 parameters",
    "tiny-vgg": "two VGG blocks for 32×32 colour images such as CIFAR-10",
}


def preset(name: str, input_shape=None, num_classes: int | None = None) -> ModelSpec:
    """A fresh copy of a preset, optionally adapted to a dataset's input shape and class count."""
    if name not in PRESETS:
        raise SpecError(f"unknown preset {name!r} (choose one of {', '.join(PRESETS)})")
    spec = PRESETS[name]()
    if input_shape is not None:
        spec.input_shape = tuple(int(v) for v in input_shape)
    if num_classes is not None:
        spec.num_classes = int(num_classes)
    return spec

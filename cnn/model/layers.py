"""Layer kinds: one class per kind, and LAYER_TYPES, the one table the rest of CNN Studio loops over.

A kind's class owns everything about it:

- its fields, whose metadata (`_int`, `_float`, `_choice`) drives validation and the Configure widgets;
- its docstring, whose first line Configure shows;
- its Keras name prefix (conv → conv1, conv2, ...);
- the input it needs (image-shaped or flat) and its shape/parameter/MAC arithmetic, written out;
- its receptive-field arithmetic: how much of the input image one of its output values sees;
- its Keras layer (class name + keyword arguments), used by both build_model and export_script;
- how to read itself back from a Keras layer (`from_keras`), and whether it carries weights;
- its colour in the architecture diagram.

Adding a kind = one class here plus its entry in LAYER_TYPES. Nothing here imports TensorFlow:
`from_keras` only reads the attributes of a Keras layer it is handed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar, NamedTuple

from cnn.core.errors import SpecError

PADDINGS = ("valid", "same")
ACTIVATIONS = ("relu", "tanh", "sigmoid", "elu", "gelu", "swish", "linear")


# ---------------------------------------------------------------------------
# Output-size arithmetic (shared by validation, the Configure table and the Learn page)
# ---------------------------------------------------------------------------

def output_size(size: int, kernel: int, stride: int, padding: str) -> int:
    """Keras's output length along one axis: 'valid' ⌊(W−K)/S⌋+1, 'same' ⌈W/S⌉. May be ≤ 0 (impossible)."""
    if padding == "same":
        return math.ceil(size / stride)
    return (size - kernel) // stride + 1


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """Zeros Keras/TF add before and after along one axis for padding='same' (the extra one goes after)."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def output_size_formula(size: int, kernel: int, stride: int, padding: str) -> str:
    """The arithmetic behind `output_size` with the numbers filled in, e.g. '⌊(28−3+0)/1⌋+1 = 26'."""
    if padding == "same":
        total = sum(same_padding(size, kernel, stride))
    else:
        total = 0
    result = output_size(size, kernel, stride, padding)
    return f"⌊({size}−{kernel}+{total})/{stride}⌋+1 = {result}".replace("= -", "= −")


def _window(index: int, where: str, what: str, shape, size: int, stride: int, padding: str):
    """Output (H, W) of a sliding window, or a SpecError with the arithmetic when it does not fit."""
    h, w = shape[0], shape[1]
    out_h, out_w = output_size(h, size, stride, padding), output_size(w, size, stride, padding)
    if out_h < 1 or out_w < 1:
        side = h if out_h < 1 else w
        raise SpecError(f"{where}: {what} {size} > input {h}×{w} with padding '{padding}': "
                        f"{output_size_formula(side, size, stride, padding)}", layer=index)
    text = output_size_formula(h, size, stride, padding)
    if w != h:
        text += f" × {output_size_formula(w, size, stride, padding)}"
    return out_h, out_w, text


# ---------------------------------------------------------------------------
# Receptive fields (shared by cnn.explain and the pages): what one output value sees of the input image
# ---------------------------------------------------------------------------

class Field(NamedTuple):
    """Along one axis of the input image (kernels and pools are square, so one axis at a time suffices):
    the input pixels one output value of a layer depends on."""

    size: int  # input pixels one output value sees, padding included (the image itself is `size` at most)
    jump: int  # input pixels between neighbouring output values: the product of the strides so far
    offset: int  # input coordinate where output 0's field begins (< 0 when 'same' padding added zeros before)
    positions: int  # output values along this axis (the map's side; a flat layer keeps its map's count)

    def window(self, kernel: int, stride: int, padding: str) -> "Field":
        """After a kernel×kernel window moved by `stride`: each output value sees `kernel` neighbouring
        fields, `jump` apart; 'same' padding shifts the first window back by the zeros added before."""
        before = same_padding(self.positions, kernel, stride)[0] if padding == "same" else 0
        return Field(self.size + (kernel - 1) * self.jump, self.jump * stride, self.offset - before * self.jump,
                     output_size(self.positions, kernel, stride, padding))

    def whole(self) -> "Field":
        """After a layer that mixes every position (global pooling, a dense layer): one window over all."""
        return self.window(self.positions, 1, "valid")


# ---------------------------------------------------------------------------
# Field helpers: the metadata drives validation (cnn.model.spec) and the Configure page's widgets
# ---------------------------------------------------------------------------

def _int(default: int, lo: int, hi: int, help: str):
    return field(default=default, metadata={"min": lo, "max": hi, "help": help})


def _float(default: float, lo: float, hi: float, help: str):
    return field(default=default, metadata={"min": lo, "max": hi, "help": help})


def _choice(default: str, choices: tuple[str, ...], help: str):
    return field(default=default, metadata={"choices": choices, "help": help})


# Keras reading helpers for `from_keras`: CNN Studio's fields are single numbers and known names.

def _square(value, what: str, layer) -> int:
    value = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if value[0] != value[1]:
        raise SpecError(f"layer {layer.name!r}: {what} {value} is not square")
    return int(value[0])


def _activation(layer) -> str:
    name = getattr(layer.activation, "__name__", str(layer.activation))
    if name not in ACTIVATIONS and name != "softmax":  # softmax: the output layer
        raise SpecError(f"layer {layer.name!r}: activation {name!r} is not supported")
    return name


def _is(layer, cls) -> bool:
    return type(layer).__name__ == cls.__name__


# ---------------------------------------------------------------------------
# The base class: the hooks every kind fills in, and their defaults
# ---------------------------------------------------------------------------

class Output(NamedTuple):
    """What a layer makes of its input shape (one image, no batch axis)."""

    shape: tuple[int, ...]  # the output shape
    params: int = 0  # all weights, as Keras's summary counts them
    macs: int = 0  # multiply-accumulates for one image
    arithmetic: str = ""  # how shape and params were computed, with the numbers filled in
    trainable: int | None = None  # weights gradient descent changes; None = all of them


class LayerKind:
    """A layer kind. Subclasses are dataclasses; their fields are the settings a user edits."""

    prefix: ClassVar[str] = "layer"  # Keras names are prefix + count: conv1, conv2, maxpool1, ...
    needs: ClassVar[str | None] = "image"  # input it takes: "image" (H×W×C), "flat" (a vector), None = either
    weights: ClassVar[bool] = False  # has weights (rebuild() copies them over from an outside model)
    colour: ClassVar[str] = "#cccccc"  # its box in the architecture diagram

    def output(self, shape: tuple[int, ...], index: int, where: str) -> Output:
        """Output shape, parameters, MACs and the arithmetic for `shape` in; SpecError if it cannot fit.
        `index` (1-based) and `where` ('layer 3 Conv2D') name the layer in error messages."""
        raise NotImplementedError

    def field(self, before: Field) -> Field:
        """Its receptive field along one input axis, from the field of its input (`before`). The default
        is for kinds that work value by value (batch norm, dropout, flatten): each output value sees what
        its one input value saw."""
        return before

    def keras_layer(self, seed: int) -> tuple[str, dict]:
        """(Keras class name, keyword arguments) of the layer it builds; `seed` for random layers."""
        return type(self).__name__, {}

    @classmethod
    def from_keras(cls, layer) -> LayerKind | None:
        """This kind read back from a Keras layer. None when `layer` is not one this kind stands for (the
        caller then lists the supported kinds); SpecError naming the setting when it is this kind but with a
        setting CNN Studio cannot represent (e.g. a dilated convolution)."""
        return cls() if _is(layer, cls) else None


# ---------------------------------------------------------------------------
# The kinds
# ---------------------------------------------------------------------------

@dataclass
class Conv2D(LayerKind):
    """Slides `filters` learned K×K kernels over the input; each makes one feature map."""

    filters: int = _int(32, 1, 1024, "number of kernels = output channels")
    kernel: int = _int(3, 1, 15, "kernel height and width")
    stride: int = _int(1, 1, 8, "step between kernel positions")
    padding: str = _choice("valid", PADDINGS, "'valid' = no padding, 'same' = output ⌈input/stride⌉")
    activation: str = _choice("relu", ACTIVATIONS, "applied to every output value")

    prefix, weights, colour = "conv", True, "#6baed6"

    def output(self, shape, index, where):
        out_h, out_w, text = _window(index, where, "kernel", shape, self.kernel, self.stride, self.padding)
        k, cin, f = self.kernel, shape[2], self.filters
        # One K×K×Cin kernel plus a bias per filter; each output value is K·K·Cin multiply-adds.
        params = k * k * cin * f + f
        return Output((out_h, out_w, f), params, out_h * out_w * f * k ** 2 * cin,
                      f"{text}; params {k}·{k}·{cin}·{f}+{f} = {params:,}")

    def field(self, before):
        return before.window(self.kernel, self.stride, self.padding)

    def keras_layer(self, seed):
        return "Conv2D", {"filters": self.filters, "kernel_size": self.kernel, "strides": self.stride,
                          "padding": self.padding, "activation": self.activation}

    @classmethod
    def from_keras(cls, layer):
        if not _is(layer, cls):
            return None
        if _square(layer.dilation_rate, "dilation", layer) != 1 or layer.groups != 1 or not layer.use_bias:
            raise SpecError(f"layer {layer.name!r}: dilated, grouped or bias-free convolutions are not supported")
        return cls(layer.filters, _square(layer.kernel_size, "kernel", layer), _square(layer.strides, "stride", layer),
                   layer.padding, _activation(layer))


def pool_stride(layer) -> int:
    """A pooling layer's effective stride (0 means 'same as the pool size', as in Keras)."""
    return layer.stride or layer.pool


@dataclass
class _Pool2D(LayerKind):
    """Max and average pooling: the same window, the same arithmetic; only the reduction differs."""

    pool: int = _int(2, 1, 8, "window height and width")
    stride: int = _int(0, 0, 8, "step between windows (0 = same as pool)")
    padding: str = _choice("valid", PADDINGS, "'valid' drops edge leftovers, 'same' keeps them")

    colour = "#fd8d3c"

    def output(self, shape, index, where):
        out_h, out_w, text = _window(index, where, "pool", shape, self.pool, pool_stride(self), self.padding)
        return Output((out_h, out_w, shape[2]), arithmetic=text)  # channels unchanged, no weights

    def field(self, before):
        return before.window(self.pool, pool_stride(self), self.padding)

    def keras_layer(self, seed):
        return type(self).__name__, {"pool_size": self.pool, "strides": pool_stride(self), "padding": self.padding}

    @classmethod
    def from_keras(cls, layer):
        if not _is(layer, cls):
            return None
        pool, stride = _square(layer.pool_size, "pool", layer), _square(layer.strides, "stride", layer)
        return cls(pool, 0 if stride == pool else stride, layer.padding)


@dataclass
class MaxPooling2D(_Pool2D):
    """Keeps the largest value of each pool×pool window."""

    prefix = "maxpool"


@dataclass
class AveragePooling2D(_Pool2D):
    """Keeps the mean of each pool×pool window."""

    prefix = "avgpool"


@dataclass
class BatchNormalization(LayerKind):
    """Normalises each channel with batch statistics, then scales and shifts (4 numbers per channel)."""

    prefix, needs, weights = "bn", None, True

    def output(self, shape, index, where):
        channels = shape[-1]
        # γ, β, moving mean and variance per channel; one multiply-add per value.
        return Output(shape, 4 * channels, math.prod(shape),
                      f"params 4·{channels} = {4 * channels} (γ, β trainable; mean, variance not)", 2 * channels)

    def keras_layer(self, seed):
        # 0.9, not Keras's 0.99: short runs on small data need moving statistics that catch up fast.
        return "BatchNormalization", {"momentum": 0.9}

    @classmethod
    def from_keras(cls, layer):
        # Per-channel statistics with both γ and β, as ours; anything else is not this kind.
        ok = _is(layer, cls) and layer.axis in (-1, 3, [3], [-1]) and layer.center and layer.scale
        return cls() if ok else None


@dataclass
class Dropout(LayerKind):
    """In training, zeroes a random share `rate` of values and scales the rest by 1/(1−rate)."""

    rate: float = _float(0.5, 0.0, 0.95, "share of values dropped while training")

    prefix, needs = "dropout", None

    def output(self, shape, index, where):
        return Output(shape, arithmetic=f"shape unchanged; drops {self.rate:.0%} while training")

    def keras_layer(self, seed):
        return "Dropout", {"rate": self.rate, "seed": seed}

    @classmethod
    def from_keras(cls, layer):
        return cls(round(float(layer.rate), 4)) if _is(layer, cls) else None


@dataclass
class Flatten(LayerKind):
    """Unrolls H×W×C feature maps into one vector of H·W·C numbers."""

    prefix, colour = "flatten", "#bcbddc"

    def output(self, shape, index, where):
        size = math.prod(shape)
        return Output((size,), arithmetic=f"{'·'.join(map(str, shape))} = {size:,}")


@dataclass
class _GlobalPool2D(LayerKind):
    """Global pooling: each H×W feature map becomes one number, so H×W×C becomes C."""

    reduction = "mean"  # named in the arithmetic: 'one mean per channel'

    def output(self, shape, index, where):
        return Output((shape[2],), arithmetic=f"one {self.reduction} per channel = {shape[2]}")

    def field(self, before):
        return before.whole()  # each value pools its map's every position

    @classmethod
    def from_keras(cls, layer):
        return cls() if _is(layer, cls) and not layer.keepdims else None  # keepdims=True stays H×W×C-shaped


@dataclass
class GlobalAveragePooling2D(_GlobalPool2D):
    """Averages each feature map to one number: H×W×C becomes C."""

    prefix, reduction = "gap", "mean"


@dataclass
class GlobalMaxPooling2D(_GlobalPool2D):
    """Keeps the largest value of each feature map: H×W×C becomes C."""

    prefix, reduction = "gmp", "max"


@dataclass
class Dense(LayerKind):
    """Every output unit is a weighted sum of all inputs plus a bias."""

    units: int = _int(128, 1, 8192, "number of output units")
    activation: str = _choice("relu", ACTIVATIONS, "applied to every output value")

    prefix, needs, weights, colour = "dense", "flat", True, "#74c476"

    def output(self, shape, index, where):
        # A weight per input per unit, plus a bias per unit.
        params = shape[0] * self.units + self.units
        return Output((self.units,), params, shape[0] * self.units,
                      f"params {shape[0]:,}·{self.units}+{self.units} = {params:,}")

    def field(self, before):
        return before.whole()  # a weight for every input value: every position of the flattened map

    def keras_layer(self, seed):
        return "Dense", {"units": self.units, "activation": self.activation}

    @classmethod
    def from_keras(cls, layer):
        return cls(layer.units, _activation(layer)) if _is(layer, cls) and layer.use_bias else None


# The one table: JSON 'type' names → classes, in the order Configure's "Add a layer" list shows them.
LAYER_TYPES: dict[str, type[LayerKind]] = {
    cls.__name__: cls
    for cls in (Conv2D, MaxPooling2D, AveragePooling2D, BatchNormalization, Dropout, Flatten,
                GlobalAveragePooling2D, GlobalMaxPooling2D, Dense)
}


def kind_of(layer) -> str:
    """The layer's type name, e.g. 'Conv2D'."""
    return type(layer).__name__

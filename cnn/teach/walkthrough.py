"""The Learn page's walkthrough: one image followed through the user's own model, section by section.

Each function computes one lesson with cnn.teach.lessons (plain NumPy) on the model's real weights and returns a
plain dataclass; where the model computes the same number, the dataclass carries the largest difference
between NumPy and Keras. The page only draws these.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cnn.analysis.inference import activations, conv_layers, inner_layers
from cnn.model.spec import output_size_formula
from cnn.teach import lessons

AGREE = 1e-5  # NumPy and Keras agree when no value differs by more than this


def difference(ours, theirs) -> float:
    """The largest |NumPy − Keras| over all values."""
    return float(np.max(np.abs(np.asarray(ours, float) - np.asarray(theirs, float))))


# ---------------------------------------------------------------------------
# The image and the model's own outputs for it
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Walk:
    """One image and every layer's output for it."""

    image: np.ndarray  # (H, W, C) uint8, as the model takes it
    outputs: dict  # layer name → output for this image (no batch axis)
    layers: tuple  # layer names in order (no input, no training-only augmentation)
    first_conv: str | None  # the first Conv2D layer's name
    output: str  # the output layer's name


def walk(model, x) -> Walk:
    """Every layer's output for one prepared image, from one forward pass."""
    names = tuple(l.name for l in inner_layers(model))
    convs = conv_layers(model)
    return Walk(np.asarray(x), activations(model, x), names, convs[0] if convs else None, model.layers[-1].name)


@dataclass(frozen=True)
class Pixels:
    shape: tuple  # (H, W, C)
    ink: int  # pixels where any channel is above 0
    minimum: int
    maximum: int
    mean: float


def pixels(x) -> Pixels:
    """What the network receives: a grid of numbers 0 … 255."""
    x = np.asarray(x)
    return Pixels(tuple(x.shape), lessons.ink_pixels(x), int(x.min()), int(x.max()), float(x.mean()))


# ---------------------------------------------------------------------------
# Convolution
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Position:
    """One output value of a convolution or pooling, explained."""

    row: int
    col: int
    window: np.ndarray  # the input patch under the kernel or pool (NaN = padding)
    products: np.ndarray | None  # patch ⊙ kernel (convolution only)
    value: float  # what the output holds there (convolution: sum of products + bias)
    top: int  # the window's top-left corner in input coordinates (negative inside 'same' padding)
    left: int


@dataclass(frozen=True)
class Convolution:
    source: np.ndarray  # what the kernel slides over: the input ÷ 255, (H, W) gray or (H, W, C) colour
    kernel: np.ndarray  # (K, K) as shown (a colour model filter: its first channel slice)
    slices: np.ndarray | None  # (K, K, C) the model filter's slice per channel (None for hand-made kernels)
    bias: float  # the filter's bias (0 for hand-made kernels)
    stride: int
    padding: str
    feature: np.ndarray  # (Ho, Wo) the feature map, bias included, before the activation
    formulas: tuple  # (height, width) output-size arithmetic, e.g. '⌊(28−3+0)/1⌋+1 = 26'
    filter_index: int | None  # which filter of the first conv layer (None for hand-made kernels)
    layer: str | None  # that layer's name
    activation: str | None  # that layer's activation
    keras_difference: float | None  # max |NumPy − Keras| of the activated map, when the setup is the layer's own
    layer_setup: tuple | None  # (stride, padding) of the model's layer, to say what to set to compare

    @property
    def size(self) -> int:
        return int(self.kernel.shape[0])

    def at(self, row: int, col: int) -> Position:
        """The patch, products and value behind feature[row, col] (summed over the channels)."""
        if self.slices is not None and self.source.ndim == 3:
            parts = [lessons.conv_at(self.source[..., c], self.slices[..., c], row, col, self.stride, self.padding)
                     for c in range(self.source.shape[-1])]
            first, value = parts[0], sum(p["value"] for p in parts)
        else:
            first = lessons.conv_at(self.source, self.kernel, row, col, self.stride, self.padding)
            value = first["value"]
        return Position(row, col, first["patch"], first["products"], value + self.bias, first["top"], first["left"])


def convolution(model, walk_: Walk, kernel="model filter", stride: int = 1, padding: str = "valid",
                filter_index: int = 0) -> Convolution:
    """A convolution of the image by a hand-made kernel (a name in lessons.KERNELS, or a (K, K) array) or by a
    filter of the model's first conv layer, computed with NumPy. ValueError when the kernel does not fit."""
    image = walk_.image.astype(np.float64) / 255  # what the first layer sees after the Rescaling layer
    channels = image.shape[-1]
    gray = image.mean(axis=-1)
    if isinstance(kernel, str) and kernel == "model filter":
        layer = model.get_layer(walk_.first_conv)
        weights, biases = layer.get_weights()  # (K, K, Cin, F), (F,)
        slices, bias = weights[..., filter_index], float(biases[filter_index])
        activation = getattr(layer.activation, "__name__", "linear")
        config = layer.get_config()
        setup = (int(config["strides"][0]), config["padding"])
        # Colour: every channel has its own slice and the products of all of them are summed.
        source = image if channels > 1 else gray
        feature = lessons.conv2d(source, slices[..., None] if channels > 1 else slices[..., 0],
                                 stride=stride, padding=padding)
        feature = (feature[..., 0] if channels > 1 else feature) + bias
        shown = slices[..., 0]
        check = None
        if (stride, padding) == setup and activation in ("relu", "linear"):
            activated = lessons.relu(feature) if activation == "relu" else feature
            check = difference(activated, walk_.outputs[layer.name][..., filter_index])
        return Convolution(source, shown, slices, bias, stride, padding, feature,
                           _formulas(image.shape, shown.shape[0], stride, padding), filter_index, layer.name,
                           activation, check, setup)
    matrix = lessons.KERNELS[kernel] if isinstance(kernel, str) else np.nan_to_num(np.asarray(kernel, float))
    feature = lessons.conv2d(gray, matrix, stride=stride, padding=padding)
    return Convolution(gray, matrix, None, 0.0, stride, padding, feature,
                       _formulas(image.shape, matrix.shape[0], stride, padding), None, None, None, None, None)


def _formulas(shape, kernel: int, stride: int, padding: str) -> tuple[str, str]:
    return output_size_formula(shape[0], kernel, stride, padding), output_size_formula(shape[1], kernel, stride, padding)


def classic_maps(walk_: Walk, stride: int = 1, padding: str = "valid") -> dict:
    """The image convolved by each hand-made kernel: many filters, many features."""
    gray = walk_.image.astype(np.float64).mean(axis=-1) / 255
    return {name: lessons.conv2d(gray, k, stride=stride, padding=padding) for name, k in lessons.KERNELS.items()}


# ---------------------------------------------------------------------------
# ReLU and pooling
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Relu:
    before: np.ndarray
    after: np.ndarray
    zeroed: int  # values ReLU set to 0 (the negative ones)

    @property
    def share(self) -> float:
        return self.zeroed / self.before.size


def relu(feature) -> Relu:
    return Relu(np.asarray(feature), lessons.relu(feature), lessons.relu_zeroed(feature))


@dataclass(frozen=True)
class Pooling:
    source: np.ndarray  # the map being pooled
    pooled: np.ndarray
    mode: str  # 'max' or 'avg'
    size: int
    stride: int  # the effective stride (= size when none was given)
    padding: str
    formulas: tuple  # ('valid' arithmetic, 'same' arithmetic) for the source's height

    @property
    def fewer(self) -> float:
        """The share of values pooling removed."""
        return 1 - self.pooled.size / self.source.size

    def at(self, row: int, col: int) -> Position:
        explained = lessons.pool_at(self.source, row, col, self.size, self.stride, self.padding, self.mode)
        return Position(row, col, explained["window"], None, explained["value"], explained["top"], explained["left"])


def pooling(feature, mode: str = "max", size: int = 2, stride: int | None = None, padding: str = "valid") -> Pooling:
    """Max or average pooling of a map with NumPy. ValueError when the window does not fit."""
    step = stride or size
    pooled = lessons.pool2d(feature, size, step, padding, mode)
    height = np.asarray(feature).shape[0]
    return Pooling(np.asarray(feature), pooled, mode, size, step, padding,
                   (output_size_formula(height, size, step, "valid"), output_size_formula(height, size, step, "same")))


# ---------------------------------------------------------------------------
# Flatten, dense, softmax, dropout
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class DenseUnit:
    flatten: str  # the layer that turned the feature maps into a vector
    maps_shape: tuple  # the feature maps it took
    vector_size: int
    layer: str  # the first dense layer after it (the output layer if there is none)
    units: int
    unit: int
    inputs: int
    top: np.ndarray  # indices of the 20 largest |input × weight| products
    products: np.ndarray  # those products
    weighted_sum: float
    bias: float
    value: float  # weighted sum + bias, before the activation
    activation: str
    keras_difference: float | None  # max |NumPy − Keras| after a ReLU (None for other activations)


def flatten_layer(walk_: Walk) -> str | None:
    """The layer that turns feature maps into one vector (Flatten, global pooling, ...): H×W×C in, a vector out."""
    names = walk_.layers
    return next((b for a, b in zip(names, names[1:])
                 if walk_.outputs[a].ndim == 3 and walk_.outputs[b].ndim == 1), None)


def dense_unit(model, walk_: Walk, unit: int = 0) -> DenseUnit | None:
    """One unit of the first dense layer after the flattening, explained; None without a flattening layer."""
    flat = flatten_layer(walk_)
    if flat is None:
        return None
    names = list(walk_.layers)
    dense = next((n for n in names[names.index(flat) + 1:] if type(model.get_layer(n)).__name__ == "Dense"),
                 walk_.output)
    inputs = walk_.outputs[names[names.index(dense) - 1]]
    weights, biases = model.get_layer(dense).get_weights()
    explained = lessons.dense_unit(inputs, weights, biases, unit)
    top = np.argsort(-np.abs(explained["products"]), kind="stable")[:20]
    activation = getattr(model.get_layer(dense).activation, "__name__", "linear")
    check = difference(lessons.relu(explained["value"]), walk_.outputs[dense][unit]) if activation == "relu" else None
    return DenseUnit(flat, tuple(walk_.outputs[names[names.index(flat) - 1]].shape), int(walk_.outputs[flat].size),
                     dense, int(weights.shape[1]), unit, int(inputs.size), top, explained["products"][top],
                     explained["weighted_sum"], explained["bias"], explained["value"], activation, check)


@dataclass(frozen=True)
class Softmax:
    logits: np.ndarray  # the output layer's scores
    exponentials: np.ndarray  # e^(score − max score)
    probabilities: np.ndarray
    keras_difference: float  # max |NumPy − Keras| of the probabilities


def softmax(model, walk_: Walk) -> Softmax:
    """The output layer's scores and their softmax, by hand."""
    output = model.get_layer(walk_.output)
    before = walk_.outputs[walk_.layers[walk_.layers.index(walk_.output) - 1]]
    logits = lessons.dense(before, *output.get_weights())
    probabilities = lessons.softmax(logits)
    return Softmax(logits, np.exp(logits - logits.max()), probabilities,
                   difference(probabilities, walk_.outputs[walk_.output]))


@dataclass(frozen=True)
class Dropout:
    layer: str  # whose output is dropped
    values: np.ndarray
    dropped: np.ndarray  # after one random mask
    kept: np.ndarray  # the mask (True = kept)
    rate: float
    sums: np.ndarray  # the output's sum under many masks

    @property
    def scale(self) -> float:
        return 1 / (1 - self.rate)


def dropout(model, walk_: Walk, rate: float = 0.5, seed: int = 0) -> Dropout:
    """Dropout on the first hidden dense layer's output (else the flattened vector)."""
    target = next((n for n in walk_.layers if n != walk_.output and type(model.get_layer(n)).__name__ == "Dense"),
                  None) or flatten_layer(walk_) or walk_.layers[-2]
    values = walk_.outputs[target]
    dropped, kept = lessons.dropout(values, rate, seed=seed)
    return Dropout(target, values, dropped, kept, rate, lessons.dropout_sums(values, rate, seed=seed))

"""What a filter looks for: receptive fields (what one output value of each layer sees of the input)
and activation maximisation (gradient ascent on the input, with jitter, blur and an L2 pull, for every filter of
a conv layer, or every class of the output, at once in ONE compiled step over a batch of one image per filter).

Models take 0…255 inputs (a Rescaling layer is inside), so every image here is in 0…255 too. TensorFlow loads
on first use.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from cnn.analysis.inference import conv_layers
from cnn.core.compiled import per_model
from cnn.core.errors import CnnError
from cnn.model.builder import spec_from_model
from cnn.model.layers import Dense, Field
from cnn.model.spec import validate

# ---------------------------------------------------------------------------
# Receptive fields: what one output value of each layer sees of the input image
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceptiveField:
    """The square of input pixels one output value of a layer depends on."""

    name: str  # the Keras layer name ('image' for the input, 'output' for the class layer)
    kind: str  # 'Conv2D', 'MaxPooling2D', ..., 'Input'
    size: int  # side of the square, in input pixels, padding included
    jump: int  # input pixels between neighbouring output values (the product of the strides so far)
    offset: tuple[int, int]  # (row, col) where output (0, 0)'s square begins; < 0 when padding added zeros
    positions: tuple[int, int]  # output values along (rows, cols): the map's size
    image: tuple[int, int]  # the input image's (height, width)

    def box(self, row: int, col: int) -> tuple[int, int, int, int]:
        """(top, left, height, width) in the input of output value (row, col)'s field; it may reach past the
        image's edges, where the model saw padding zeros."""
        return (self.offset[0] + row * self.jump, self.offset[1] + col * self.jump, self.size, self.size)

    @property
    def share(self) -> float:
        """The largest share of the input image's area one output value sees (its square clipped to the
        image): 1.0 = the whole image."""
        return min(self.size, self.image[0]) * min(self.size, self.image[1]) / (self.image[0] * self.image[1])

    @property
    def text(self) -> str:
        """For captions: 'receptive field 14×14 px (25% of the 28×28 image), stride 2'."""
        return (f"receptive field {self.size}×{self.size} px ({self.share:.0%} of the "
                f"{self.image[0]}×{self.image[1]} image), stride {self.jump}")


def receptive_fields(spec) -> list[ReceptiveField]:
    """The receptive field of every layer of `spec` (a ModelSpec), the input first and the output layer last,
    from each kind's own arithmetic (cnn.model.layers: `LayerKind.field`)."""

    analysis = validate(spec)  # a SpecError with the arithmetic for an impossible spec
    h, w = spec.input_shape[:2]
    # One pixel sees itself; then each layer, along each axis (rows, then columns).
    rows, cols = Field(1, 1, 0, h), Field(1, 1, 0, w)
    fields = [ReceptiveField("image", "Input", 1, 1, (0, 0), (h, w), (h, w))]
    layers = [*spec.layers, Dense(spec.num_classes, "softmax")]  # the implied output layer
    for layer, info in zip(layers, analysis.layers[1:]):
        rows, cols = layer.field(rows), layer.field(cols)
        fields.append(ReceptiveField(info.name, info.kind, rows.size, rows.jump, (rows.offset, cols.offset),
                                     (rows.positions, cols.positions), (h, w)))
    return fields


def check_images(model, x) -> np.ndarray:
    """x as an array of at least one image of the model's input shape, else a CnnError saying what is wrong."""
    x = np.asarray(x)
    shape = tuple(model.input_shape[1:])
    if x.ndim != 4 or tuple(x.shape[1:]) != shape:
        raise CnnError(f"expected a batch of {'×'.join(map(str, shape))} images, got an array of shape {x.shape}")
    if len(x) == 0:
        raise CnnError("there are no images to look at: the split is empty")
    return x


def model_fields(model) -> dict[str, ReceptiveField]:
    """Layer name → receptive field for a model CNN Studio built (read back into its spec)."""
    return {f.name: f for f in receptive_fields(spec_from_model(model)[0])}


# ---------------------------------------------------------------------------
# What a filter looks for: activation maximisation, a whole layer in one compiled batched step
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Ascent:
    """Settings of the gradient ascent on the input (pixels in 0…1 while it runs, 0…255 for the model)."""

    steps: int = 160  # gradient-ascent steps
    step_size: float = 0.03  # each step moves pixels by this much (root mean square), on 0…1
    jitter: int = 2  # each step shifts the image by up to ±jitter px: patterns may not hinge on one pixel
    blur_every: int = 4  # every this many steps, a 3×3 Gaussian blur: removes high-frequency noise
    blur_sigma: float = 0.5  # the blur's width, in pixels
    l2: float = 0.002  # each step pulls pixels towards mid-grey by this share: only useful ink stays
    leak: float = 0.1  # weight of a conv filter's pre-activation mean in what is climbed (see _objectives);
    #                    measured on mnist-default: 0.1 leaves 2/16 first-layer filters behind real digits,
    #                    0.01 leaves 3/16, while 1.0 turns most first-layer images flat
    seed: int = 0  # the starting noise and the jitter: same seed, same images


@dataclass
class Maximised:
    """The input that most excites each filter of a layer (or each class)."""

    layer: str  # a conv layer's name, or 'output' for the classes
    units: np.ndarray  # (N,) the filter (or class) each image excites
    images: np.ndarray  # (N, H, W, C) uint8 in the model's input range 0…255
    values: np.ndarray  # (N,) each image's objective, measured on the uint8 image: its filter's mean
    #                     activation over the map, or its class's logit (score before softmax)
    start_values: np.ndarray  # (N,) the same on the starting noise: how far the ascent went
    ascent: Ascent  # the settings used
    seconds: float  # wall time of the ascent




def _objectives(model, layer_name: str):
    """(climb, report): functions of an image batch (0…255) → (B, units). `report` is what a unit outputs — a
    conv filter's mean activation over its map, or a class's logit (the score before softmax). `climb(x, leak)`
    is what the ascent maximises: the same plus, for a conv filter, `leak` × its mean BEFORE the activation,
    whose gradient never vanishes (after a ReLU, a filter silent on the starting image would never move)."""
    import keras
    import tensorflow as tf

    if layer_name == "output":
        head = model.layers[-1]
        features = keras.Model(model.inputs[0], head.input)

        def logits(x):
            return tf.matmul(features(x, training=False), head.kernel) + head.bias

        return (lambda x, leak: logits(x)), logits
    layer = model.get_layer(layer_name)
    if type(layer).__name__ != "Conv2D":
        raise CnnError(f"layer {layer_name!r} is not a conv layer; choose one of "
                       f"{', '.join(conv_layers(model))}, or 'output' for the classes")
    inputs = keras.Model(model.inputs[0], layer.input)  # what the conv layer receives

    def before(x):
        # Conv2D.call without its activation: convolution plus bias, (B, h, w, filters).
        return layer.convolution_op(inputs(x, training=False), layer.kernel) + layer.bias

    def climb(x, leak):
        pre = before(x)
        return tf.reduce_mean(layer.activation(pre) + leak * pre, axis=(1, 2))

    def report(x):
        return tf.reduce_mean(layer.activation(before(x)), axis=(1, 2))

    return climb, report


@per_model
def _ascent_fn(model, layer_name: str):
    """(ascend, report): ascend is a tf.function (start images, units, shifts, settings) → images running the
    whole ascent for a batch — image b climbs unit units[b] — traced once per model and layer for any batch size;
    report measures what each unit outputs (see _objectives)."""
    import tensorflow as tf

    climb, report = _objectives(model, layer_name)
    shape = model.input_shape[1:]
    channels = shape[-1]

    @tf.function(input_signature=[tf.TensorSpec([None, *shape], tf.float32), tf.TensorSpec([None], tf.int32),
                                  tf.TensorSpec([None, 2], tf.int32), tf.TensorSpec([5], tf.float32)])
    def ascend(x, units, shifts, settings):
        step_size, l2, blur_every, sigma, leak = (settings[0], settings[1], tf.cast(settings[2], tf.int32),
                                                  settings[3], settings[4])
        # A 3×3 Gaussian, one per channel (depthwise), for the blur steps.
        t = tf.constant([-1.0, 0.0, 1.0])
        g = tf.exp(-(t ** 2) / (2 * sigma ** 2))
        g = g / tf.reduce_sum(g)
        kernel = tf.tile((g[:, None] * g[None, :])[:, :, None, None], [1, 1, channels, 1])

        def score(images):
            # (B,) each image's own unit: the model sees 0…255.
            return tf.gather(climb(images * 255.0, leak), units, batch_dims=1)

        for i in tf.range(tf.shape(shifts)[0]):
            with tf.GradientTape() as tape:
                tape.watch(x)
                jittered = tf.roll(x, shift=shifts[i], axis=[1, 2])
                total = tf.reduce_sum(score(jittered))
            grad = tape.gradient(total, x)
            # Each image's step has the same size whatever its unit's scale: divide by its RMS gradient.
            grad = grad / (tf.sqrt(tf.reduce_mean(grad ** 2, axis=[1, 2, 3], keepdims=True)) + 1e-8)
            x = x + step_size * grad - l2 * (x - 0.5)
            if blur_every > 0 and (i + 1) % blur_every == 0:
                padded = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="REFLECT")
                x = tf.nn.depthwise_conv2d(padded, kernel, [1, 1, 1, 1], "VALID")
            x = tf.clip_by_value(x, 0.0, 1.0)  # stay inside the model's input range
        return x

    return ascend, report


def measure(model, layer_name: str, images, units) -> np.ndarray:
    """(N,) the objective of unit units[i] on images[i] (0…255): a filter's mean activation or a class's logit."""
    import tensorflow as tf

    _, report = _ascent_fn(model, layer_name)
    out = report(tf.constant(np.asarray(images, np.float32)))
    return tf.gather(out, tf.constant(np.asarray(units, np.int32)), batch_dims=1).numpy()


def start_images(model, units, seed: int) -> np.ndarray:
    """(len(units), H, W, C) float32 on 0…1 where each unit's ascent begins: mid-grey plus a little noise
    seeded by (seed, unit), so a unit starts alike whether it is computed alone or with its whole layer."""
    shape = model.input_shape[1:]
    return np.stack([0.5 + 0.05 * np.random.default_rng([seed, int(u)]).standard_normal(shape)
                     for u in units]).astype(np.float32).reshape(len(units), *shape)


def maximise(model, layer_name: str, units=None, ascent: Ascent | None = None) -> Maximised:
    """The input that excites each unit of `layer_name` most: every filter of a conv layer (by default) or
    every class of 'output', found by gradient ascent on the input for all of them at once — one batch of one
    image per unit, one compiled loop. `units` picks some (e.g. [3] for filter 3 alone)."""
    import tensorflow as tf

    ascent = ascent or Ascent()
    if layer_name != "output" and layer_name not in conv_layers(model):
        raise CnnError(f"layer {layer_name!r} is not a conv layer of this model; choose one of "
                       f"{', '.join(conv_layers(model)) or '(none)'}, or 'output' for the classes")
    ascend, _ = _ascent_fn(model, layer_name)
    count = int(model.layers[-1].units if layer_name == "output" else model.get_layer(layer_name).output.shape[-1])
    units = np.arange(count) if units is None else np.asarray(units, dtype=np.int64).reshape(-1)
    if units.size == 0:
        raise CnnError(f"choose at least one unit of layer {layer_name!r} (0…{count - 1})")
    if units.min() < 0 or units.max() >= count:
        raise CnnError(f"layer {layer_name!r} has units 0…{count - 1}; got {units.min()}…{units.max()}")
    # Steps in order: the starting noise and every step's jitter come from the seed.
    rng = np.random.default_rng(ascent.seed)
    x0 = start_images(model, units, ascent.seed)
    shifts = rng.integers(-ascent.jitter, ascent.jitter + 1, (ascent.steps, 2)).astype(np.int32)
    settings = np.array([ascent.step_size, ascent.l2, ascent.blur_every, ascent.blur_sigma, ascent.leak], np.float32)
    start = time.perf_counter()
    x = ascend(tf.constant(x0), tf.constant(units.astype(np.int32)), tf.constant(shifts), tf.constant(settings))
    seconds = time.perf_counter() - start
    # The model's input is what a user could draw: whole pixel values 0…255; measure on exactly those.
    images = np.round(x.numpy() * 255).astype(np.uint8)
    return Maximised(layer_name, units, images, measure(model, layer_name, images, units),
                     measure(model, layer_name, x0 * 255, units), ascent, seconds)

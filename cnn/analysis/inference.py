"""Inference on prepared inputs: probabilities, activations, Grad-CAM and saliency.

Every function takes model inputs as `prepare_image` makes them (uint8 or float, 0…255, (H, W, C) or a
batch) and runs a compiled forward pass cached per model — never `model.predict` per drawing.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np

from cnn.core.compiled import batches, per_model
from cnn.core.errors import ImageError
from cnn.data.steps import transform_image
from cnn.model.spec import TRAINING_ONLY


@per_model
def forward_fn(model):
    """A tf.function of the model in inference mode, traced once per model for any batch size."""
    import tensorflow as tf

    ref = weakref.ref(model)  # the cache must not keep the model alive
    spec = tf.TensorSpec([None, *model.input_shape[1:]], tf.float32)
    return tf.function(lambda x: ref()(x, training=False), input_signature=[spec])


def as_batch(model, x) -> tuple[np.ndarray, bool]:
    """(batch float32 array, whether the input was a single image) checked against the model's input."""
    x = np.asarray(x)
    shape = tuple(model.input_shape[1:])
    single = x.shape == shape
    batch = x[None] if single else x
    if batch.shape[1:] != shape:
        raise ImageError(f"input of shape {x.shape} does not fit the model, which takes {shape} images")
    return batch.astype(np.float32, copy=False), single


def predict_proba(model, x, batch_size: int = 1000) -> np.ndarray:
    """Class probabilities: (classes,) for one image, (N, classes) for a batch."""
    batch, single = as_batch(model, x)
    fn = forward_fn(model)
    out = np.concatenate([fn(chunk).numpy() for chunk in batches(batch, batch_size)]) \
        if len(batch) else np.zeros((0, model.output_shape[-1]), np.float32)
    return out[0] if single else out


def has_softmax_head(model) -> bool:
    """Whether the model ends in Dense(softmax), so logits = penultimate features @ W + b can be recovered."""
    head = model.layers[-1]
    return type(head).__name__ == "Dense" and getattr(head.activation, "__name__", "") == "softmax"


@per_model
def _features_fn(model, names: tuple[str, ...], spatial_mean: bool):
    """A tf.function: images → (each named layer's output flattened to (N, D) — or, with `spatial_mean`,
    feature maps averaged to (N, channels) —, penultimate (N, D), logits (N, classes))."""
    import keras
    import tensorflow as tf

    head = model.layers[-1]
    softmax = has_softmax_head(model)
    # The head's input is the penultimate feature vector (after dropout, which is the identity here).
    outputs = [model.get_layer(n).output for n in names] + [head.input if softmax else model.output]
    multi = keras.Model(model.inputs[0], outputs)  # shares the weights: no copy
    spec = tf.TensorSpec([None, *model.input_shape[1:]], tf.float32)

    @tf.function(input_signature=[spec])
    def run(x):
        outs = multi(x, training=False)
        outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]  # one output comes back bare
        flat = [tf.reduce_mean(o, axis=(1, 2)) if spatial_mean and len(o.shape) == 4 else
                tf.reshape(o, [tf.shape(o)[0], -1]) for o in outs]
        if softmax:
            logits = tf.matmul(outs[-1], head.kernel) + head.bias
        else:  # no softmax head to undo: log-probabilities are logits up to a constant per image
            logits = tf.math.log(outs[-1] + 1e-12)
        return flat[:-1], flat[-1], logits

    return run


def penultimate_layer(model) -> str:
    """The name of the layer whose output feeds the classifier head (the features the OOD score uses)."""
    return model.layers[-2].name


def features_and_logits(model, x, layers=(), spatial_mean: bool = False,
                        batch_size: int = 1000) -> tuple[dict, np.ndarray, np.ndarray]:
    """({layer name: (N, D) flattened output} for `layers`, penultimate features (N, D), logits (N, classes))
    for a batch (or (D,), (classes,) … for one image), in batched compiled passes. With `spatial_mean`, layers
    with feature maps give each channel's mean over the map instead: (N, channels).

    Logits are the scores before softmax: penultimate @ W + b of the Dense(softmax) head (log-probabilities
    for a model without one)."""
    batch, single = as_batch(model, x)
    names = tuple(layers)
    fn = _features_fn(model, names, bool(spatial_mean))
    parts = [fn(chunk) for chunk in batches(batch, batch_size)]
    if not parts:  # an empty batch still has the right widths
        parts = [fn(np.zeros((1, *batch.shape[1:]), np.float32))]
        take = slice(0, 0)
    else:
        take = slice(None)
    named = {n: np.concatenate([p[0][j].numpy() for p in parts])[take] for j, n in enumerate(names)}
    penultimate = np.concatenate([p[1].numpy() for p in parts])[take]
    logits = np.concatenate([p[2].numpy() for p in parts])[take]
    if single:
        return {n: v[0] for n, v in named.items()}, penultimate[0], logits[0]
    return named, penultimate, logits


# ---------------------------------------------------------------------------
# Looking inside: activations, Grad-CAM, saliency — one compiled forward (+ backward) pass
# ---------------------------------------------------------------------------

def inner_layers(model) -> list:
    """The layers whose outputs are worth showing: all but the input and training-only augmentation."""
    return [l for l in model.layers if type(l).__name__ not in ("InputLayer", *TRAINING_ONLY)]


def map_layers(model) -> list[str]:
    """Names of layers with H×W×C outputs (conv, pooling, batch norm): drawn as feature-map grids."""
    return [l.name for l in inner_layers(model) if len(l.output.shape) == 4 and type(l).__name__ != "Rescaling"]


def conv_layers(model) -> list[str]:
    """Names of the Conv2D layers, first to last (Grad-CAM targets; the last one is the default)."""
    return [l.name for l in inner_layers(model) if type(l).__name__ == "Conv2D"]


@per_model
def _explainer(model, layer_name: str):
    """A tf.function: (images, class index or −1) → probabilities, every layer's output, Grad-CAM for
    `layer_name`, saliency — from ONE forward pass of a multi-output model and one backward pass."""
    import keras
    import tensorflow as tf

    layers = inner_layers(model)
    names = [l.name for l in layers]
    if layer_name not in names or len(model.get_layer(layer_name).output.shape) != 4:
        raise ValueError(f"Grad-CAM needs a layer with feature maps; {layer_name!r} is not one "
                         f"(choose from {', '.join(map_layers(model))})")
    multi = keras.Model(model.inputs[0], [l.output for l in layers])  # shares the weights: no copy
    head = model.layers[-1]
    softmax_head = type(head).__name__ == "Dense" and getattr(head.activation, "__name__", "") == "softmax"
    penultimate = names.index(head.name) - 1 if softmax_head else None
    target = names.index(layer_name)
    spec = tf.TensorSpec([None, *model.input_shape[1:]], tf.float32)

    @tf.function(input_signature=[spec, tf.TensorSpec([], tf.int32)])
    def explain(x, class_index):
        with tf.GradientTape() as tape:
            tape.watch(x)
            outs = multi(x, training=False)
            probs = outs[-1]
            # Scores before softmax: their gradients do not vanish when the model is very sure.
            if softmax_head:
                logits = tf.matmul(outs[penultimate], head.kernel) + head.bias
            else:
                logits = tf.math.log(probs + 1e-12)
            chosen = tf.where(class_index < 0, tf.argmax(probs, axis=1, output_type=tf.int32),
                              tf.fill(tf.shape(probs)[:1], class_index))
            score = tf.reduce_sum(tf.gather(logits, chosen, batch_dims=1))
        feature, grad_x = tape.gradient(score, [outs[target], x])
        maps = outs[target]
        # Grad-CAM: weight each map by its mean gradient, keep the positive evidence, scale to 0…1.
        weights = tf.reduce_mean(feature, axis=(1, 2), keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(maps * weights, axis=-1))
        cam = cam / (tf.reduce_max(cam, axis=(1, 2), keepdims=True) + 1e-12)
        cam = tf.image.resize(cam[..., None], tf.shape(x)[1:3], method="bilinear")[..., 0]
        # Saliency: how strongly each input pixel moves the class score.
        sal = tf.reduce_max(tf.abs(grad_x), axis=-1)
        sal = sal / (tf.reduce_max(sal, axis=(1, 2), keepdims=True) + 1e-12)
        return probs, outs, cam, sal, chosen

    return explain, names


@dataclass
class Explanation:
    """Everything the Predict page shows for one image."""

    probabilities: np.ndarray  # (classes,)
    activations: dict  # layer name → output without the batch axis
    grad_cam: np.ndarray  # (H, W) in 0…1 at input size
    saliency: np.ndarray  # (H, W) in 0…1
    class_index: int  # the class Grad-CAM and saliency explain
    layer_name: str  # the Grad-CAM layer


def explain(model, x, class_index: int | None = None, layer_name: str | None = None) -> Explanation:
    """Probabilities, all activations, Grad-CAM and saliency for ONE prepared image, in one call."""
    batch, single = as_batch(model, x)
    if not single or len(batch) != 1:
        raise ValueError("explain() takes one image (H, W, C); use predict_proba for batches")
    layer_name = layer_name or default_cam_layer(model)
    fn, names = _explainer(model, layer_name)
    probs, outs, cam, sal, chosen = fn(batch, -1 if class_index is None else int(class_index))
    return Explanation(probs.numpy()[0], {n: o.numpy()[0] for n, o in zip(names, outs)}, cam.numpy()[0],
                       sal.numpy()[0], int(chosen.numpy()[0]), layer_name)


def default_cam_layer(model) -> str:
    """The last conv layer (Grad-CAM's usual choice), else the last layer with feature maps."""
    convs = conv_layers(model) or map_layers(model)
    if not convs:
        raise ValueError("this model has no layer with feature maps, so Grad-CAM does not apply")
    return convs[-1]


def activations(model, x) -> dict:
    """Every layer's output for one image (without the batch axis) or a batch, from one forward pass."""
    batch, single = as_batch(model, x)
    fn, names = _explainer(model, default_cam_layer(model))
    outs = fn(batch, -1)[1]
    return {n: (o.numpy()[0] if single else o.numpy()) for n, o in zip(names, outs)}


def grad_cam(model, x, class_index: int | None = None, layer_name: str | None = None) -> np.ndarray:
    """Grad-CAM heat map (H×W, 0…1, input size) of `class_index` (default: the predicted class)."""
    return explain(model, x, class_index, layer_name).grad_cam


def saliency(model, x, class_index: int | None = None) -> np.ndarray:
    """|∂ class score / ∂ input pixel|, max over channels, scaled to 0…1 (H×W)."""
    return explain(model, x, class_index).saliency


def conv_kernels(model, layer_name: str | None = None) -> np.ndarray:
    """A conv layer's kernels as (filters, K, K, in_channels) — the first conv layer by default."""
    layer_name = layer_name or (conv_layers(model) or [None])[0]
    if layer_name is None:
        raise ValueError("this model has no Conv2D layer")
    kernel = model.get_layer(layer_name).get_weights()[0]  # (K, K, Cin, F)
    return np.transpose(kernel, (3, 0, 1, 2))


# ---------------------------------------------------------------------------
# Robustness: how the probabilities move as the user's own input is rotated, shifted or scaled
# ---------------------------------------------------------------------------

SWEEPS = {
    "rotate": (np.arange(-45, 46, 5), "rotation (degrees)"),
    "shift": (np.arange(-8, 9, 1), "horizontal shift (pixels)"),
    "scale": (np.round(np.arange(0.5, 1.55, 0.05), 2), "scale (×)"),
}


def robustness(model, x, kind: str = "rotate", values=None) -> tuple[np.ndarray, np.ndarray]:
    """(values, probabilities (len(values), classes)) for transformed copies of one prepared image."""
    if kind not in SWEEPS:
        raise ValueError(f"sweep kind must be one of {', '.join(SWEEPS)}, got {kind!r}")
    values = SWEEPS[kind][0] if values is None else np.asarray(values)
    x = np.asarray(x)
    variants = np.stack([transform_image(x, **{kind: v}) for v in values])
    return values, predict_proba(model, variants)

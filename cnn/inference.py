"""Inference on prepared inputs: probabilities, activations, Grad-CAM and saliency.

Every function takes model inputs as `prepare_image` makes them (uint8 or float, 0…255, (H, W, C) or a
batch) and runs a compiled forward pass cached per model — never `model.predict` per drawing.
"""
from __future__ import annotations

import weakref

import numpy as np

_FORWARD: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def forward_fn(model):
    """A tf.function of the model in inference mode, traced once per model for any batch size."""
    fn = _FORWARD.get(model)
    if fn is None:
        import tensorflow as tf

        ref = weakref.ref(model)  # the cache must not keep the model alive
        spec = tf.TensorSpec([None, *model.input_shape[1:]], tf.float32)
        fn = tf.function(lambda x: ref()(x, training=False), input_signature=[spec])
        _FORWARD[model] = fn
    return fn


def as_batch(model, x) -> tuple[np.ndarray, bool]:
    """(batch float32 array, whether the input was a single image) checked against the model's input."""
    x = np.asarray(x)
    shape = tuple(model.input_shape[1:])
    single = x.shape == shape
    batch = x[None] if single else x
    if batch.shape[1:] != shape:
        from cnn.errors import ImageError

        raise ImageError(f"input of shape {x.shape} does not fit the model, which takes {shape} images")
    return batch.astype(np.float32, copy=False), single


def predict_proba(model, x, batch_size: int = 1000) -> np.ndarray:
    """Class probabilities: (classes,) for one image, (N, classes) for a batch."""
    batch, single = as_batch(model, x)
    fn = forward_fn(model)
    out = np.concatenate([fn(batch[i:i + batch_size]).numpy() for i in range(0, len(batch), batch_size)]) \
        if len(batch) else np.zeros((0, model.output_shape[-1]), np.float32)
    return out[0] if single else out

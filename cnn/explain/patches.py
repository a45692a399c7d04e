"""What excites a filter in real data: for every filter of every conv layer, the input patches (its
receptive field) of the images that excite it most, from one batched pass keeping a running top-k.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cnn.analysis.inference import conv_layers
from cnn.core.compiled import batches, per_model
from cnn.core.errors import CnnError
from cnn.explain.maximise import ReceptiveField, check_images, model_fields

# ---------------------------------------------------------------------------
# What excites it in real data: the top patches of every filter, one batched pass with a running top-k
# ---------------------------------------------------------------------------


@dataclass
class TopPatches:
    """For each filter of a conv layer, the `k` images of a split that excite it most, and where."""

    layer: str  # the conv layer's name
    field: ReceptiveField  # what one of its output values sees
    images: np.ndarray  # (F, k) indices into the split, strongest first (ties: the lower index first)
    positions: np.ndarray  # (F, k, 2) (row, col) in the layer's output map of the image's strongest value
    values: np.ndarray  # (F, k) that value: the filter's activation there
    patches: np.ndarray  # (F, k, size, size, C) uint8: the input pixels it sees; 0 where the field leaves
    #                      the image (what the model's padding saw)
    boxes: np.ndarray  # (F, k, 4) top, left, height, width of each patch in its input image




@per_model
def _peaks_fn(model, names: tuple[str, ...]):
    """A tf.function: images → for each layer in `names`, (B, F) each filter's largest activation per image and
    (B, F) where (the first position in row-major order holding that largest value) — one forward pass."""
    import keras
    import tensorflow as tf

    multi = keras.Model(model.inputs[0], [model.get_layer(n).output for n in names])

    @tf.function(input_signature=[tf.TensorSpec([None, *model.input_shape[1:]], tf.float32)])
    def peaks(x):
        outs = multi(x, training=False)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        result = []
        for out in outs:
            b, h, w, f = tf.unstack(tf.shape(out))
            flat = tf.reshape(out, [b, h * w, f])  # positions in row-major order
            best = tf.reduce_max(flat, axis=1)
            # The first position holding the maximum: exact and deterministic, unlike argmax on ties.
            index = tf.range(h * w)[None, :, None]
            first = tf.reduce_min(tf.where(flat == best[:, None, :], index, h * w), axis=1)
            result.append((best, first))
        return result

    return peaks


def crop_patches(x, images, boxes) -> np.ndarray:
    """(…, size, size, C) uint8 crops of x[images] at boxes (top, left, size, size), zero outside the image."""
    images, boxes = np.asarray(images), np.asarray(boxes)
    size = int(boxes[..., 2].max()) if boxes.size else 0
    pad = size  # enough zeros for any box that reaches past an edge
    padded = np.pad(np.asarray(x), ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    out = np.zeros((*images.shape, size, size, x.shape[-1]), dtype=np.uint8)
    for i in np.ndindex(images.shape):
        top, left = boxes[i][0] + pad, boxes[i][1] + pad
        out[i] = padded[images[i], top:top + size, left:left + size]
    return out


def top_patches(model, x, k: int = 9, layers=None, batch_size: int = 500, on_progress=None) -> dict[str, TopPatches]:
    """For every filter of every conv layer (or those in `layers`): the `k` images of `x` (uint8, N×H×W×C) on
    which its strongest value is highest, the position of that value and the input patch it sees — from ONE
    pass over `x` in batches, keeping a running top-k per filter. on_progress(done, total) after each batch."""
    names = tuple(layers or conv_layers(model))
    if not names:
        raise CnnError("this model has no conv layer, so it has no filters to show")
    unknown = sorted(set(names) - set(conv_layers(model)))
    if unknown:
        raise CnnError(f"{', '.join(unknown)} {'is not a conv layer' if len(unknown) == 1 else 'are not conv layers'} "
                       f"of this model (its conv layers: {', '.join(conv_layers(model))})")
    x = check_images(model, x)
    fields = model_fields(model)
    peaks = _peaks_fn(model, names)
    k = max(1, min(int(k), len(x)))
    # Running best per layer: value (F, k), image (F, k), flat position (F, k); empty to start.
    filters = {n: int(model.get_layer(n).output.shape[-1]) for n in names}
    best = {n: (np.zeros((f, 0), np.float32), np.zeros((f, 0), np.int64), np.zeros((f, 0), np.int64))
            for n, f in filters.items()}
    for start, chunk in zip(range(0, len(x), batch_size), batches(x, batch_size)):
        outs = peaks(np.asarray(chunk, np.float32))
        for name, (value, where) in zip(names, outs):
            # Candidates: the running best first (lower image indices), then this batch in index order; a
            # stable sort on the value keeps ties in index order.
            old_v, old_i, old_p = best[name]
            value, where = value.numpy().T, where.numpy().T.astype(np.int64)  # (F, B)
            index = np.broadcast_to(np.arange(start, start + value.shape[1]), value.shape)
            v, i, p = (np.concatenate(pair, axis=1) for pair in ((old_v, value), (old_i, index), (old_p, where)))
            order = np.argsort(-v, axis=1, kind="stable")[:, :k]
            best[name] = tuple(np.take_along_axis(a, order, axis=1) for a in (v, i, p))
        if on_progress is not None:
            on_progress(min(start + batch_size, len(x)), len(x))
    result = {}
    for name in names:
        values, images, flat = best[name]
        field_ = fields[name]
        positions = np.stack(np.divmod(flat, field_.positions[1]), axis=-1)  # (F, k, 2) row, col
        boxes = np.stack([field_.offset[0] + positions[..., 0] * field_.jump,
                          field_.offset[1] + positions[..., 1] * field_.jump,
                          np.full(flat.shape, field_.size), np.full(flat.shape, field_.size)], axis=-1)
        result[name] = TopPatches(name, field_, images, positions, values, crop_patches(x, images, boxes), boxes)
    return result

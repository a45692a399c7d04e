"""What the network learned: what each filter looks for, which real images excite it, the test set as the
network sees it, and a film of training.

- `receptive_fields(spec)`: what one output value of every layer sees of the input (each kind's arithmetic
  lives with the kind, in cnn.model.layers).
- `maximise(model, layer)`: activation maximisation — gradient ascent on the input, with jitter, blur and an
  L2 pull, for every filter of a conv layer (or every class of the output) at once, in ONE compiled step
  over a batch holding one image per filter.
- `top_patches(model, x)`: for every filter of every conv layer, the input patches (its receptive field)
  of the images that excite it most, from one batched pass over `x` keeping a running top-k.
- `embedding_map(model, x, y)`: penultimate-layer features projected to 2-D (PCA at once; t-SNE in a
  `TsneJob` thread that reports progress and can be stopped).
- `FilmRecorder`: a Keras callback that snapshots, each epoch, the first conv layer's kernels, a probe
  image's conv activations and per-layer weight histograms; `load_film(info)` reads it back.
- `hierarchy(model, x)`: the Learn page's walk from the first to the last conv layer, with the lesson's
  words ("edges → parts → objects") checked against what this model shows.

Models take 0…255 inputs (a Rescaling layer is inside), so every image here is in 0…255 too. Nothing here
imports Streamlit; TensorFlow loads on first use (FilmRecorder too: it is made when first asked for).
"""
from __future__ import annotations

import io
import re
import sys
import threading
import time
import weakref
from dataclasses import dataclass

import numpy as np

from cnn.core.errors import CnnError, RegistryError
from cnn.model.layers import Field

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
    from cnn.model.layers import Dense
    from cnn.model.spec import validate

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


def _check_images(model, x) -> np.ndarray:
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
    from cnn.model.builder import spec_from_model

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


_ASCENT: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


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
                       f"{', '.join(_conv_names(model))}, or 'output' for the classes")
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


def _conv_names(model) -> list[str]:
    from cnn.analysis.inference import conv_layers

    return conv_layers(model)


def _ascent_fn(model, layer_name: str):
    """(ascend, report): ascend is a tf.function (start images, units, shifts, settings) → images running the
    whole ascent for a batch — image b climbs unit units[b] — traced once per model and layer for any batch size;
    report measures what each unit outputs (see _objectives)."""
    cache = _ASCENT.setdefault(model, {})
    if layer_name in cache:
        return cache[layer_name]
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

    cache[layer_name] = (ascend, report)
    return cache[layer_name]


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
    if layer_name != "output" and layer_name not in _conv_names(model):
        raise CnnError(f"layer {layer_name!r} is not a conv layer of this model; choose one of "
                       f"{', '.join(_conv_names(model)) or '(none)'}, or 'output' for the classes")
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


_PEAKS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _peaks_fn(model, names: tuple[str, ...]):
    """A tf.function: images → for each layer in `names`, (B, F) each filter's largest activation per image and
    (B, F) where (the first position in row-major order holding that largest value) — one forward pass."""
    cache = _PEAKS.setdefault(model, {})
    if names in cache:
        return cache[names]
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

    cache[names] = peaks
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
    names = tuple(layers or _conv_names(model))
    if not names:
        raise CnnError("this model has no conv layer, so it has no filters to show")
    unknown = sorted(set(names) - set(_conv_names(model)))
    if unknown:
        raise CnnError(f"{', '.join(unknown)} {'is not a conv layer' if len(unknown) == 1 else 'are not conv layers'} "
                       f"of this model (its conv layers: {', '.join(_conv_names(model))})")
    x = _check_images(model, x)
    fields = model_fields(model)
    peaks = _peaks_fn(model, names)
    k = max(1, min(int(k), len(x)))
    # Running best per layer: value (F, k), image (F, k), flat position (F, k); empty to start.
    filters = {n: int(model.get_layer(n).output.shape[-1]) for n in names}
    best = {n: (np.zeros((f, 0), np.float32), np.zeros((f, 0), np.int64), np.zeros((f, 0), np.int64))
            for n, f in filters.items()}
    for start in range(0, len(x), batch_size):
        outs = peaks(np.asarray(x[start:start + batch_size], np.float32))
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


# ---------------------------------------------------------------------------
# The test set as the network sees it: penultimate-layer features projected to 2-D
# ---------------------------------------------------------------------------

# t-SNE's default sample (stratified by class). Measured by bench/features.py --tsne on the default model's
# test features, 1,000 iterations, on this project's busy 2-core machine: 2,000 points 37 CPU-s, 3,000 42,
# 5,000 64, 10,000 121 (wall time: 29 s for 3,000 when the machine was quiet; 2–4× that when shared). 3,000
# (300 a class) keeps every class's cluster visible and finishes in about half a minute.
TSNE_SIZE = 3000


@dataclass
class EmbeddingMap:
    """Points of a split laid out in 2-D by how the network's penultimate layer sees them."""

    method: str  # 'pca' or 'tsne'
    coords: np.ndarray  # (N, 2) float32
    indices: np.ndarray  # (N,) index of each point's image in the split (for hover/click → image)
    labels: np.ndarray  # (N,) true class
    predictions: np.ndarray  # (N,) the model's class
    confidence: np.ndarray  # (N,) the model's probability for its class
    explained: tuple[float, float] | None  # PCA: share of the features' variance along each axis
    seconds: float  # wall time of the projection (features excluded)

    @property
    def misclassified(self) -> np.ndarray:
        """(N,) True where the model is wrong."""
        return self.labels != self.predictions


_PENULTIMATE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def penultimate_features(model, x, batch_size: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """(features (N, D), probabilities (N, classes)) for uint8 images x: the input of the output layer (what
    the classifier separates) and its output, from one compiled forward pass per batch."""
    fn = _PENULTIMATE.get(model)
    if fn is None:
        import keras
        import tensorflow as tf

        head = model.layers[-1]
        both = keras.Model(model.inputs[0], [head.input, head.output])
        fn = tf.function(lambda images: both(images, training=False),
                         input_signature=[tf.TensorSpec([None, *model.input_shape[1:]], tf.float32)])
        _PENULTIMATE[model] = fn
    x = _check_images(model, x)
    parts = [fn(np.asarray(x[i:i + batch_size], np.float32)) for i in range(0, len(x), batch_size)]
    return (np.concatenate([f.numpy() for f, _ in parts]), np.concatenate([p.numpy() for _, p in parts]))


def stratified_sample(labels, size: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of `size` of `labels`, each class keeping its share (all of them if size ≥ len)."""
    from sklearn.model_selection import train_test_split

    labels = np.asarray(labels)
    if size >= len(labels):
        return np.arange(len(labels))
    counts = np.bincount(labels)
    # A class with a single member cannot be split by class: fall back to a plain seeded sample then.
    stratify = labels if counts[counts > 0].min() >= 2 and size >= np.count_nonzero(counts) else None
    keep, _ = train_test_split(np.arange(len(labels)), train_size=size, stratify=stratify, random_state=seed)
    return np.sort(keep)


def project_pca(features) -> tuple[np.ndarray, tuple[float, float]]:
    """(N, 2) PCA coordinates of `features` (scikit-learn) and the variance share of each axis."""
    from sklearn.decomposition import PCA

    features = np.asarray(features)
    if len(features) < 3 or features.shape[1] < 2:
        raise CnnError(f"a 2-D map needs at least 3 images and 2 features per image; got {len(features)} images "
                       f"with {features.shape[1]} feature(s) from the layer before the output")
    pca = PCA(n_components=2, svd_solver="full")
    coords = pca.fit_transform(np.asarray(features, np.float64))
    return coords.astype(np.float32), tuple(float(v) for v in pca.explained_variance_ratio_)


class TsneStopped(CnnError):
    """t-SNE was stopped on request before it finished."""


class _ThreadStdout:
    """Stands in for sys.stdout: writes from a registered thread go to that thread's handler (here: t-SNE's
    verbose lines, turned into progress), every other write to the real stdout. scikit-learn's TSNE has no
    callback, but at verbose=2 it prints a line after finding neighbours and every 50 iterations."""

    _lock = threading.Lock()
    _routes: dict[int, object] = {}
    _installed: "_ThreadStdout | None" = None

    def __init__(self, real):
        self.real = real

    def write(self, text):
        handler = self._routes.get(threading.get_ident())
        return handler(text) if handler is not None else self.real.write(text)

    def flush(self):
        if threading.get_ident() not in self._routes:
            self.real.flush()

    def __getattr__(self, name):
        return getattr(self.real, name)

    @classmethod
    def route(cls, handler):
        """Send this thread's stdout to handler(text) until unroute()."""
        with cls._lock:
            cls._routes[threading.get_ident()] = handler
            if cls._installed is None or sys.stdout is not cls._installed:
                cls._installed = cls(sys.stdout)
                sys.stdout = cls._installed

    @classmethod
    def unroute(cls):
        with cls._lock:
            cls._routes.pop(threading.get_ident(), None)
            if not cls._routes and cls._installed is not None and sys.stdout is cls._installed:
                sys.stdout = cls._installed.real  # nobody else replaced it meanwhile: put the real one back
                cls._installed = None


_ITERATION = re.compile(r"\[t-SNE\] Iteration (\d+):")


def project_tsne(features, seed: int = 0, perplexity: float = 30.0, max_iter: int = 1000, on_progress=None,
                 stop=None) -> np.ndarray:
    """(N, 2) t-SNE coordinates (scikit-learn, Barnes-Hut, PCA start) of `features`, reduced to 50 dimensions
    by PCA first when wider. on_progress(fraction 0…1, message) as t-SNE reports; `stop` (anything with
    is_set()) ends it at its next report (every 50 iterations) with TsneStopped."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    features = np.asarray(features, np.float32)
    if len(features) < 5:
        raise CnnError(f"t-SNE needs at least 5 points; there are {len(features)}")
    if features.shape[1] > 50:
        features = PCA(n_components=50, random_state=seed).fit_transform(features)
    perplexity = min(perplexity, (len(features) - 1) / 3)  # scikit-learn requires perplexity < N
    # Progress: finding neighbours and their probabilities took under 1% of the time on 2,000–10,000 points
    # (bench/features.py --tsne); the rest is the iterations, reported every 50.
    neighbours_share = 0.01

    def report(fraction: float, message: str) -> None:
        if stop is not None and stop.is_set():
            raise TsneStopped("t-SNE was stopped before it finished")
        if on_progress is not None:
            on_progress(min(1.0, fraction), message)

    def read(text: str) -> None:
        for line in text.splitlines():
            if (found := _ITERATION.search(line)) is not None:
                done = int(found.group(1))
                report(neighbours_share + (1 - neighbours_share) * done / max_iter,
                       f"t-SNE: iteration {done:,} of at most {max_iter:,}")
            elif "Computed conditional probabilities" in line:
                report(neighbours_share, "t-SNE: neighbours found; arranging the points")
            elif "nearest neighbors" in line:
                report(0.0, f"t-SNE: finding each point's neighbours among {len(features):,}")

    tsne = TSNE(n_components=2, perplexity=perplexity, max_iter=max_iter, init="pca", random_state=seed,
                verbose=2)
    report(0.0, f"t-SNE: starting on {len(features):,} points")
    _ThreadStdout.route(read)
    try:
        coords = tsne.fit_transform(features)
    finally:
        _ThreadStdout.unroute()
    report(1.0, f"t-SNE: done after {tsne.n_iter_ + 1:,} iterations")
    return coords.astype(np.float32)


def embedding_map(model, x, y, method: str = "pca", size: int | None = None, seed: int = 0, on_progress=None,
                  stop=None, features=None) -> EmbeddingMap:
    """The split (x uint8 images, y labels) as the network sees it: its penultimate-layer features projected
    to 2-D by PCA (all points, at once) or t-SNE (`size` points, stratified by class; TSNE_SIZE by default).
    `features` = penultimate_features(model, x) if already computed. on_progress/stop: see project_tsne."""
    if method not in ("pca", "tsne"):
        raise CnnError(f"the map's method must be 'pca' or 't-SNE' ('tsne'), got {method!r}")
    y = np.asarray(y, dtype=np.int64)
    features, probabilities = penultimate_features(model, x) if features is None else features
    if len(features) != len(y):
        raise CnnError(f"{len(features):,} images but {len(y):,} labels")
    keep = np.arange(len(y)) if method == "pca" else stratified_sample(y, size or TSNE_SIZE, seed)
    start = time.perf_counter()
    if method == "pca":
        coords, explained = project_pca(features)
    else:
        coords, explained = project_tsne(features[keep], seed, on_progress=on_progress, stop=stop), None
    probabilities = probabilities[keep]
    return EmbeddingMap(method, coords, keep, y[keep], probabilities.argmax(axis=1).astype(np.int64),
                        probabilities.max(axis=1), explained, time.perf_counter() - start)


@dataclass(frozen=True)
class TsneSnapshot:
    """A consistent copy of a TsneJob's state."""

    state: str  # 'running', 'done', 'stopped' or 'failed'
    fraction: float  # 0…1
    message: str  # for people
    result: EmbeddingMap | None  # once done

    @property
    def running(self) -> bool:
        return self.state == "running"


class TsneJob:
    """embedding_map(method='tsne') in a daemon thread; snapshot() for a page to poll, stop() to end it at
    t-SNE's next report. The features are computed in the caller's thread (TensorFlow, fast)."""

    def __init__(self, model, x, y, size: int | None = None, seed: int = 0):
        self._features = penultimate_features(model, x)
        self.y, self.size, self.seed = np.asarray(y), size, seed
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._state, self._fraction, self._message, self._result = "running", 0.0, "starting t-SNE…", None
        self._thread = threading.Thread(target=self._run, name="cnn-tsne", daemon=True)

    def start(self) -> "TsneJob":
        import sklearn.manifold  # noqa: F401 — imported here, not first in the worker (see TrainingJob.start)

        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def snapshot(self) -> TsneSnapshot:
        with self._lock:
            return TsneSnapshot(self._state, self._fraction, self._message, self._result)

    def _progress(self, fraction: float, message: str) -> None:
        with self._lock:
            self._fraction, self._message = fraction, message

    def _run(self) -> None:
        try:
            result = embedding_map(None, None, self.y, "tsne", self.size, self.seed, on_progress=self._progress,
                                   stop=self._stop, features=self._features)
        except TsneStopped as exc:
            state, message, result = "stopped", str(exc), None
        except Exception as exc:  # noqa: BLE001 — the page gets a message; the log gets the traceback
            import traceback

            traceback.print_exc()
            state, message, result = "failed", f"t-SNE failed: {type(exc).__name__}: {exc}", None
        else:
            state, message = "done", f"t-SNE of {len(result.indices):,} points in {result.seconds:.0f} s"
        with self._lock:
            self._state, self._message, self._result = state, message, result
            self._fraction = 1.0 if state == "done" else self._fraction


# ---------------------------------------------------------------------------
# A film of training: each epoch, the first conv layer's kernels, a probe image's conv activations and every
# weighted layer's weight histogram — no extra pass over the data (the probe is one image, one forward call)
# ---------------------------------------------------------------------------

FILM_BINS = 41  # histogram bins per layer (odd: one bin is centred on 0)
FILM_RANGE = 6.0  # histogram edges span ±FILM_RANGE × the layer's largest starting weight: measured on
#                   mnist-default, 20 epochs took the largest weight from 1.8× (output) to 7× (conv2) its start;
#                   weights beyond the edges are counted in the end bins (and in `outside`)
FILM_MAX_BYTES = 200_000_000  # a film.npz larger than this is refused unread


@dataclass(frozen=True)
class Film:
    """Frames recorded during training: frame 0 holds the starting weights, frame t the weights after epoch t."""

    epochs: np.ndarray  # (T,) the epoch each frame ends: 0 (before training), 1, 2, …
    batches: np.ndarray  # (T,) batches trained in that epoch (fewer than a full epoch if stopped)
    kernel_layer: str  # the first conv layer ('' for a model without one)
    kernels: np.ndarray  # (T, F, K, K, Cin) float32: its kernels at each frame, exactly
    probe: np.ndarray  # (H, W, C) uint8: the fixed image whose activations are filmed (empty if none)
    probe_label: int  # its class (−1 if unknown)
    activations: dict  # conv layer name → (T, h, w, F) float16: its output on the probe at each frame
    histograms: dict  # weighted layer name → (T, FILM_BINS) int32: counts of its kernel's weights per bin
    edges: dict  # weighted layer name → (FILM_BINS + 1,) float32: the fixed bin edges
    outside: dict  # weighted layer name → (T,) int32: weights beyond the edges (counted in the end bins)

    def __len__(self) -> int:
        return len(self.epochs)

    def to_bytes(self) -> bytes:
        """The film as a compressed .npz (what the model folder's film.npz holds)."""
        arrays = {"epochs": self.epochs, "batches": self.batches, "kernel_layer": np.array(self.kernel_layer),
                  "kernels": self.kernels, "probe": self.probe, "probe_label": np.array(self.probe_label)}
        for prefix, table in (("act", self.activations), ("hist", self.histograms), ("edges", self.edges),
                              ("outside", self.outside)):
            arrays.update({f"{prefix}__{name}": value for name, value in table.items()})
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        return buffer.getvalue()


def film_from_bytes(data: bytes, where: str = "film.npz") -> Film:
    """A Film read from .npz bytes, every array checked (the file may come from anywhere); RegistryError
    naming what is wrong otherwise."""
    if len(data) > FILM_MAX_BYTES:
        raise RegistryError(f"{where} is {len(data) / 1e6:.0f} MB; the limit is {FILM_MAX_BYTES / 1e6:.0f} MB")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
        tables = {prefix: {k.split("__", 1)[1]: v for k, v in arrays.items() if k.startswith(prefix + "__")}
                  for prefix in ("act", "hist", "edges", "outside")}
        film = Film(arrays["epochs"].astype(np.int64), arrays["batches"].astype(np.int64),
                    str(arrays["kernel_layer"]), arrays["kernels"].astype(np.float32), arrays["probe"].astype(np.uint8),
                    int(arrays["probe_label"]), tables["act"], tables["hist"], tables["edges"], tables["outside"])
    except Exception as exc:  # noqa: BLE001 — a broken or foreign file: zip, npy and key errors alike
        raise RegistryError(f"{where} cannot be read ({type(exc).__name__}: {exc}); retrain the model to "
                            "record a new film") from None
    frames = len(film.epochs)
    problems = [name for name, value in [("batches", film.batches), ("kernels", film.kernels),
                                         *film.activations.items(), *film.histograms.items(), *film.outside.items()]
                if len(value) != frames]
    problems += [name for name, value in film.edges.items()
                 if value.shape != (FILM_BINS + 1,) or name not in film.histograms]
    if frames == 0 or film.epochs.ndim != 1 or problems:
        raise RegistryError(f"{where} is inconsistent ({frames} frames; wrong sizes: "
                            f"{', '.join(problems) or 'none'}); retrain the model to record a new film")
    return film


def load_film(info) -> Film | None:
    """The film saved with a model (registry ModelInfo), or None if it was trained without one."""
    path = info.path / "film.npz"
    if not path.is_file():
        return None
    if path.stat().st_size > FILM_MAX_BYTES:
        raise RegistryError(f"film.npz of {info.name!r} is {path.stat().st_size / 1e6:.0f} MB; the limit is "
                            f"{FILM_MAX_BYTES / 1e6:.0f} MB")
    return film_from_bytes(path.read_bytes(), f"film.npz of {info.name!r}")


def film_probe(dataset) -> tuple[np.ndarray | None, int]:
    """(image, label) the film watches: the first test image (the first training image if there is no test
    split), or (None, −1) when the dataset has no image in memory."""
    for x, y in ((dataset.x_test, dataset.y_test), (dataset.x_train, dataset.y_train)):
        if x is not None and len(x):
            return np.asarray(x[0]), int(y[0])
    return None, -1


def _film_recorder_class():
    """FilmRecorder, made on first use so that importing cnn.explain.features does not import Keras."""
    import keras

    class FilmRecorder(keras.callbacks.Callback):
        """A Keras callback filming training: a frame before the first epoch and after every epoch (see Film).
        Costs per epoch: reading the weights, histograms of them, one forward call on one probe image.
        Thread-safe: film() may be called from another thread while training runs."""

        def __init__(self, probe=None, probe_label: int = -1):
            super().__init__()
            self.probe = None if probe is None else np.asarray(probe, np.uint8)
            self.probe_label = int(probe_label)
            self._lock = threading.Lock()
            self._frames: list[dict] = []
            self._film: Film | None = None  # film() of the frames so far, made once per new frame

        def on_train_begin(self, logs=None):
            from cnn.analysis.inference import conv_layers

            model = self.model
            self.convs = conv_layers(model)
            self.weighted = [layer.name for layer in model.layers if hasattr(layer, "kernel")]
            # Fixed edges per layer, from its starting weights: frames stay comparable.
            self.edges = {}
            for name in self.weighted:
                top = float(np.abs(model.get_layer(name).kernel.numpy()).max()) * FILM_RANGE or 1.0
                self.edges[name] = np.linspace(-top, top, FILM_BINS + 1).astype(np.float32)
            self.probe_model = None
            if self.convs and self.probe is not None and self.probe.shape == tuple(model.input_shape[1:]):
                self.probe_model = keras.Model(model.inputs[0], [model.get_layer(n).output for n in self.convs])
            with self._lock:
                self._frames, self._film = [], None
            self.batches = 0
            self._record(0)

        def on_epoch_begin(self, epoch, logs=None):
            self.batches = 0

        def on_train_batch_end(self, batch, logs=None):
            self.batches += 1

        def on_epoch_end(self, epoch, logs=None):
            self._record(epoch + 1)

        def _record(self, epoch: int) -> None:
            model = self.model
            frame = {"epoch": epoch, "batches": self.batches, "hist": {}, "outside": {}, "act": {}}
            if self.convs:
                frame["kernels"] = np.transpose(model.get_layer(self.convs[0]).kernel.numpy(), (3, 0, 1, 2))
            for name in self.weighted:
                weights, edges = model.get_layer(name).kernel.numpy().ravel(), self.edges[name]
                frame["outside"][name] = int(np.count_nonzero(np.abs(weights) > edges[-1]))
                frame["hist"][name] = np.histogram(np.clip(weights, edges[0], edges[-1]), edges)[0].astype(np.int32)
            if self.probe_model is not None:
                outs = self.probe_model(self.probe[None].astype(np.float32), training=False)
                outs = outs if isinstance(outs, (list, tuple)) else [outs]
                frame["act"] = {n: np.asarray(o)[0].astype(np.float16) for n, o in zip(self.convs, outs)}
            with self._lock:
                self._frames.append(frame)

        def __len__(self) -> int:
            with self._lock:
                return len(self._frames)

        def film(self) -> Film | None:
            """The frames recorded so far as a Film (None before training starts)."""
            with self._lock:
                frames = list(self._frames)
                if self._film is not None and len(self._film) == len(frames):
                    return self._film
            if not frames:
                return None
            kernels = np.stack([f["kernels"] for f in frames]) if "kernels" in frames[0] else np.zeros((len(frames), 0))
            probe = self.probe if self.probe_model is not None else np.zeros((0,), np.uint8)
            film = Film(np.array([f["epoch"] for f in frames]), np.array([f["batches"] for f in frames]),
                        self.convs[0] if self.convs else "", kernels, probe, self.probe_label,
                        {n: np.stack([f["act"][n] for f in frames]) for n in frames[0]["act"]},
                        {n: np.stack([f["hist"][n] for f in frames]) for n in self.weighted},
                        dict(self.edges),
                        {n: np.array([f["outside"][n] for f in frames], np.int32) for n in self.weighted})
            with self._lock:
                if len(self._frames) == len(frames):
                    self._film = film
            return film

        def to_bytes(self) -> bytes:
            film = self.film()
            if film is None:
                raise CnnError("the film has no frames: training never started")
            return film.to_bytes()

    return FilmRecorder


def __getattr__(name):
    if name == "FilmRecorder":
        globals()["FilmRecorder"] = cls = _film_recorder_class()
        return cls
    raise AttributeError(f"module 'cnn.explain.features' has no attribute {name!r}")


# ---------------------------------------------------------------------------
# The hierarchy: the Learn page's walk from the first to the last conv layer, the lesson's words checked
# ---------------------------------------------------------------------------

ORIENTED = 0.5  # an image whose structure-tensor coherence reaches this is called oriented (stripes, edges)


def gray(images) -> np.ndarray:
    """(N, H, W) float64: the channel mean of (N, H, W, C) images."""
    return np.asarray(images, np.float64).mean(axis=-1)


def coherence(images) -> np.ndarray:
    """(N,) how much each image's gradients share one orientation, 0…1 (the structure tensor's
    (λ1−λ2)/(λ1+λ2) over the whole image): 1 for parallel stripes or a straight edge, near 0 for noise,
    blobs or crossing strokes; 0 for a flat image."""
    from scipy import ndimage

    g = gray(images)
    gx, gy = ndimage.sobel(g, axis=2), ndimage.sobel(g, axis=1)
    jxx, jyy, jxy = (gx * gx).sum(axis=(1, 2)), (gy * gy).sum(axis=(1, 2)), (gx * gy).sum(axis=(1, 2))
    return np.sqrt((jxx - jyy) ** 2 + 4 * jxy ** 2) / np.maximum(jxx + jyy, 1e-12)


def spatial_frequency(images) -> np.ndarray:
    """(N,) each image's power-weighted mean spatial frequency in cycles per pixel (0 … 0.71): fine stripes
    score high, broad shapes low; NaN for a flat image."""
    g = gray(images)
    g = g - g.mean(axis=(1, 2), keepdims=True)
    h, w = g.shape[1:]
    power = np.abs(np.fft.fft2(g * np.outer(np.hanning(h), np.hanning(w)))) ** 2  # windowed: no edge artefacts
    radius = np.hypot(*np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij"))
    total = power.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 1e-12, (power * radius).sum(axis=(1, 2)) / total, np.nan)


def contrast_share(x, patches: TopPatches) -> np.ndarray:
    """(F, k) the share of each top image's contrast — |pixel − the image's median|, i.e. a digit's ink —
    that lies inside its patch: how much of the object one value of the layer sees at its strongest."""
    images = gray(np.asarray(x)[patches.images.ravel()])  # (F·k, H, W)
    ink = np.abs(images - np.median(images, axis=(1, 2), keepdims=True))
    inside = np.zeros_like(ink, dtype=bool)
    for i, (top, left, h, w) in enumerate(patches.boxes.reshape(-1, 4)):
        inside[i, max(top, 0):max(top + h, 0), max(left, 0):max(left + w, 0)] = True
    share = (ink * inside).sum(axis=(1, 2)) / np.maximum(ink.sum(axis=(1, 2)), 1e-12)
    return share.reshape(patches.images.shape)


def likeness(images, means) -> np.ndarray:
    """(N,) how much each image looks like a class: its largest Pearson correlation with any of `means`, the
    average real image of each class (−1 … 1; a real digit scores high against its own class's average)."""
    a = gray(images).reshape(len(images), -1)
    b = gray(means[..., None] if means.ndim == 3 else means).reshape(len(means), -1)
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(a, axis=1)[:, None] * np.linalg.norm(b, axis=1)[None, :]
    corr = np.where(norms > 1e-12, a @ b.T / np.maximum(norms, 1e-12), 0.0)  # a flat image resembles nothing
    return corr.max(axis=1), corr


@dataclass
class LayerView:
    """One conv layer on the walk: what its filters look for, what excites them, and the measures."""

    name: str  # the conv layer's name
    depth: int  # 1 = the first conv layer
    field: ReceptiveField  # what one of its values sees
    maximised: Maximised  # the input each filter wants most
    patches: TopPatches  # the real patches that excite each filter most
    coherence: np.ndarray  # (F,) orientation of each filter's maximising image (see coherence())
    frequency: np.ndarray  # (F,) its spatial frequency, cycles per pixel
    likeness: np.ndarray  # (F,) how much it looks like the average real image of some class (see likeness())
    confidence: np.ndarray  # (F,) the model's top-class probability on it (compare: baseline on noise)
    ink_share: np.ndarray  # (F,) mean over its top patches: share of the image's ink the patch holds


@dataclass(frozen=True)
class Check:
    """One claim of the lesson, measured on this model."""

    claim: str  # the lesson's words
    measure: str  # what was measured, in plain words
    values: dict  # what was found: label → number (per layer, and the baselines)
    holds: bool | None  # True/False: what the numbers show for this model; None: they cannot tell
    verdict: str  # one or two sentences with the numbers


@dataclass
class Hierarchy:
    layers: list  # LayerView, first conv layer to last
    classes: Maximised  # the input each output class wants most
    class_likeness: np.ndarray  # (classes, classes) correlation of class image i with class j's average image
    baseline: dict  # the same measures on the starting noise and on real images, for comparison
    checks: list  # Check: the lesson's words against this model

    @property
    def class_match(self) -> np.ndarray:
        """(classes,) the class whose average real image each class's favourite image resembles most."""
        return self.class_likeness.argmax(axis=1)


def hierarchy(model, x, y, k: int = 9, ascent: Ascent | None = None, maximised: dict | None = None,
              patches: dict | None = None, classes: Maximised | None = None) -> Hierarchy:
    """Walk the model from its first to its last conv layer: each layer's receptive field, the images that
    excite its filters most (maximise) and its top real patches (top_patches over x), measured; then the
    lesson's "edges → parts → objects" checked against those measures (y: x's labels, for the class averages).
    Pass results already computed (maximised: layer → Maximised, patches: layer → TopPatches, classes) to
    reuse them."""
    from cnn.analysis.inference import predict_proba

    names = _conv_names(model)
    if not names:
        raise CnnError("this model has no conv layer, so there is no hierarchy of filters to walk")
    x, y = np.asarray(x), np.asarray(y, dtype=np.int64)
    maximised = dict(maximised or {})
    for name in names:
        if name not in maximised:
            maximised[name] = maximise(model, name, ascent=ascent)
    patches = patches if patches is not None and all(n in patches for n in names) else top_patches(model, x, k)
    classes = classes or maximise(model, "output", ascent=ascent)
    fields = model_fields(model)
    # The average real image of each class: what "looks like a digit" is measured against.
    num_classes = classes.images.shape[0]
    means = np.stack([gray(x[y == c]).mean(axis=0) if np.any(y == c) else np.zeros(x.shape[1:3])
                      for c in range(num_classes)])
    views = []
    for depth, name in enumerate(names, start=1):
        images = maximised[name].images
        views.append(LayerView(name, depth, fields[name], maximised[name], patches[name], coherence(images),
                               spatial_frequency(images), likeness(images, means)[0],
                               predict_proba(model, images).max(axis=1), contrast_share(x, patches[name]).mean(axis=1)))
    # Baselines: where every ascent starts (noise), and real images.
    noise = np.round(start_images(model, range(64), (ascent or Ascent()).seed) * 255)
    real = x[:1000]
    baseline = {"noise coherence": float(np.median(coherence(noise))),
                "noise likeness": float(np.median(likeness(noise, means)[0])),
                "noise confidence": float(predict_proba(model, noise).max(axis=1).mean()),
                "real coherence": float(np.median(coherence(real))),
                "real likeness": float(np.median(likeness(real, means)[0])),
                "real confidence": float(predict_proba(model, real).max(axis=1).mean())}
    class_likeness = likeness(classes.images, means)[1]
    return Hierarchy(views, classes, class_likeness, baseline, _checks(views, class_likeness, baseline))


def _checks(views: list, class_likeness: np.ndarray, baseline: dict) -> list:
    first, last = views[0], views[-1]
    several = len(views) > 1
    checks = []

    # 1. Deeper layers see more of the image: the receptive field, and the ink of real digits it covers.
    sizes = [v.field.size for v in views]
    inks = [float(v.ink_share.mean()) for v in views]
    grows = all(b > a for a, b in zip(sizes, sizes[1:])) and all(b > a for a, b in zip(inks, inks[1:]))
    steps = "; ".join(f"{v.name} sees {v.field.size}×{v.field.size} px ({v.field.share:.0%} of the image) and holds "
                      f"{ink:.0%} of the object's ink (contrast) where it fires most" for v, ink in zip(views, inks))
    checks.append(Check(
        "each layer looks at a larger part of the image than the one before",
        "receptive-field size, and the share of a real image's ink inside each filter's top patches",
        {f"{v.name} field px": v.field.size for v in views} | {f"{v.name} ink share": i for v, i in zip(views, inks)},
        grows if several else None,
        f"{steps}." + ("" if several else " With one conv layer there is no deeper layer to compare.")))

    # 2. The first layer finds edges and strokes: its filters' favourite images are stripes of one direction.
    oriented = int(np.count_nonzero(first.coherence >= ORIENTED))
    count = len(first.coherence)
    checks.append(Check(
        "the first layer responds to edges and strokes",
        f"how much each first-layer filter's favourite image runs in one direction (structure-tensor coherence; "
        f"≥ {ORIENTED} = stripes or edges)",
        {f"{first.name} oriented filters": oriented,
         f"{first.name} median coherence": float(np.median(first.coherence)),
         "noise median coherence": baseline["noise coherence"], "real median coherence": baseline["real coherence"]},
        oriented >= count / 2,
        f"{oriented} of {count} filters of {first.name} are most excited by stripes of one direction (median "
        f"coherence {np.median(first.coherence):.2f}; the starting noise scores {baseline['noise coherence']:.2f}, "
        f"real images {baseline['real coherence']:.2f})" +
        (": edges and strokes." if oriented >= count / 2 else "; most respond to something else (blobs, brightness "
                                                              "or crossings).")))

    # 3. Later layers combine them into parts: their favourites run in fewer single directions.
    if several:
        mixed = float(np.median(last.coherence)) < float(np.median(first.coherence))
        checks.append(Check(
            "later layers combine edges into larger, more complex parts",
            "how much the favourite images run in one direction, first vs last conv layer (combinations of edges "
            "— curves, corners, crossings — run in several)",
            {f"{v.name} median coherence": float(np.median(v.coherence)) for v in views}
            | {f"{v.name} median frequency": float(np.nanmedian(v.frequency)) for v in views},
            mixed,
            f"median coherence {np.median(first.coherence):.2f} in {first.name}, {np.median(last.coherence):.2f} in "
            f"{last.name}: " + ("the deeper favourites mix directions over a larger field." if mixed else
                                "the deeper favourites run in one direction as much as the first layer's; this "
                                "model does not show it.")))
    else:
        checks.append(Check("later layers combine edges into larger, more complex parts", "—", {}, None,
                            "This model has one conv layer: there is no later layer to combine its edges."))

    # 4. Whole objects at the end: do the favourite images look more like real digits with depth, and do the
    #    classes' favourites look like their own class?
    matched = int(np.count_nonzero(class_likeness.argmax(axis=1) == np.arange(len(class_likeness))))
    classes_like = float(np.median(class_likeness.max(axis=1)))
    ladder = [float(np.median(v.likeness)) for v in views] + [classes_like]
    rising = all(b > a for a, b in zip(ladder, ladder[1:]))
    holds = rising and matched >= len(class_likeness) / 2
    per_layer = ", ".join(f"{v.name} {value:.2f}" for v, value in zip(views, ladder))
    trend = "rises with depth" if rising else "does not rise steadily with depth"
    near = classes_like >= baseline["real likeness"] / 2
    verdict = (f"Resemblance to the average image of a class {trend} ({per_layer}, the class images "
               f"{classes_like:.2f}) "
               f"{'and comes' if near else 'but stays far'} {'near' if near else 'below'} that of real images "
               f"({baseline['real likeness']:.2f}; noise {baseline['noise likeness']:.2f}); {matched} of "
               f"{len(class_likeness)} class images look most like their own class (chance: 1 in "
               f"{len(class_likeness)}). ")
    verdict += ("So here the favourites grow into whole objects with depth." if holds else
                "So this model's favourite inputs do not become recognisable objects: it tells the classes apart by "
                "patterns, not by whole-object templates.")
    if baseline["noise confidence"] > 0.9:
        from cnn.core.text import probability_text

        verdict += (f" (Its confidence is no guide to what looks like an object: on grey noise it is on average "
                    f"{probability_text(baseline['noise confidence'])} sure of some class.)")
    checks.append(Check(
        "whole objects appear at the end",
        "how much the favourite images look like the average real image of some class (correlation), layer by "
        "layer up to the classes' own favourites; and whether each class's favourite looks most like its own class",
        {f"{v.name} median likeness": value for v, value in zip(views, ladder)}
        | {"classes median likeness": classes_like, "classes matched": matched,
           "real median likeness": baseline["real likeness"], "noise median likeness": baseline["noise likeness"]},
        holds, verdict))
    return checks

"""Inference on prepared inputs: probabilities, activations, Grad-CAM and saliency.

Every function takes model inputs as `prepare_image` makes them (uint8 or float, 0…255, (H, W, C) or a
batch) and runs a compiled forward pass cached per model — never `model.predict` per drawing.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np

from cnn.model.spec import TRAINING_ONLY  # the augmentation layers: identity at prediction time

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
        from cnn.core.errors import ImageError

        raise ImageError(f"input of shape {x.shape} does not fit the model, which takes {shape} images")
    return batch.astype(np.float32, copy=False), single


def predict_proba(model, x, batch_size: int = 1000) -> np.ndarray:
    """Class probabilities: (classes,) for one image, (N, classes) for a batch."""
    batch, single = as_batch(model, x)
    fn = forward_fn(model)
    out = np.concatenate([fn(batch[i:i + batch_size]).numpy() for i in range(0, len(batch), batch_size)]) \
        if len(batch) else np.zeros((0, model.output_shape[-1]), np.float32)
    return out[0] if single else out


def has_softmax_head(model) -> bool:
    """Whether the model ends in Dense(softmax), so logits = penultimate features @ W + b can be recovered."""
    head = model.layers[-1]
    return type(head).__name__ == "Dense" and getattr(head.activation, "__name__", "") == "softmax"


_FEATURES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _features_fn(model, names: tuple[str, ...], spatial_mean: bool):
    """A tf.function: images → (each named layer's output flattened to (N, D) — or, with `spatial_mean`,
    feature maps averaged to (N, channels) —, penultimate (N, D), logits (N, classes))."""
    cache = _FEATURES.setdefault(model, {})
    if (names, spatial_mean) in cache:
        return cache[names, spatial_mean]
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

    cache[names, spatial_mean] = run
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
    parts = [fn(batch[i:i + batch_size]) for i in range(0, len(batch), batch_size)]
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


def predict_images(model, images, input_shape, class_names, invert="auto", recipe=None,
                   calibration=None) -> list[dict]:
    """Top class and all probabilities for each (name, image) pair, in order, in one batched pass.

    `image` is anything prepare_image accepts (path, bytes, PIL image, array). A file that cannot be read
    gets a row with its `error` message and no prediction, so one bad file never hides the others.
    With a cnn.analysis.calibration.Calibration the probabilities are calibrated and each row also has
    raw_probabilities, raw_confidence, temperature, ood_score, ood_threshold and unusual (score > threshold);
    without one those are the raw softmax / None, and `calibrated` says which.
    """
    from cnn.analysis.calibration import score_batch
    from cnn.core.errors import CnnError
    from cnn.data.preprocess import prepare_image

    rows, prepared = [], []
    for name, image in images:
        try:
            prepared.append((len(rows), prepare_image(image, input_shape, invert=invert, recipe=recipe)))
            rows.append({"file": name, "error": None})
        except CnnError as exc:
            rows.append({"file": name, "error": str(exc)})
    if prepared:
        scored = score_batch(model, calibration, np.stack([x for _, x in prepared]))
        for j, (i, _) in enumerate(prepared):
            probs, raw = scored.probabilities[j], scored.raw_probabilities[j]
            top = int(probs.argmax())
            rows[i].update(prediction=str(class_names[top]), class_index=top, confidence=float(probs[top]),
                           probabilities={str(n): float(p) for n, p in zip(class_names, probs)},
                           calibrated=calibration is not None, temperature=float(scored.temperature),
                           raw_confidence=float(raw[top]),
                           raw_probabilities={str(n): float(p) for n, p in zip(class_names, raw)},
                           ood_score=None if scored.scores is None else float(scored.scores[j]),
                           ood_threshold=scored.threshold,
                           unusual=None if scored.flagged is None else bool(scored.flagged[j]))
    return rows


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


_EXPLAIN: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _explainer(model, layer_name: str):
    """A tf.function: (images, class index or −1) → probabilities, every layer's output, Grad-CAM for
    `layer_name`, saliency — from ONE forward pass of a multi-output model and one backward pass."""
    cache = _EXPLAIN.setdefault(model, {})
    if layer_name in cache:
        return cache[layer_name]
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

    cache[layer_name] = (explain, names)
    return cache[layer_name]


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
    from cnn.data.preprocess import transform_image

    if kind not in SWEEPS:
        raise ValueError(f"sweep kind must be one of {', '.join(SWEEPS)}, got {kind!r}")
    values = SWEEPS[kind][0] if values is None else np.asarray(values)
    x = np.asarray(x)
    variants = np.stack([transform_image(x, **{kind: v}) for v in values])
    return values, predict_proba(model, variants)


# ---------------------------------------------------------------------------
# Learning: one gradient-descent step on one image, on a private copy of the model
# ---------------------------------------------------------------------------

# The rates the Learn page offers (and tries, to suggest one): from a nudge to an overshoot.
LEARNING_RATES = (0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)


@dataclass(frozen=True)
class RateTrial:
    """The same one-image step taken at another learning rate."""

    rate: float
    loss: float  # this image's loss after the step
    others_accuracy: float | None  # accuracy on the held-out images after the step (None without them)


@dataclass
class LearningStep:
    layer: str  # the conv layer whose kernel is shown
    label: int  # the label the step learns towards
    learning_rate: float  # the step's size: w ← w − learning_rate·∂loss/∂w
    loss_before: float  # cross-entropy −log p(label) before the step
    loss_after: float  # … and after it
    kernel_before: np.ndarray  # (K, K, Cin, F)
    gradient: np.ndarray  # ∂loss/∂kernel, same shape
    kernel_after: np.ndarray  # kernel_before − learning_rate × gradient
    probabilities_before: np.ndarray
    probabilities_after: np.ndarray
    step_norm: float  # ‖learning_rate·∂loss/∂w‖ over every trainable weight
    weight_norm: float  # ‖w‖ over every trainable weight before the step
    weight_count: int  # how many trainable weights the step changed
    others_before: float | None  # accuracy on the held-out images before the step
    others_after: float | None  # … and after it
    trials: tuple  # RateTrial for every rate in LEARNING_RATES (and the chosen one)

    @property
    def kernel_change(self) -> float:
        """The largest change of any weight in the shown kernel."""
        return float(np.abs(self.kernel_after - self.kernel_before).max())

    def filter_change(self, index: int) -> np.ndarray:
        """−learning_rate·gradient for filter `index` of the shown kernel (its first input channel): (K, K)."""
        return (self.kernel_after - self.kernel_before)[..., 0, index]

    @property
    def overshot(self) -> bool:
        """True when the step raised the loss it was meant to lower."""
        return self.loss_after > self.loss_before


def runner_up(probabilities) -> int:
    """The second most probable class: a label the model finds plausible but does not predict."""
    return int(np.argsort(-np.asarray(probabilities), kind="stable")[1])


def suggest_rate(trials, loss_before: float, others_before: float | None, tolerance: float = 0.01) -> float:
    """The largest rate whose step lowers this image's loss without costing the held-out images more than
    `tolerance` of accuracy — the biggest step that helps here and harms nothing else; else the smallest."""
    good = [t.rate for t in trials if t.loss < loss_before and
            (others_before is None or t.others_accuracy is None or t.others_accuracy >= others_before - tolerance)]
    return max(good) if good else min(t.rate for t in trials)


def learning_step(model, x, label: int, learning_rate: float | None = None, layer_name: str | None = None,
                  others=None) -> LearningStep:
    """Plain SGD on every weight for one image and `label` (w ← w − lr·∂loss/∂w), on a copy of the model
    (the shared model is never changed). The gradient is computed once and the step tried at every rate of
    LEARNING_RATES; `others` = (images, labels) held out to show what the step does to the rest.
    `learning_rate` None takes suggest_rate's choice."""
    import tensorflow as tf

    batch, _ = as_batch(model, x)
    layer_name = layer_name or (conv_layers(model) or [None])[0]
    if layer_name is None:
        raise ValueError("this model has no Conv2D layer")
    copy = type(model).from_config(model.get_config())
    copy.set_weights(model.get_weights())
    target = tf.constant([int(label)])
    variables = copy.trainable_variables
    # One backward pass: ∂loss/∂w for every trainable weight.
    with tf.GradientTape() as tape:
        probs_before = copy(batch, training=False)
        loss = tf.keras.losses.sparse_categorical_crossentropy(target, probs_before)[0]
    grads = [np.zeros(v.shape, np.float32) if g is None else g.numpy()
             for v, g in zip(variables, tape.gradient(loss, variables))]
    start = [v.numpy() for v in variables]
    index = next(i for i, v in enumerate(variables) if v is copy.get_layer(layer_name).kernel)
    if others is not None:
        others_x, others_y = as_batch(model, others[0])[0], np.asarray(others[1])

    def step(rate: float):
        """(probabilities, loss, held-out accuracy) after w ← w − rate·g from the starting weights."""
        for v, w, g in zip(variables, start, grads):
            v.assign(w - rate * g)
        probs = copy(batch, training=False)
        after = float(tf.keras.losses.sparse_categorical_crossentropy(target, probs)[0])
        accuracy = None if others is None else \
            float(np.mean(np.asarray(copy(others_x, training=False)).argmax(axis=1) == others_y))
        return np.asarray(probs)[0], after, accuracy

    others_before = None if others is None else \
        float(np.mean(np.asarray(copy(others_x, training=False)).argmax(axis=1) == others_y))
    trials = {rate: step(rate) for rate in LEARNING_RATES}
    table = tuple(RateTrial(rate, loss_after, acc) for rate, (_, loss_after, acc) in trials.items())
    rate = suggest_rate(table, float(loss), others_before) if learning_rate is None else float(learning_rate)
    probs_after, loss_after, others_after = trials[rate] if rate in trials else step(rate)
    if rate not in trials:
        table = tuple(sorted((*table, RateTrial(rate, loss_after, others_after)), key=lambda t: t.rate))
    flat = np.concatenate([g.ravel() for g in grads])
    return LearningStep(layer_name, int(label), rate, float(loss), loss_after, start[index].copy(),
                        grads[index], start[index] - rate * grads[index], probs_before.numpy()[0], probs_after,
                        float(rate * np.linalg.norm(flat)),
                        float(np.linalg.norm(np.concatenate([w.ravel() for w in start]))),
                        sum(int(w.size) for w in start), others_before, others_after, table)

"""Learning: one gradient-descent step on one image, on a private copy of the model (the Learn page), with
the rates it offers and tries, to suggest one.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cnn.analysis.inference import as_batch, conv_layers
from cnn.core.compiled import per_model

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


@per_model
def lesson_functions(model):
    """The lesson's compiled functions for `model`, built once per model: (copy, gradient, forward).

    `copy` has the model's architecture with every layer trainable (the lesson steps every weight, those a
    transfer training kept frozen too) and is never given weights: both functions are stateless calls that
    take the weights as arguments, so a step never changes the shared model or the copy, and visitors
    stepping the same model at once do not meet."""
    import tensorflow as tf

    copy = type(model).from_config(model.get_config())
    for layer in copy.layers:
        layer.trainable = True

    @tf.function(reduce_retracing=True)
    def gradient(trainable, non_trainable, batch, target):
        """(probabilities, loss, ∂loss/∂w for every trainable weight) for one image."""
        with tf.GradientTape() as tape:
            tape.watch(trainable)
            probs, _ = copy.stateless_call(trainable, non_trainable, batch, training=False)
            loss = tf.keras.losses.sparse_categorical_crossentropy(target, probs)[0]
        return probs, loss, tape.gradient(loss, trainable)

    @tf.function(reduce_retracing=True)
    def forward(trainable, gradients, rate, non_trainable, x, target):
        """(probabilities for `x`, the first image's loss) after the step w ← w − rate·g from `trainable`."""
        stepped = [w - rate * g for w, g in zip(trainable, gradients)]
        probs, _ = copy.stateless_call(stepped, non_trainable, x, training=False)
        # The loss on the whole batch, then the first row: Keras computes it from the softmax's logits,
        # which a slice of the probabilities would lose (a confident wrong answer's loss is not capped at 16).
        loss = tf.keras.losses.sparse_categorical_crossentropy(tf.fill(tf.shape(probs)[:1], target[0]), probs)[0]
        return probs, loss

    return copy, gradient, forward


def learning_step(model, x, label: int, learning_rate: float | None = None, layer_name: str | None = None,
                  others=None) -> LearningStep:
    """Plain SGD on every weight for one image and `label` (w ← w − lr·∂loss/∂w), the shared model never
    changed. The gradient is computed once and the step tried at every rate of LEARNING_RATES; `others` =
    (images, labels) held out to show what the step does to the rest. `learning_rate` None takes
    suggest_rate's choice."""
    import tensorflow as tf

    batch, _ = as_batch(model, x)
    layer_name = layer_name or (conv_layers(model) or [None])[0]
    if layer_name is None:
        raise ValueError("this model has no Conv2D layer")
    copy, gradient, forward = lesson_functions(model)
    # The model's weights as the copy's trainable and non-trainable lists (same architecture, same order).
    values = dict(zip((id(v) for v in copy.weights), model.get_weights(), strict=True))
    start = [values[id(v)] for v in copy.trainable_variables]
    fixed = [values.get(id(v), v.value) for v in copy.non_trainable_variables]  # moving averages, seed state
    target = tf.constant([int(label)])
    # One backward pass: ∂loss/∂w for every trainable weight.
    probs_before, loss, grads = gradient(start, fixed, tf.constant(batch), target)
    grads = [np.zeros(w.shape, np.float32) if g is None else g.numpy() for w, g in zip(start, grads)]
    index = next(i for i, v in enumerate(copy.trainable_variables) if v is copy.get_layer(layer_name).kernel)
    images = tf.constant(batch if others is None else np.concatenate([batch, as_batch(model, others[0])[0]]))
    others_y = None if others is None else np.asarray(others[1])

    def accuracy(probs) -> float | None:
        return None if others is None else float(np.mean(probs[1:].argmax(axis=1) == others_y))

    def step(rate: float, gradients=grads):
        """(probabilities, loss, held-out accuracy) after w ← w − rate·g from the starting weights."""
        probs, after = forward(start, gradients, tf.constant(rate, tf.float32), fixed, images, target)
        probs = np.asarray(probs)
        return probs[0], float(after), accuracy(probs)

    # Before the step: the starting weights as they are (0·g would be NaN where g is inf).
    others_before = None if others is None else step(0.0, [np.zeros_like(g) for g in grads])[2]
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

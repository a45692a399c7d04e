"""Learning: one gradient-descent step on one image, on a private copy of the model (the Learn page), with
the rates it offers and tries, to suggest one.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cnn.analysis.inference import as_batch, conv_layers

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
    for layer in copy.layers:  # the lesson steps every weight, those a transfer training kept frozen too
        layer.trainable = True
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

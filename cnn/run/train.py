"""Training: build, compile and fit a spec on a dataset, with throttled progress reports and a clean stop.

`train()` is synchronous and runs under any tf.distribute strategy (a custom step: Keras 3's fit does not under
MultiWorkerMirroredStrategy); cnn.run.jobs runs it in a background thread for the app.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

import numpy as np

from cnn.core.errors import TrainingError
from cnn.data.datasets import Dataset
from cnn.data.splits import split_validation
from cnn.model.builder import build_model
from cnn.model.memory import SHUFFLE_BUFFER, check_memory
from cnn.model.spec import ModelSpec, TrainConfig, validate
from cnn.run.distribute import is_chief, is_multi_worker


@dataclass(frozen=True)
class Progress:
    """One report from a running fit."""

    epoch: int  # 1-based epoch in progress (or just finished, if phase == 'epoch')
    epochs: int
    batch: int  # batches done in this epoch
    batches: int  # batches per epoch
    metrics: dict  # running 'loss'/'accuracy' of this epoch; 'val_*' too when phase == 'epoch'
    learning_rate: float
    elapsed: float  # seconds since training started
    eta: float  # seconds left, estimated from the pace so far
    phase: str = "batch"  # 'batch' (mid-epoch) or 'epoch' (an epoch just ended)

    @property
    def fraction(self) -> float:
        """Share of all batches done, 0…1."""
        return min(1.0, ((self.epoch - 1) * self.batches + self.batch) / max(1, self.epochs * self.batches))

    @property
    def step(self) -> float:
        """Position on the epoch axis for curves: 0.5 = half-way through the first epoch."""
        return (self.epoch - 1) + self.batch / max(1, self.batches)


@dataclass
class TrainResult:
    model: object  # the trained keras.Model (last good weights if training failed)
    history: dict  # per-epoch lists: epoch, loss, accuracy, val_loss, val_accuracy, lr, seconds; 'batches'
    status: str  # 'completed', 'stopped' (on request) or 'failed' (e.g. NaN loss)
    message: str  # one sentence for people
    seconds: float
    chief: bool = True  # False on the non-chief workers of a multi-worker run: they do not save


def make_optimizer(config: TrainConfig, total_steps: int):
    """The optimizer with the configured learning-rate schedule."""
    import keras

    lr = config.learning_rate
    if config.lr_schedule == "cosine":
        # 10% linear warm-up from lr/10 to lr, then cosine decay to 0 at the last step.
        warmup = max(1, total_steps // 10)
        lr = keras.optimizers.schedules.CosineDecay(config.learning_rate / 10, max(1, total_steps - warmup),
                                                    warmup_target=config.learning_rate, warmup_steps=warmup)
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(lr, momentum=0.9)
    return {"adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW,
            "rmsprop": keras.optimizers.RMSprop}[config.optimizer](lr)


def make_train_data(x, y, batch_size: int, seed: int):
    """(a repeating tf.data pipeline of shuffled uint8 batches, batches per epoch).

    One iterator serves the whole fit (Keras reuses it when steps_per_epoch is given): creating a fresh
    iterator every epoch, as fit does for arrays, stalled the first batch of some epochs by ~8 s here
    (the process idle, waiting on tf.data). Images stay uint8; only the index order is shuffled.
    """
    import tensorflow as tf

    images, labels = tf.constant(x), tf.constant(y)
    steps = math.ceil(len(y) / batch_size)
    order = tf.data.Dataset.range(len(y)).shuffle(len(y), seed=seed, reshuffle_each_iteration=True)
    batches = order.batch(batch_size).map(lambda i: (tf.gather(images, i), tf.gather(labels, i)))
    return batches.repeat().prefetch(2), steps


def make_eval_data(x, y, batch_size: int = 1000):
    """Validation batches as a tf.data pipeline built once per fit."""
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size).cache().prefetch(1)


def current_learning_rate(optimizer) -> float:
    """The optimizer's learning rate at its current step (under a strategy the value is a mirrored variable)."""
    value = getattr(optimizer.learning_rate, "value", optimizer.learning_rate)
    return float(value.numpy() if hasattr(value, "numpy") else value)


def _progress_callback(on_progress, stop, epochs: int, batches: int, interval: float):
    """A Keras callback that reports at most every `interval` s, stops on request and stops on NaN."""
    import keras

    class Reporter(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.start = self.last = time.monotonic()
            self.lr_at = (None, math.nan)  # (optimizer step, learning rate there)
            self.epoch = 0
            self.good_weights = self.model.get_weights()
            self.failure = None
            self.stopped = False
            self.curve = {"step": [], "loss": [], "accuracy": []}

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch + 1
            self.epoch_start = time.monotonic()

        def report(self, batch, logs, phase):
            now = time.monotonic()
            elapsed = now - self.start
            done = (self.epoch - 1) * batches + batch
            eta = elapsed / done * (epochs * batches - done) if done else math.nan
            metrics = {k: float(v) for k, v in (logs or {}).items()}
            lr = self.learning_rate()
            report = Progress(self.epoch, epochs, batch, batches, metrics, lr, elapsed, eta, phase)
            if phase == "batch":
                self.curve["step"].append(round(report.step, 4))
                self.curve["loss"].append(metrics.get("loss", math.nan))
                self.curve["accuracy"].append(metrics.get("accuracy", math.nan))
            if on_progress is not None:
                on_progress(report)
            self.last = now

        def learning_rate(self) -> float:
            """The rate at the optimizer's current step, worked out once per step: a schedule's value is computed
            by TensorFlow ops (~5 ms), and an epoch's last batch, its report and its logs all ask at one step
            (a small set trains hundreds of short epochs)."""
            step = int(self.model.optimizer.iterations.numpy())
            if self.lr_at[0] != step:
                self.lr_at = (step, current_learning_rate(self.model.optimizer))
            return self.lr_at[1]

        def on_train_batch_end(self, batch, logs=None):
            loss = (logs or {}).get("loss")
            if loss is not None and not math.isfinite(loss):
                # Keep the last good weights: the ones from the end of the previous epoch.
                self.model.set_weights(self.good_weights)
                self.failure = (f"training stopped: the loss became {loss} at epoch {self.epoch}, batch {batch + 1}; "
                                "the model keeps its last good weights. Try a lower learning rate.")
                self.model.stop_training = True
                return
            if stop is not None and stop.is_set():
                self.stopped = True
                self.model.stop_training = True
            if time.monotonic() - self.last >= interval or batch + 1 == batches:
                self.report(batch + 1, logs, "batch")

        def on_epoch_end(self, epoch, logs=None):
            # Keras's History callback runs after this one, so these land in the history too.
            logs["seconds"] = round(time.monotonic() - self.epoch_start, 3)
            logs["lr"] = self.learning_rate()
            if self.failure is None:
                self.good_weights = self.model.get_weights()
                self.report(batches, logs, "epoch")

    return Reporter()


HEAD_LAYERS = ("Flatten", "GlobalAveragePooling2D", "GlobalMaxPooling2D", "Dense")  # where the filters end


def weighted_before_head(layers) -> list:
    """The layers with weights before the first Flatten, global pooling or Dense: the ones transfer learning
    copies. Works on Keras layers (their weights) and on a spec's layers (their `weights` flag) alike."""
    found = []
    for layer in layers:
        if type(layer).__name__ in HEAD_LAYERS:
            break
        if layer.weights:
            found.append(layer)
    return found


def check_start_from(spec) -> None:
    """Before a training is queued: TrainingError when `spec` cannot start from its `start_from` model's
    filters — its weighted layers before the Flatten must have that model's types and sizes, on the same input
    channels (what reuse_filters needs). Reads the shipped model's spec (JSON), not its weights."""
    source = spec.train.start_from
    if source == "scratch":
        return
    from cnn.model.spec import ModelSpec
    from cnn.store.registry import is_shipped, model_info

    if not is_shipped(source):
        raise TrainingError(f"{source!r} is not a model that ships with the app, so its filters cannot be reused")
    theirs = ModelSpec.from_dict(model_info(source).spec)

    def sizes(s):
        return [(type(layer).__name__, getattr(layer, "filters", None), getattr(layer, "kernel", None))
                for layer in weighted_before_head(s.layers)]

    def text(s):
        return ", ".join(f"{kind} {filters} of {kernel}×{kernel}" if filters else kind for kind, filters, kernel in sizes(s))

    if spec.input_shape[-1] != theirs.input_shape[-1]:
        raise TrainingError(f"{source} reads {theirs.input_shape[-1]}-channel images and this model "
                            f"{spec.input_shape[-1]}-channel ones: its filters cannot be reused")
    if sizes(spec) != sizes(theirs):
        raise TrainingError(f"{source}'s filters are in its layers before Flatten ({text(theirs)}); this model has "
                            f"{text(spec) or 'none'} there. Give it the same convolutions and batch norms (Your "
                            "classes does), or start from scratch")


def reuse_filters(model, source: str) -> list[str]:
    """Transfer learning: copy the weights of the shipped model `source`'s layers before its Flatten (convs and
    batch norms, in order) into `model`'s, and freeze the convs, so that only the rest learns. Returns the
    names of the layers copied; TrainingError when the layers do not match (with both shapes). The batch norms
    stay trainable: their statistics adjust to the new images."""
    from cnn.store.registry import is_shipped, load_model, model_info

    if not is_shipped(source):
        raise TrainingError(f"{source!r} is not a model that ships with the app, so its filters cannot be reused")
    donor = load_model(model_info(source))

    mine, theirs = weighted_before_head(model.layers), weighted_before_head(donor.layers)
    if len(mine) != len(theirs):
        raise TrainingError(f"{source!r} has {len(theirs)} layers with weights before its Flatten and this model "
                            f"{len(mine)}: start from {source}'s own layers to reuse its filters")
    for a, b in zip(mine, theirs):
        shapes, wanted = [tuple(w.shape) for w in a.weights], [tuple(w.shape) for w in b.weights]
        if type(a) is not type(b) or shapes != wanted:
            raise TrainingError(f"layer {a.name} ({type(a).__name__} {' '.join('×'.join(map(str, s)) for s in shapes)}) "
                                f"does not match {source}'s {b.name} ({type(b).__name__} "
                                f"{' '.join('×'.join(map(str, s)) for s in wanted)}): start from {source}'s own layers")
        a.set_weights(b.get_weights())
        if type(a).__name__ == "Conv2D":
            a.trainable = False
    return [layer.name for layer in mine]


def make_steps(model, strategy):
    """(train_step, eval_step): compiled steps that run on every replica of `strategy` and return the
    sums [loss, correct, images, stop requests] over all replicas (all workers), one all-reduce per step.

    Keras 3's `fit` cannot run under MultiWorkerMirroredStrategy ("unsupported type … PerReplica",
    keras-team/keras#20585), so every strategy, the default one included, trains through this step: the
    per-image losses are summed and divided by the global batch size (`tf.nn.compute_average_loss`), so the
    optimizer's all-reduced (summed) gradients are those of the mean loss over the whole global batch.
    """
    import keras
    import tensorflow as tf

    def replica_train(images, labels, global_size, stop_flag):
        with tf.GradientTape() as tape:
            probs = model(images, training=True)  # augmentation and dropout act here
            per_image = keras.losses.sparse_categorical_crossentropy(labels, probs)
            loss = tf.nn.compute_average_loss(per_image, global_batch_size=global_size)
            if model.losses:  # weight penalties, once per global batch
                loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
        grads = tape.gradient(loss, model.trainable_variables)
        model.optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return sums(per_image, probs, labels, stop_flag)

    def replica_eval(images, labels):
        probs = model(images, training=False)
        per_image = keras.losses.sparse_categorical_crossentropy(labels, probs)
        return sums(per_image, probs, labels, tf.constant(0.0))

    def sums(per_image, probs, labels, stop_flag):
        # [loss sum, correct, images, stop flag]: one small vector, reduced in one collective.
        correct = tf.equal(tf.argmax(probs, axis=-1), tf.cast(labels, tf.int64))
        return tf.stack([tf.reduce_sum(per_image), tf.reduce_sum(tf.cast(correct, tf.float32)),
                         tf.cast(tf.shape(labels)[0], tf.float32), stop_flag])

    @tf.function
    def train_step(iterator, global_size, stop_flag):
        # next() inside the graph, as Keras's own train_function does: no Python between batches.
        images, labels = next(iterator)
        out = strategy.run(replica_train, args=(images, labels, global_size, stop_flag))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, out, axis=None)

    @tf.function(reduce_retracing=True)
    def eval_step(images, labels):
        out = strategy.run(replica_eval, args=(images, labels))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, out, axis=None)

    return train_step, eval_step


def distribute(strategy, data):
    """`data` split across the strategy's replicas: every worker reads the same seeded pipeline and keeps its
    slice of each global batch (auto-shard policy DATA), so the replicas together see exactly the batches a
    single process would, in the same order."""
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return strategy.experimental_distribute_dataset(data.with_options(options))


def _run_epochs(model, strategy, fit_data, val_data, fit_count: int, batch_size: int, epochs: int,
                callbacks, stop) -> bool:
    """The training loop: `epochs` epochs of ceil(fit_count / batch_size) steps, driving `callbacks` (a
    keras.callbacks.CallbackList) exactly as `model.fit` does. Returns whether it stopped before the end."""
    import tensorflow as tf

    train_step, eval_step = make_steps(model, strategy)
    batches = math.ceil(fit_count / batch_size)
    iterator = iter(distribute(strategy, fit_data))  # one iterator for the whole run (see make_train_data)
    val_batches = distribute(strategy, val_data) if val_data is not None else None
    # Workers must take every decision to stop together: a request made on one of them (a callback setting
    # model.stop_training, the stop event) rides on the next step's all-reduce and stops all after that step.
    together = is_multi_worker(strategy)
    model.stop_training, agreed = False, False
    logs: dict = {}
    callbacks.on_train_begin()
    for epoch in range(epochs):
        callbacks.on_epoch_begin(epoch)
        total = np.zeros(3)  # loss sum, correct, images of this epoch so far
        for batch in range(batches):
            callbacks.on_train_batch_begin(batch)
            size = min(batch_size, fit_count - batch * batch_size)  # the last batch of an epoch is smaller
            asked = float(bool(model.stop_training) or (stop is not None and stop.is_set())) if together else 0.0
            out = train_step(iterator, tf.constant(size, tf.int64), tf.constant(asked)).numpy()
            total += out[:3]
            logs = {"loss": total[0] / total[2], "accuracy": total[1] / total[2]}
            callbacks.on_train_batch_end(batch, logs)
            # A non-finite loss is the same on every worker (it is reduced), so it stops all at once.
            agreed = out[3] > 0 or not math.isfinite(logs["loss"]) or (model.stop_training and not together)
            if agreed:
                model.stop_training = True
                break
        logs = dict(logs)
        if val_batches is not None:
            sums = sum(eval_step(images, labels).numpy() for images, labels in val_batches)
            logs.update(val_loss=sums[0] / sums[2], val_accuracy=sums[1] / sums[2])
        callbacks.on_epoch_end(epoch, logs)
        if agreed or (model.stop_training and not together):  # one process also stops on epoch-end requests
            break
    callbacks.on_train_end(logs)
    return bool(agreed)


def train(spec: ModelSpec, dataset: Dataset, config: TrainConfig | None = None, on_progress=None,
          stop=None, strategy=None, progress_interval: float = 0.25, callbacks=()) -> TrainResult:
    """Build `spec`, fit it on `dataset` and return the model with its history.

    on_progress(Progress) is called at most every `progress_interval` seconds and at each epoch end;
    `stop` (anything with is_set(), e.g. threading.Event) ends training after the current batch and
    keeps the weights; `strategy` is a tf.distribute strategy (the default one if None; see
    cnn.run.distribute.make_strategy); `callbacks` are extra Keras callbacks (e.g. a benchmark's clock), driven
    as `model.fit` drives them. Under a multi-worker strategy every worker calls train() with the same
    arguments; TrainResult.chief says which one should save.
    """
    config = config or spec.train
    spec = replace(spec, train=config)
    validate(spec)
    if tuple(dataset.input_shape) != tuple(spec.input_shape) or dataset.num_classes != spec.num_classes:
        raise TrainingError(f"the model expects {spec.input_shape} images and {spec.num_classes} classes but "
                            f"{dataset.name} has {dataset.input_shape} and {dataset.num_classes}; "
                            "adapt the spec to the dataset first")
    check_memory(spec, dataset)  # refuse before building anything: TrainingError with the numbers
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(config.seed)  # same seed + same data → same weights, shuffles and dropout

    # Data: arrays stay uint8 (N, H, W, C); folders stream (image, label) pairs and validate on the test split.
    if dataset.streamed:
        fit_count = dataset.num_train
        stream = dataset.train_stream
        if fit_count <= SHUFFLE_BUFFER:  # small: each image is read and prepared once, not once an epoch
            stream = stream.cache()
        fit_data = stream.shuffle(SHUFFLE_BUFFER, seed=config.seed).batch(config.batch_size)
        fit_data = fit_data.repeat().prefetch(tf.data.AUTOTUNE)  # one pass = one epoch of fit_count images
        val_data = make_eval_data(dataset.x_test, dataset.y_test)
    else:
        (x, y), val_data = split_validation(dataset.x_train, dataset.y_train, config.validation_split, config.seed)
        fit_count = len(y)
        if fit_count == 0:
            raise TrainingError(f"{dataset.name} has no training images left after the validation split")
        fit_data, _ = make_train_data(x, y, config.batch_size, config.seed)
        val_data = make_eval_data(*val_data) if val_data is not None else None
    if fit_count == 0:
        raise TrainingError(f"{dataset.name} has no training images")
    batches = math.ceil(fit_count / config.batch_size)

    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        model = build_model(spec)
        if config.start_from != "scratch":  # transfer learning: its first layers come from a shipped model
            reuse_filters(model, config.start_from)
        model.compile(optimizer=make_optimizer(config, batches * config.epochs),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        # Optimizer slots made now, under the strategy, not lazily inside the first distributed step.
        model.optimizer.build(model.trainable_variables)
    reporter = _progress_callback(on_progress, stop, config.epochs, batches, progress_interval)
    logbook = keras.callbacks.History()  # last, so it records what the others add to the epoch's logs
    callback_list = keras.callbacks.CallbackList([reporter, *callbacks, logbook], model=model, verbose=0,
                                                 epochs=config.epochs, steps=batches)
    start = time.monotonic()
    try:
        ended_early = _run_epochs(model, strategy, fit_data, val_data, fit_count, config.batch_size, config.epochs,
                                  callback_list, stop)
    except tf.errors.ResourceExhaustedError:
        raise TrainingError("out of memory: use a smaller batch size or fewer filters/units") from None
    except tf.errors.InvalidArgumentError as exc:  # e.g. a streamed image TensorFlow cannot decode
        raise TrainingError(f"training stopped: TensorFlow could not read the training data "
                            f"({exc.message.splitlines()[0][:160]}); check the dataset's images") from None
    seconds = time.monotonic() - start

    history = {k: [float(v) for v in values] for k, values in logbook.history.items()}
    history["epoch"] = list(range(1, len(history.get("loss", [])) + 1))
    history["batches"] = reporter.curve
    chief = is_chief(strategy)
    if reporter.failure:
        return TrainResult(model, history, "failed", reporter.failure, seconds, chief)
    if reporter.stopped or (ended_early and is_multi_worker(strategy)):  # a worker whose peer was asked to stop
        return TrainResult(model, history, "stopped",
                           f"stopped on request during epoch {reporter.epoch} of {config.epochs}", seconds, chief)
    return TrainResult(model, history, "completed", f"trained {config.epochs} epoch(s) in {seconds:.0f} s",
                       seconds, chief)

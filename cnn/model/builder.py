"""Build a functional keras.Model from a ModelSpec, and export the same model as a standalone script.

Both go through `keras_layers(spec)`, so the app's model and the exported script cannot drift apart.
"""
from __future__ import annotations

from cnn.core.errors import SpecError
from cnn.model.spec import LAYER_TYPES, TRAINING_ONLY, Dense, ModelSpec, TrainConfig, layer_names, validate


def keras_layers(spec: ModelSpec) -> list[tuple[str, str, dict]]:
    """(Keras class, layer name, keyword arguments) for every layer after the input, in order."""
    # Rescaling first: the model takes uint8 0…255, so data stays uint8 and drawings need no scaling.
    out = [("Rescaling", "rescale", {"scale": 1 / 255})]
    # Augmentation layers only act while training (declared once, beside Augmentation).
    out += spec.train.augmentation.keras_layers(spec.train.seed)
    # Each kind knows its own Keras layer.
    for layer, name in zip(spec.layers, layer_names(spec)):
        cls, args = layer.keras_layer(spec.train.seed)
        out.append((cls, name, args))
    out.append(("Dense", "output", {"units": spec.num_classes, "activation": "softmax"}))
    return out


def build_model(spec: ModelSpec, name: str = "cnn"):
    """A functional keras.Model (uint8-valued float input → class probabilities) with readable layer names."""
    import keras

    validate(spec)  # a SpecError with the arithmetic beats a Keras shape error
    inputs = keras.Input(shape=tuple(spec.input_shape), name="image")
    x = inputs
    for cls, layer_name, args in keras_layers(spec):
        x = getattr(keras.layers, cls)(name=layer_name, **args)(x)
    return keras.Model(inputs, x, name=name)


KERAS_LOADERS = {"mnist": "mnist", "mnist-sample": "mnist", "fashion_mnist": "fashion_mnist", "cifar10": "cifar10"}


def _optimizer_code(spec: ModelSpec, steps: str) -> list[str]:
    cfg = spec.train
    cls = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD", "rmsprop": "RMSprop"}[cfg.optimizer]
    extra = ", momentum=0.9" if cfg.optimizer == "sgd" else ""
    if cfg.lr_schedule == "cosine":
        return [f"    steps = {steps}",
                f"    learning_rate = keras.optimizers.schedules.CosineDecay(",
                f"        {cfg.learning_rate / 10!r}, decay_steps=steps - steps // 10,",
                f"        warmup_target={cfg.learning_rate!r}, warmup_steps=steps // 10)",
                f"    optimizer = keras.optimizers.{cls}(learning_rate{extra})"]
    return [f"    optimizer = keras.optimizers.{cls}(learning_rate={cfg.learning_rate!r}{extra})"]


def export_script(spec: ModelSpec, dataset: str = "mnist", model_name: str = "cnn") -> str:
    """A short standalone Keras script that rebuilds and trains the same model (for users to copy)."""
    cfg = spec.train
    lines = [
        f'"""{model_name}: a CNN exported from CNN Studio. Rebuilds and trains the same model with plain Keras."""',
        "import keras",
        "from keras import layers",
        "",
        "",
        "def build_model():",
        f"    inputs = keras.Input(shape={tuple(spec.input_shape)}, name=\"image\")",
        "    x = inputs",
    ]
    for cls, name, args in keras_layers(spec):
        arg_text = "".join(f"{k}={v!r}, " for k, v in args.items())
        lines.append(f"    x = layers.{cls}({arg_text}name={name!r})(x)")
    lines += [f"    return keras.Model(inputs, x, name={model_name!r})", "", ""]
    loader = KERAS_LOADERS.get(dataset)
    if loader:
        lines += [
            "def load_data():",
            "    # uint8 images (N, H, W, C) and integer labels; the model rescales to 0…1 itself.",
            f"    (x_train, y_train), (x_test, y_test) = keras.datasets.{loader}.load_data()",
            "    if x_train.ndim == 3:  # grayscale: add the channel axis",
            "        x_train, x_test = x_train[..., None], x_test[..., None]",
            "    return x_train, y_train.reshape(-1), x_test, y_test.reshape(-1)",
        ]
    else:
        color_mode = "grayscale" if spec.input_shape[2] == 1 else "rgb"
        lines += [
            "def load_data(folder=\"path/to/class_folders\"):",
            "    # One sub-folder per class; 20% held out for testing.",
            "    import numpy as np",
            "    train, test = keras.utils.image_dataset_from_directory(",
            f"        folder, image_size={tuple(spec.input_shape[:2])}, validation_split=0.2, subset=\"both\", seed={cfg.seed},",
            f"        color_mode={color_mode!r}, batch_size=None)",
            "    unpack = lambda ds: tuple(np.stack(a) for a in zip(*ds.as_numpy_iterator()))",
            "    (x_train, y_train), (x_test, y_test) = unpack(train), unpack(test)",
            "    return x_train.astype(\"uint8\"), y_train, x_test.astype(\"uint8\"), y_test",
        ]
    lines += [
        "",
        "",
        "if __name__ == \"__main__\":",
        f"    keras.utils.set_random_seed({cfg.seed})",
        "    x_train, y_train, x_test, y_test = load_data()",
        "    model = build_model()",
        "    model.summary()",
        *_optimizer_code(spec, f"-(-len(x_train) * {1 - cfg.validation_split!r} // {cfg.batch_size}) * {cfg.epochs}"),
        "    model.compile(optimizer=optimizer, loss=\"sparse_categorical_crossentropy\", metrics=[\"accuracy\"])",
        f"    model.fit(x_train, y_train, batch_size={cfg.batch_size}, epochs={cfg.epochs}, "
        f"validation_split={cfg.validation_split!r})",
        "    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)",
        "    print(f\"test accuracy {accuracy:.4f}, loss {loss:.4f}\")",
        "",
    ]
    return "\n".join(lines)


def spec_from_model(model, train=None) -> tuple[ModelSpec, list[tuple[object, str]], bool]:
    """Read a keras.Model back into a ModelSpec: (spec, [(keras layer, our layer name)], has_rescaling).

    Works for a plain chain of the layer kinds CNN Studio supports ending in a softmax Dense; anything
    else raises SpecError naming the first layer it cannot represent.
    """
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise SpecError("the model must have exactly one input and one output")
    shape = tuple(model.inputs[0].shape[1:])
    if len(shape) != 3 or None in shape:
        raise SpecError(f"the model's input shape {shape} is not (height, width, channels)")
    # Layers in order; a model with branches fails the numerical check in rebuild().
    layers = [l for l in model.layers if type(l).__name__ != "InputLayer"]
    rescaled, out, pairs = False, [], []
    for i, layer in enumerate(layers):
        kind = type(layer).__name__
        if kind == "Rescaling" and i == 0 and abs(float(layer.scale) - 1 / 255) < 1e-6 and not layer.offset:
            rescaled = True
            continue
        if kind in TRAINING_ONLY:
            continue  # no effect on predictions
        # The first kind that recognises the layer reads it (a kind may refuse a setting with a SpecError).
        ours = next((got for cls in LAYER_TYPES.values() if (got := cls.from_keras(layer)) is not None), None)
        if ours is None:
            raise SpecError(f"layer {layer.name!r} ({kind}) is not one CNN Studio can rebuild; supported: "
                            f"{', '.join(LAYER_TYPES)}")
        out.append(ours)
        if ours.weights:
            pairs.append(layer)
    if not out or not isinstance(out[-1], Dense) or out[-1].activation != "softmax":
        raise SpecError("the model must end in a Dense layer with softmax activation (class probabilities)")
    head = out.pop()
    spec = ModelSpec(tuple(int(v) for v in shape), head.units, out, train or TrainConfig(), preset="imported")
    validate(spec)
    names = [n for layer, n in zip(spec.layers, layer_names(spec)) if layer.weights] + ["output"]
    return spec, list(zip(pairs, names)), rescaled


def rebuild(model, train=None):
    """(our functional model with the same weights, its spec) for an outside keras.Model.

    A model without a Rescaling(1/255) first layer is taken to expect inputs in 0…1 (as keras-io's
    examples train them); the rebuilt model has the rescaling inside, so it takes 0…255 like ours.
    Checked: both give the same probabilities on random images (else SpecError).
    """
    import numpy as np

    spec, pairs, rescaled = spec_from_model(model, train)
    ours = build_model(spec, name=model.name if model.name else "cnn")
    unlike = SpecError("the model is not a simple chain of layers (branches are not supported): its rebuilt "
                       "copy does not reproduce its outputs")
    try:
        for theirs, name in pairs:
            ours.get_layer(name).set_weights(theirs.get_weights())
    except ValueError:
        raise unlike from None
    x = np.random.default_rng(0).integers(0, 256, (4, *spec.input_shape)).astype("float32")
    expected = model(x if rescaled else x / 255, training=False)
    if not np.allclose(np.asarray(ours(x, training=False)), np.asarray(expected), atol=1e-4):
        raise unlike
    return ours, spec

"""Build a functional keras.Model from a ModelSpec, and export the same model as a standalone script.

Both go through `keras_layers(spec)`, so the app's model and the exported script cannot drift apart.
"""
from __future__ import annotations

from cnn.spec import ModelSpec, kind_of, layer_names, pool_stride, validate


def keras_layers(spec: ModelSpec) -> list[tuple[str, str, dict]]:
    """(Keras class, layer name, keyword arguments) for every layer after the input, in order."""
    # Rescaling first: the model takes uint8 0…255, so data stays uint8 and drawings need no scaling.
    out = [("Rescaling", "rescale", {"scale": 1 / 255})]
    aug, seed = spec.train.augmentation, spec.train.seed
    # Augmentation layers only act while training; fill with 0 = the black background of MNIST-like data.
    if aug.shift:
        out.append(("RandomTranslation", "augment_shift",
                    {"height_factor": aug.shift, "width_factor": aug.shift, "fill_mode": "constant", "seed": seed}))
    if aug.rotation:
        out.append(("RandomRotation", "augment_rotate",
                    {"factor": round(aug.rotation / 360, 6), "fill_mode": "constant", "seed": seed}))
    if aug.zoom:
        out.append(("RandomZoom", "augment_zoom", {"height_factor": aug.zoom, "fill_mode": "constant", "seed": seed}))
    for layer, name in zip(spec.layers, layer_names(spec)):
        kind = kind_of(layer)
        if kind == "Conv2D":
            args = {"filters": layer.filters, "kernel_size": layer.kernel, "strides": layer.stride,
                    "padding": layer.padding, "activation": layer.activation}
        elif kind in ("MaxPooling2D", "AveragePooling2D"):
            args = {"pool_size": layer.pool, "strides": pool_stride(layer), "padding": layer.padding}
        elif kind == "Dropout":
            args = {"rate": layer.rate, "seed": seed}
        elif kind == "Dense":
            args = {"units": layer.units, "activation": layer.activation}
        elif kind == "BatchNormalization":
            # 0.9, not Keras's 0.99: short runs on small data need moving statistics that catch up fast.
            args = {"momentum": 0.9}
        else:  # Flatten, GlobalAveragePooling2D take no arguments
            args = {}
        out.append((kind, name, args))
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

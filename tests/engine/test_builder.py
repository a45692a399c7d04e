"""The builder makes the model the spec describes; the exported script rebuilds the same model."""
import pytest

from cnn.model.builder import build_model, export_script
from cnn.model.spec import PRESETS, BatchNormalization, Conv2D, Flatten, ModelSpec, preset, validate


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_builds_with_the_validated_numbers(name):
    spec = preset(name)
    model = build_model(spec)
    analysis = validate(spec)
    assert model.count_params() == analysis.params
    assert sum(int(w.numpy().size) for w in model.trainable_weights) == analysis.trainable
    # Every listed layer (and the output) is in the model, by its stable name, with the validated shape.
    for info in analysis.layers[1:]:
        assert tuple(model.get_layer(info.name).output.shape[1:]) == info.output_shape
    assert model.input_shape == (None, *spec.input_shape)


def test_rescaling_inside_the_model_takes_uint8_values():
    import numpy as np

    model = build_model(preset("lenet5"))
    assert model.layers[1].name == "rescale"
    x = np.full((1, 28, 28, 1), 255, np.uint8)
    assert float(model.get_layer("rescale")(x.astype("float32")).numpy().max()) == pytest.approx(1.0)


def test_layer_names_are_stable_and_readable():
    spec = ModelSpec(layers=[Conv2D(4), BatchNormalization(), Conv2D(4), Flatten()])
    names = [layer.name for layer in build_model(spec).layers]
    assert names == ["image", "rescale", "conv1", "bn1", "conv2", "flatten1", "output"]


@pytest.mark.parametrize("name, dataset", [("keras-mnist-convnet", "mnist"), ("default", "mnist-sample"),
                                           ("tiny-vgg", "cifar10"), ("lenet5", "folder:digits")])
def test_exported_script_rebuilds_the_same_model(name, dataset):
    spec = preset(name)
    spec.train.augmentation.shift = 0.1
    spec.train.lr_schedule = "cosine"
    script = export_script(spec, dataset, "my-model")
    namespace = {"__name__": "exported"}
    exec(compile(script, "exported.py", "exec"), namespace)  # the script must be valid, importable Python
    rebuilt, ours = namespace["build_model"](), build_model(spec)
    assert [(l.name, type(l).__name__) for l in rebuilt.layers] == [(l.name, type(l).__name__) for l in ours.layers]
    assert rebuilt.count_params() == ours.count_params()
    assert "model.fit(" in script and "load_data()" in script

"""Every kind in LAYER_TYPES, through every place a kind is used: JSON, validate, Keras, the exported script,
reading a Keras model back, the architecture diagram, Configure's "Add a layer" list and Grad-CAM."""
from dataclasses import fields

import numpy as np
import pytest

from cnn.builder import build_model, export_script, rebuild, spec_from_model
from cnn.errors import SpecError
from cnn.figures import INPUT_COLOUR, architecture_diagram
from cnn.inference import conv_layers, explain, inner_layers, map_layers
from cnn.layers import LAYER_TYPES, Conv2D, Flatten
from cnn.spec import ModelSpec, validate

KINDS = list(LAYER_TYPES)


def spec_around(kind: str) -> ModelSpec:
    """A small valid spec with one `kind` layer at its defaults after a conv, plus the Flatten its input or
    output needs."""
    layer = LAYER_TYPES[kind]()
    before = [Conv2D(4, 3), Flatten()] if layer.needs == "flat" else [Conv2D(4, 3)]
    spec = ModelSpec(input_shape=(12, 12, 3), num_classes=3, layers=[*before, layer])
    try:
        validate(spec)
    except SpecError as exc:  # it leaves feature maps: the output layer needs a vector
        assert exc.layer == len(spec.layers) + 1, str(exc)
        spec.layers.append(Flatten())
    return spec


@pytest.fixture(scope="module", params=KINDS)
def built(request):
    """(kind, spec, its Keras model), one per kind."""
    spec = spec_around(request.param)
    return request.param, spec, build_model(spec)


def test_the_table_is_keyed_by_class_name_and_every_kind_is_complete():
    for name, cls in LAYER_TYPES.items():
        assert cls.__name__ == name
        assert cls.__doc__ and cls.__doc__.splitlines()[0].strip()  # Configure shows the first line
        assert cls.prefix and cls.colour.startswith("#") and cls.needs in ("image", "flat", None)
    prefixes = [cls.prefix for cls in LAYER_TYPES.values()]
    assert len(set(prefixes)) == len(prefixes)  # layer names must not collide


@pytest.mark.parametrize("kind", KINDS)
def test_round_trips_through_json(kind):
    spec = spec_around(kind)
    layer = spec.to_dict()["layers"][spec.layers.index(LAYER_TYPES[kind]())]
    assert layer["type"] == kind and set(layer) == {"type", *(f.name for f in fields(LAYER_TYPES[kind]))}
    assert ModelSpec.from_json(spec.to_json()) == spec


def test_builds_with_the_validated_shapes_and_parameters(built):
    kind, spec, model = built
    analysis = validate(spec)
    assert model.count_params() == analysis.params
    assert sum(int(w.numpy().size) for w in model.trainable_weights) == analysis.trainable
    for info in analysis.layers[1:]:
        assert tuple(model.get_layer(info.name).output.shape[1:]) == info.output_shape, info.name
    ours = next(info for info in analysis.layers if info.kind == kind and info.name != "output")
    keras_class = LAYER_TYPES[kind]().keras_layer(0)[0]
    assert type(model.get_layer(ours.name)).__name__ == keras_class


def test_reads_back_from_keras_and_rebuilds(built):
    kind, spec, model = built
    again, pairs, rescaled = spec_from_model(model)
    assert rescaled and again.layers == spec.layers and again.num_classes == spec.num_classes
    # The kinds that say they carry weights are exactly the Keras layers that have some.
    assert [(theirs.name, name) for theirs, name in pairs] == [(l.name, l.name) for l in model.layers if l.weights]
    ours, _ = rebuild(model)  # raises unless the copy gives the same probabilities
    assert [l.name for l in ours.layers] == [l.name for l in model.layers]


def test_exported_script_builds_the_same_model(built):
    kind, spec, model = built
    namespace = {"__name__": "exported"}
    exec(compile(export_script(spec, "mnist", "k"), "exported.py", "exec"), namespace)
    rebuilt = namespace["build_model"]()
    describe = lambda m: [(l.name, type(l).__name__, tuple(l.output.shape)) for l in m.layers]  # noqa: E731
    assert describe(rebuilt) == describe(model)
    assert rebuilt.count_params() == model.count_params()


@pytest.mark.parametrize("kind", KINDS)
def test_architecture_diagram_draws_it_in_its_colour(kind):
    analysis = validate(spec_around(kind))
    fig = architecture_diagram(analysis.layers, "t")
    colours = [shape.fillcolor for shape in fig.layout.shapes]
    assert colours[0] == INPUT_COLOUR
    assert colours[1:] == [LAYER_TYPES[info.kind].colour for info in analysis.layers[1:]]
    assert any(f"<br>{kind}" in a.text for a in fig.layout.annotations)


def test_explain_runs_on_a_model_with_it(built):
    kind, spec, model = built
    x = np.random.default_rng(0).integers(0, 256, spec.input_shape).astype(np.uint8)
    result = explain(model, x)
    names = [l.name for l in inner_layers(model)]
    assert list(result.activations) == names and result.layer_name == conv_layers(model)[-1]
    assert result.grad_cam.shape == result.saliency.shape == spec.input_shape[:2]
    # Feature-map grids only for H×W×C outputs.
    assert all(result.activations[name].ndim == 3 for name in map_layers(model))


def test_an_unsupported_keras_layer_names_every_supported_kind():
    import keras

    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.RandomFlip(), keras.layers.Flatten(),
                              keras.layers.Dense(3, activation="softmax")])
    with pytest.raises(SpecError) as err:
        spec_from_model(model)
    assert str(err.value).endswith(f"is not one CNN Studio can rebuild; supported: {', '.join(LAYER_TYPES)}")


def test_configure_offers_every_kind():
    from tests.apptest import open_app

    at = open_app("configure")
    assert at.selectbox(key="cfg_add_kind").options == KINDS

"""Every kind in LAYER_TYPES, through every place a kind is used: JSON, validate, Keras, the exported script,
reading a Keras model back, the architecture diagram, Configure's "Add a layer" list and Grad-CAM."""
from dataclasses import fields

import numpy as np
import pytest

from cnn.model.builder import build_model, export_script, rebuild, spec_from_model
from cnn.core.errors import SpecError
from cnn.figures.lessons import INPUT_COLOUR, architecture_diagram
from cnn.analysis.inference import conv_layers, explain, inner_layers, map_layers
from cnn.model.layers import LAYER_TYPES, Conv2D, Dense, Flatten, MaxPooling2D
from cnn.model.spec import ModelSpec, validate

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


def test_configure_offers_every_kind(registry):
    from tests.apptest import open_app

    at = open_app("configure")
    assert at.selectbox(key="cfg_add_kind").options == KINDS


# ---------------------------------------------------------------------------
# GlobalMaxPooling2D: the kind added by writing one class in cnn/model/layers.py
# ---------------------------------------------------------------------------

def gmp_spec() -> ModelSpec:
    from cnn.model.layers import GlobalMaxPooling2D

    return ModelSpec(layers=[Conv2D(8, 3), MaxPooling2D(2), Conv2D(16, 3), GlobalMaxPooling2D(), Dense(12)])


def test_global_max_pooling_arithmetic():
    analysis = validate(gmp_spec())
    gmp = analysis.layers[4]
    # 28 → 26 → 13 → 11: 11×11×16 becomes one max per channel.
    assert (gmp.name, gmp.kind, gmp.output_shape, gmp.params, gmp.macs) == ("gmp1", "GlobalMaxPooling2D", (16,), 0, 0)
    assert gmp.arithmetic == "one max per channel = 16"
    assert analysis.params == (9 * 8 + 8) + (9 * 8 * 16 + 16) + (16 * 12 + 12) + (12 * 10 + 10)
    with pytest.raises(SpecError) as err:
        validate(ModelSpec(layers=[Flatten(), *gmp_spec().layers[3:]]))
    assert str(err.value).startswith("layer 2 GlobalMaxPooling2D needs an image-shaped input (H×W×C) but layer 1 "
                                     "Flatten made it a flat vector of 784")


def test_global_max_pooling_in_keras_is_the_max_of_each_map():
    spec = gmp_spec()
    model = build_model(spec)
    x = np.random.default_rng(1).integers(0, 256, (28, 28, 1)).astype(np.uint8)
    result = explain(model, x)
    np.testing.assert_allclose(result.activations["gmp1"], result.activations["conv2"].max(axis=(0, 1)), rtol=1e-6)
    assert "gmp1" in [l.name for l in inner_layers(model)] and "gmp1" not in map_layers(model)
    assert result.layer_name == "conv2" and result.grad_cam.shape == (28, 28)
    assert "    x = layers.GlobalMaxPooling2D(name='gmp1')(x)" in export_script(spec).splitlines()


def test_an_outside_keras_model_with_global_max_pooling_is_rebuilt():
    import keras

    from cnn.model.layers import GlobalMaxPooling2D

    outside = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(6, 3, activation="relu"),
                                keras.layers.GlobalMaxPooling2D(), keras.layers.Dense(10, activation="softmax")])
    ours, spec = rebuild(outside)  # inputs in 0…1 (no Rescaling): ours takes 0…255 and gives the same outputs
    assert spec.layers == [Conv2D(6, 3), GlobalMaxPooling2D()] and ours.get_layer("gmp1") is not None
    keeps = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.GlobalMaxPooling2D(keepdims=True),
                              keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")])
    with pytest.raises(SpecError, match=r"\(GlobalMaxPooling2D\) is not one CNN Studio can rebuild"):
        spec_from_model(keeps)


def test_configure_adds_global_max_pooling(registry):
    from tests.apptest import open_app, tab_of

    at = open_app("configure")
    at.selectbox(key="cfg_preset").set_value("keras-mnist-convnet")
    at.button(key="cfg_load_preset").click().run()
    at.selectbox(key="cfg_add_kind").set_value("GlobalMaxPooling2D")
    at.selectbox(key="cfg_add_at").set_value(4)  # after maxpool2, before flatten1
    at.button(key="cfg_add").click().run()
    flatten = at.session_state["cfg_layer_ids"][5]
    at.button(key=f"L{flatten}_remove").click().run()
    assert not at.error
    rows = {r["layer"]: r for r in at.dataframe[0].value.to_dict("records")}
    assert rows["gmp1"]["type"] == "GlobalMaxPooling2D" and rows["gmp1"]["output shape"] == "64"
    assert tab_of(at).spec.to_dict()["layers"][4] == {"type": "GlobalMaxPooling2D"}


def test_learn_walks_a_model_with_global_max_pooling(registry):
    from cnn.store import registry as reg
    from tests.apptest import open_app, texts

    spec = gmp_spec()
    reg.save_model("gmp", build_model(spec), spec, {"epoch": [], "loss": [], "accuracy": []},
                   {"dataset": "mnist-sample", "class_names": [str(i) for i in range(10)], "epochs": 0})
    at = open_app("learn", learn_chapter=4)  # 5 · Flatten, dense, softmax
    assert not texts(at, "error")
    assert any(s.startswith("**gmp1** turns the last feature maps (11 × 11 × 16) into one vector of **16**")
               for s in texts(at, "markdown"))
    assert any("softmax probabilities: NumPy and Keras agree" in s for s in texts(at, "success"))

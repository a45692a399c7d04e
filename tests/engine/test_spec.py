"""Spec validation, JSON round trip and presets; shapes/params must equal Keras's own numbers."""
import json

import pytest

from cnn.core.errors import SpecError
from cnn.model.memory import estimate
from cnn.model.spec import (PRESETS, AveragePooling2D, BatchNormalization, Conv2D, Dense, Dropout, Flatten,
                      GlobalAveragePooling2D, MaxPooling2D, ModelSpec, check, output_size, output_size_formula,
                      preset, validate)


def test_keras_mnist_convnet_matches_keras_io():
    analysis = validate(preset("keras-mnist-convnet"))
    assert analysis.params == 34_826
    shapes = [info.output_shape for info in analysis.layers]
    assert shapes == [(28, 28, 1), (26, 26, 32), (13, 13, 32), (11, 11, 64), (5, 5, 64), (1600,), (1600,), (10,)]
    assert analysis.macs == 26 * 26 * 32 * 9 + 11 * 11 * 64 * 9 * 32 + 1600 * 10


def test_lenet5_is_the_classic_shape():
    analysis = validate(preset("lenet5"))
    assert analysis.params == 61_706
    assert [i.output_shape for i in analysis.layers][1:5] == [(28, 28, 6), (14, 14, 6), (10, 10, 16), (5, 5, 16)]


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_validates_and_survives_json(name):
    spec = preset(name)
    again = ModelSpec.from_json(spec.to_json())
    assert again == spec
    assert validate(again).params > 0


def test_impossible_kernel_names_layer_and_arithmetic():
    spec = ModelSpec(layers=[Conv2D(8, 3), MaxPooling2D(2), MaxPooling2D(4), Conv2D(8, 5), Flatten()])
    with pytest.raises(SpecError) as err:
        validate(spec)
    # 28 → 26 → 13 → 3: a 5×5 kernel no longer fits.
    assert str(err.value) == "layer 4 Conv2D: kernel 5 > input 3×3 with padding 'valid': ⌊(3−5+0)/1⌋+1 = −1"
    assert err.value.layer == 4


def test_same_padding_makes_the_same_spec_possible():
    spec = ModelSpec(layers=[Conv2D(8, 3), MaxPooling2D(2), MaxPooling2D(4), Conv2D(8, 5, padding="same"), Flatten()])
    assert validate(spec).layers[4].output_shape == (3, 3, 8)


@pytest.mark.parametrize("layers, fragment, layer", [
    ([Flatten(), Conv2D()], "layer 2 Conv2D needs an image-shaped input", 2),
    ([Conv2D(), Dense(10)], "layer 2 Dense needs a flat input but layer 1 Conv2D gives 26×26×32", 2),
    ([Conv2D()], "the output layer needs a flat input", 2),
    ([MaxPooling2D(8), MaxPooling2D(8), Flatten()],
     "layer 2 MaxPooling2D: pool 8 > input 3×3 with padding 'valid': ⌊(3−8+0)/8⌋+1 = 0", 2),
    ([Conv2D(filters=0), Flatten()], "layer 1 Conv2D: filters 0 is outside 1…1024", 1),
    ([Conv2D(padding="full"), Flatten()], "padding 'full' is not one of valid, same", 1),
    ([Flatten(), Dense(8192), Dense(8192)], "parameters; the limit is", None),
])
def test_impossible_specs(layers, fragment, layer):
    with pytest.raises(SpecError) as err:
        validate(ModelSpec(layers=layers))
    assert fragment in str(err.value)
    assert err.value.layer == layer
    assert check(ModelSpec(layers=layers)) == str(err.value)


def test_output_size_formula_both_paddings():
    assert output_size(5, 2, 2, "valid") == 2 and output_size(5, 2, 2, "same") == 3
    assert output_size_formula(28, 3, 1, "valid") == "⌊(28−3+0)/1⌋+1 = 26"
    assert output_size_formula(28, 5, 1, "same") == "⌊(28−5+4)/1⌋+1 = 28"
    assert output_size_formula(5, 2, 2, "same") == "⌊(5−2+1)/2⌋+1 = 3"


def test_from_json_rejects_unknown_things_with_names():
    good = preset("default").to_dict()
    bad_type = {**good, "layers": [{"type": "Conv3D"}]}
    with pytest.raises(SpecError, match="layer 1: unknown type 'Conv3D'"):
        ModelSpec.from_dict(bad_type)
    bad_key = {**good, "layers": [{"type": "Conv2D", "filtres": 3}]}
    with pytest.raises(SpecError, match="unknown key\\(s\\) filtres"):
        ModelSpec.from_dict(bad_key)
    bad_value = {**good, "layers": [{"type": "Dense", "units": "many"}]}
    with pytest.raises(SpecError, match="units must be a whole number, got .many."):
        ModelSpec.from_dict(bad_value)
    with pytest.raises(SpecError, match="not valid JSON"):
        ModelSpec.from_json("{nope")
    # JSON numbers like 32.0 are fine where an int is expected.
    assert ModelSpec.from_dict({**good, "layers": [{"type": "Dense", "units": 32.0}]}).layers[0].units == 32


def test_every_layer_kind_round_trips():
    spec = ModelSpec(input_shape=(32, 32, 3), num_classes=5, layers=[
        Conv2D(4, 3, 2, "same", "tanh"), BatchNormalization(), AveragePooling2D(2, 1, "same"), MaxPooling2D(3),
        Dropout(0.3), GlobalAveragePooling2D(), Dense(7, "gelu")])
    spec.train.augmentation.rotation = 10
    again = ModelSpec.from_dict(json.loads(spec.to_json()))
    assert again == spec
    shapes = [i.output_shape for i in validate(again).layers]
    assert shapes == [(32, 32, 3), (16, 16, 4), (16, 16, 4), (16, 16, 4), (5, 5, 4), (5, 5, 4), (4,), (7,), (5,)]


def test_memory_estimate_grows_with_batch():
    analysis = validate(preset("keras-mnist-convnet"))
    assert estimate(analysis, 256).total > estimate(analysis, 32).total > analysis.params * 4

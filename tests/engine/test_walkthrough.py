"""The Learn walkthrough's numbers, section by section, checked against Keras on real models."""
import keras
import numpy as np
import pytest

from cnn.teach import walkthrough
from cnn.model.builder import build_model
from cnn.model.spec import AveragePooling2D, Conv2D, Dense, Dropout, Flatten, MaxPooling2D, ModelSpec


@pytest.fixture(scope="module")
def model(trained):
    return trained[0].model


@pytest.fixture(scope="module")
def walk(model, trained):
    return walkthrough.walk(model, trained[2].x_test[3])


def test_the_walk_holds_every_layers_own_output(model, walk):
    x = walk.image[None].astype("float32")
    for name in walk.layers:
        own = keras.Model(model.inputs[0], model.get_layer(name).output)(x, training=False)[0]
        np.testing.assert_allclose(walk.outputs[name], own, atol=1e-5)
    assert walk.first_conv == "conv1" and walk.output == "output"


def test_a_model_filter_at_the_layers_own_setup_agrees_with_keras(model, walk):
    for f in range(model.get_layer("conv1").filters):
        conv = walkthrough.convolution(model, walk, "model filter", 1, "valid", f)
        assert conv.keras_difference is not None and conv.keras_difference <= walkthrough.AGREE
    other = walkthrough.convolution(model, walk, "model filter", 2, "valid", 0)
    assert other.keras_difference is None and other.layer_setup == (1, "valid")
    assert other.formulas == ("⌊(28−3+0)/2⌋+1 = 13", "⌊(28−3+0)/2⌋+1 = 13")


@pytest.mark.parametrize("kernel, stride, padding", [("vertical edges", 1, "valid"), ("blur", 2, "same"),
                                                     ("model filter", 1, "same")])
def test_every_position_explains_its_feature_value(model, walk, kernel, stride, padding):
    conv = walkthrough.convolution(model, walk, kernel, stride, padding, 1)
    for row in range(0, conv.feature.shape[0], 5):
        for col in range(0, conv.feature.shape[1], 5):
            at = conv.at(row, col)
            assert at.value == pytest.approx(conv.feature[row, col], abs=1e-9)
            assert np.nansum(at.products) + conv.bias == pytest.approx(at.value, abs=1e-9)


def test_colour_filters_sum_every_channel_like_keras():
    spec = ModelSpec(input_shape=(12, 12, 3), num_classes=3, layers=[Conv2D(4, 3, activation="linear"), Flatten()])
    model = build_model(spec)
    x = np.random.default_rng(0).integers(0, 256, (12, 12, 3), dtype=np.uint8)
    walk = walkthrough.walk(model, x)
    conv = walkthrough.convolution(model, walk, "model filter", 1, "valid", 2)
    assert conv.keras_difference <= walkthrough.AGREE and conv.slices.shape == (3, 3, 3)
    assert conv.at(4, 5).value == pytest.approx(walk.outputs["conv1"][4, 5, 2], abs=1e-5)
    assert walkthrough.pixels(x).ink == int((x.max(axis=-1) > 0).sum())


@pytest.mark.parametrize("mode, layer", [("max", MaxPooling2D), ("avg", AveragePooling2D)])
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_pooling_matches_keras(walk, model, mode, layer, padding):
    feature = walkthrough.relu(walkthrough.convolution(model, walk, "model filter", 1, "valid", 0).feature).after
    pool = walkthrough.pooling(feature, mode, 3, 2, padding)
    keras_pool = (keras.layers.MaxPooling2D if mode == "max" else keras.layers.AveragePooling2D)(3, 2, padding)
    np.testing.assert_allclose(pool.pooled, keras_pool(feature[None, ..., None])[0, ..., 0], atol=1e-6)
    assert pool.at(2, 3).value == pytest.approx(pool.pooled[2, 3])
    assert pool.fewer == pytest.approx(1 - pool.pooled.size / feature.size)


def test_dense_softmax_and_dropout(model, walk):
    unit = walkthrough.dense_unit(model, walk, 7)
    assert (unit.flatten, unit.layer, unit.inputs, unit.vector_size) == ("flatten1", "dense1", 400, 400)
    assert unit.keras_difference <= walkthrough.AGREE  # relu(value) is Keras's dense1 output
    weights, biases = model.get_layer("dense1").get_weights()
    assert unit.value == pytest.approx(float(walk.outputs["flatten1"] @ weights[:, 7] + biases[7]), abs=1e-4)
    assert np.abs(unit.products).tolist() == sorted(np.abs(unit.products).tolist(), reverse=True)
    sm = walkthrough.softmax(model, walk)
    assert sm.keras_difference <= walkthrough.AGREE and sm.probabilities.sum() == pytest.approx(1.0)
    drop = walkthrough.dropout(model, walk, 0.5, 3)
    assert drop.layer == "dense1" and drop.scale == 2.0
    assert abs(drop.sums.mean() - drop.values.sum()) < 0.05 * max(drop.values.sum(), 1)


def test_a_model_without_dense_layers_walks_too():
    spec = ModelSpec(layers=[Conv2D(4, 3), MaxPooling2D(2), Flatten(), Dropout(0.2)])
    model = build_model(spec)
    walk = walkthrough.walk(model, np.zeros((28, 28, 1), np.uint8))
    unit = walkthrough.dense_unit(model, walk, 0)
    assert unit.layer == "output" and unit.keras_difference is None  # softmax: not a ReLU to compare
    assert walkthrough.dropout(model, walk).layer == "flatten1"

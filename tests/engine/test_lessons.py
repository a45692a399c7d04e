"""cnn.teach.lessons: every hand-written NumPy operation must give the same numbers as Keras's own layer."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import itertools
import zlib

import keras
import numpy as np
import pytest

from cnn.teach import lessons
from cnn.model.spec import output_size, same_padding

TOL = 1e-5
STRIDES = (1, 2, 3)
PADDINGS = ("valid", "same")
KERNELS = (1, 2, 3, 5)
POOLS = (2, 3)
# non-square and odd sizes ('same' is asymmetric for e.g. 7 with kernel 2), plus one too small for a 5×5 kernel
CONV_SHAPES = ((7, 9), (4, 6))
# 2×5 is too small for a 3×3 'valid' window
POOL_SHAPES = ((7, 9), (5, 5), (2, 5))


def _rng(*key) -> np.random.Generator:
    """A generator seeded from the test's parameters, so every case has its own fixed data."""
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def _keras_fits(shape, window, stride, padding) -> bool:
    """Whether Keras can apply this window at all (output size ≥ 1 on both axes)."""
    return all(output_size(n, window, stride, padding) > 0 for n in shape)


def _max_diff(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b))) if a.size else 0.0


def _run(layer, x: np.ndarray) -> np.ndarray:
    """Apply a Keras layer to one (H, W, C) sample and drop the batch axis."""
    return keras.ops.convert_to_numpy(layer(x[None].astype("float32")))[0]


# ---------------------------------------------------------------------------
# Padding
# ---------------------------------------------------------------------------

def test_pad_same_puts_the_extra_zero_after():
    padded = lessons.pad_same(np.ones((4, 7)), kernel=2, stride=1)
    # total padding 1 on each axis: nothing before, one row/column after
    assert padded.shape == (5, 8)
    assert padded[:4, :7].sum() == 28 and padded[4].sum() == 0 and padded[:, 7].sum() == 0


def test_pad_same_matches_spec_and_keeps_channels():
    x = np.arange(7 * 9 * 2, dtype=float).reshape(7, 9, 2)
    padded = lessons.pad_same(x, kernel=5, stride=2, value=-np.inf)
    (top, bottom), (left, right) = same_padding(7, 5, 2), same_padding(9, 5, 2)
    assert padded.shape == (7 + top + bottom, 9 + left + right, 2)
    np.testing.assert_array_equal(padded[top:top + 7, left:left + 9], x)
    assert np.isneginf(padded[0, 0, 0]) and np.isneginf(padded[-1, -1, 1])


# ---------------------------------------------------------------------------
# Convolution against keras.layers.Conv2D
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("form", ["multi", "single"])
@pytest.mark.parametrize("shape", CONV_SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("stride", STRIDES)
def test_conv2d_matches_keras(stride, padding, kernel, shape, form):
    rng = _rng("conv", stride, padding, kernel, shape, form)
    cin, cout = (3, 4) if form == "multi" else (1, 1)
    x = rng.uniform(0, 1, shape + (cin,)).astype("float32")
    kernels = rng.uniform(-1, 1, (kernel, kernel, cin, cout)).astype("float32")
    bias = rng.uniform(-1, 1, (cout,)).astype("float32")
    # the NumPy call in the form under test: (H, W, Cin) with Keras kernels, or (H, W) with one (K, K) kernel
    if form == "multi":
        args = (x, kernels, bias)
    else:
        args = (x[:, :, 0], kernels[:, :, 0, 0], bias)

    layer = keras.layers.Conv2D(cout, kernel, strides=stride, padding=padding, use_bias=True)
    if not _keras_fits(shape, kernel, stride, padding):
        with pytest.raises(ValueError):
            layer(x[None])
        with pytest.raises(ValueError, match=rf"kernel {kernel} > input {shape[0]}×{shape[1]}"):
            lessons.conv2d(*args, stride=stride, padding=padding)
        return

    layer.build((1,) + x.shape)
    layer.set_weights([kernels, bias])
    expected = _run(layer, x)
    got = lessons.conv2d(*args, stride=stride, padding=padding)
    if form == "single":
        expected = expected[:, :, 0]
    assert got.shape == expected.shape
    assert got.shape[:2] == tuple(output_size(n, kernel, stride, padding) for n in shape)
    assert _max_diff(got, expected) <= TOL


def test_conv2d_without_bias_and_with_list_input():
    x = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    got = lessons.conv2d(x, [[1, 0], [0, -1]])
    np.testing.assert_allclose(got, [[-4, -4], [-4, -4]])


@pytest.mark.parametrize("kwargs, message", [
    (dict(stride=0), "stride must be ≥ 1, got 0"),
    (dict(stride=1.5), "stride must be an integer"),
    (dict(padding="full"), "padding must be one of 'valid', 'same', got 'full'"),
    (dict(kernels=np.ones((3, 2))), "kernel must be square"),
    (dict(kernels=np.ones((3, 3, 2, 4))), "expect 2 input channel"),
    (dict(bias=np.ones(3)), "bias must have 1 value"),
    (dict(x=np.ones((2, 2, 2, 2))), "input must have shape"),
])
def test_conv2d_rejects_bad_arguments(kwargs, message):
    args = dict(x=np.ones((5, 5)), kernels=np.ones((3, 3)), bias=None, stride=1, padding="valid") | kwargs
    with pytest.raises(ValueError, match=message):
        lessons.conv2d(**args)


@pytest.mark.parametrize("padding, stride, row, col", [
    ("valid", 1, 0, 0),
    ("valid", 2, 2, 3),
    ("same", 1, 0, 0),      # top-left border: the patch hangs over the padding
    ("same", 2, 3, 4),      # bottom-right border: the extra zero row/column after
    ("same", 1, 3, 4),
])
def test_conv_at_equals_conv2d(padding, stride, row, col):
    rng = _rng("conv_at", padding, stride, row, col)
    x, kernel = rng.uniform(0, 1, (7, 9)), rng.uniform(-1, 1, (3, 3))
    full = lessons.conv2d(x, kernel, stride=stride, padding=padding)
    step = lessons.conv_at(x, kernel, row, col, stride=stride, padding=padding)
    assert step["value"] == pytest.approx(full[row, col], abs=1e-12)
    np.testing.assert_allclose(step["products"], step["patch"] * kernel)
    assert step["patch"].shape == (3, 3)
    assert (step["top"], step["left"]) == (row * stride - (padding == "same"), col * stride - (padding == "same"))
    # every patch cell inside the input is the input value there; outside it is a padding zero
    for i, j in itertools.product(range(3), range(3)):
        r, c = step["top"] + i, step["left"] + j
        inside = 0 <= r < 7 and 0 <= c < 9
        assert step["patch"][i, j] == (x[r, c] if inside else 0.0)


def test_conv_at_border_with_same_padding_sees_zeros():
    step = lessons.conv_at(np.ones((4, 4)), np.ones((3, 3)), 0, 0, padding="same")
    assert (step["top"], step["left"]) == (-1, -1)
    assert step["value"] == 4.0 and step["patch"][0].sum() == 0 and step["patch"][:, 0].sum() == 0


@pytest.mark.parametrize("row, col", [(-1, 0), (0, 7), (5, 0), (0, 1.0)])
def test_conv_at_rejects_positions_outside_the_output(row, col):
    with pytest.raises(ValueError, match="must be an integer in 0…"):
        lessons.conv_at(np.ones((7, 9)), np.ones((3, 3)), row, col)


# ---------------------------------------------------------------------------
# ReLU
# ---------------------------------------------------------------------------

def test_relu_matches_keras_and_counts_zeroed():
    x = _rng("relu").normal(size=(6, 5, 3)).astype("float32")
    got = lessons.relu(x)
    assert _max_diff(got, _run(keras.layers.ReLU(), x)) <= TOL
    assert lessons.relu_zeroed(x) == int((x < 0).sum()) == int((got == 0).sum() - (x == 0).sum())
    assert lessons.relu_zeroed([[-1.0, 0.0, 2.0]]) == 1


# ---------------------------------------------------------------------------
# Pooling against keras.layers.MaxPooling2D / AveragePooling2D
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("shape", POOL_SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("pool", POOLS)
@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("stride", STRIDES)
def test_pool2d_matches_keras(stride, padding, pool, shape, mode):
    # negative values make a 0-padding bug visible for max pooling
    x = _rng("pool", stride, padding, pool, shape, mode).normal(size=shape + (2,)).astype("float32")
    cls = keras.layers.MaxPooling2D if mode == "max" else keras.layers.AveragePooling2D
    layer = cls(pool_size=pool, strides=stride, padding=padding)
    if not _keras_fits(shape, pool, stride, padding):
        # Keras rejects this too: max pooling raises, average pooling returns an empty map
        try:
            out = _run(layer, x)
        except Exception:
            pass
        else:
            assert out.size == 0
        for arr in (x, x[:, :, 0]):
            with pytest.raises(ValueError, match=rf"pool {pool} > input {shape[0]}×{shape[1]}"):
                lessons.pool2d(arr, pool, stride, padding, mode)
        return

    expected = _run(layer, x)
    got = lessons.pool2d(x, pool, stride, padding, mode)
    assert got.shape == expected.shape
    assert _max_diff(got, expected) <= TOL
    # the (H, W) form pools one map the same way
    assert _max_diff(lessons.pool2d(x[:, :, 0], pool, stride, padding, mode), expected[:, :, 0]) <= TOL


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("padding", PADDINGS)
def test_pool2d_stride_none_means_stride_equals_pool(padding, mode):
    x = _rng("pool-none", padding, mode).normal(size=(7, 9, 1)).astype("float32")
    cls = keras.layers.MaxPooling2D if mode == "max" else keras.layers.AveragePooling2D
    expected = _run(cls(pool_size=3, padding=padding), x)
    assert _max_diff(lessons.pool2d(x, 3, None, padding, mode), expected) <= TOL
    assert _max_diff(lessons.pool2d(x, 3, 3, padding, mode), expected) <= TOL


def test_avg_pool_same_divides_by_real_values_only():
    # 3×3 of ones pooled 2×2 'same': bottom/right windows hold 2 or 1 real values, all ones -> mean 1
    got = lessons.pool2d(np.ones((3, 3)), 2, padding="same", mode="avg")
    np.testing.assert_array_equal(got, np.ones((2, 2)))


def test_max_pool_same_pads_with_minus_infinity():
    got = lessons.pool2d(-np.ones((3, 3)), 2, padding="same", mode="max")
    np.testing.assert_array_equal(got, -np.ones((2, 2)))


@pytest.mark.parametrize("padding, expected", [("valid", (2, 2)), ("same", (3, 3))])
def test_pooling_shape_formula_5x5(padding, expected):
    assert lessons.pool2d(np.ones((5, 5)), 2, padding=padding).shape == expected
    assert (output_size(5, 2, 2, padding),) * 2 == expected


@pytest.mark.parametrize("padding, stride, row, col", [
    ("valid", None, 1, 2),
    ("valid", 1, 4, 6),
    ("same", None, 3, 4),   # bottom-right window hangs over the padding after the input
    ("same", 1, 0, 0),
    ("same", 3, 2, 2),
])
@pytest.mark.parametrize("mode", ["max", "avg"])
def test_pool_at_equals_pool2d(padding, stride, row, col, mode):
    x = _rng("pool_at", padding, stride, row, col).normal(size=(7, 9))
    full = lessons.pool2d(x, 2, stride, padding, mode)
    step = lessons.pool_at(x, row, col, 2, stride, padding, mode)
    assert step["value"] == pytest.approx(full[row, col], abs=1e-12)
    assert step["window"].shape == (2, 2)
    # the real window cells are the input values; padded ones are nan
    for i, j in itertools.product(range(2), range(2)):
        r, c = step["top"] + i, step["left"] + j
        if 0 <= r < 7 and 0 <= c < 9:
            assert step["window"][i, j] == x[r, c]
        else:
            assert np.isnan(step["window"][i, j])
    if mode == "max":
        r, c = step["argmax"]
        assert x[r, c] == step["value"]
    else:
        assert "argmax" not in step
        assert step["value"] == pytest.approx(np.nanmean(step["window"]))


def test_pool_at_padded_window_and_argmax():
    x = np.array([[1.0, 5.0, 2.0], [3.0, 4.0, 9.0], [0.0, 6.0, 7.0]])
    step = lessons.pool_at(x, 1, 1, padding="same")
    assert (step["top"], step["left"]) == (2, 2)
    assert step["value"] == 7.0 and step["argmax"] == (2, 2)
    assert np.isnan(step["window"]).sum() == 3
    avg = lessons.pool_at(x, 0, 1, padding="same", mode="avg")
    assert avg["value"] == pytest.approx((2.0 + 9.0) / 2)


@pytest.mark.parametrize("kwargs, message", [
    (dict(pool=0), "pool must be ≥ 1, got 0"),
    (dict(stride=-1), "stride must be ≥ 1, got -1"),
    (dict(mode="min"), "mode must be one of 'max', 'avg', got 'min'"),
    (dict(padding="SAME"), "padding must be one of"),
    (dict(pool=7), "pool 7 > input 5×6 with padding 'valid'"),
])
def test_pool2d_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        lessons.pool2d(np.ones((5, 6)), **kwargs)


# ---------------------------------------------------------------------------
# Flatten, dense, softmax
# ---------------------------------------------------------------------------

def test_flatten_matches_keras():
    x = _rng("flatten").normal(size=(3, 4, 2)).astype("float32")
    np.testing.assert_array_equal(lessons.flatten(x), _run(keras.layers.Flatten(), x))


def test_dense_matches_keras():
    rng = _rng("dense")
    x = rng.normal(size=(4, 12)).astype("float32")
    w, b = rng.normal(size=(12, 5)).astype("float32"), rng.normal(size=(5,)).astype("float32")
    layer = keras.layers.Dense(5)
    layer.build((None, 12))
    layer.set_weights([w, b])
    expected = keras.ops.convert_to_numpy(layer(x))
    assert _max_diff(lessons.dense(x, w, b), expected) <= TOL
    assert _max_diff(lessons.dense(x[1], w, b), expected[1]) <= TOL
    step = lessons.dense_unit(x[1], w, b, 3)
    np.testing.assert_allclose(step["products"], x[1].astype(float) * w[:, 3].astype(float))
    assert step["weighted_sum"] == pytest.approx(step["products"].sum())
    assert step["bias"] == pytest.approx(float(b[3]))
    assert abs(step["value"] - expected[1, 3]) <= TOL


def test_dense_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"x must have shape \(3,\)"):
        lessons.dense(np.ones(4), np.ones((3, 2)), np.zeros(2))
    with pytest.raises(ValueError, match=r"bias must have shape \(2,\)"):
        lessons.dense(np.ones(3), np.ones((3, 2)), np.zeros(3))
    with pytest.raises(ValueError, match="unit must be an integer in 0…1, got 2"):
        lessons.dense_unit(np.ones(3), np.ones((3, 2)), np.zeros(2), 2)


def test_softmax_matches_keras_and_sums_to_one():
    z = _rng("softmax").normal(scale=5, size=(3, 10)).astype("float32")
    got = lessons.softmax(z)
    assert _max_diff(got, keras.ops.convert_to_numpy(keras.activations.softmax(z))) <= TOL
    np.testing.assert_allclose(got.sum(axis=-1), 1.0)
    # huge scores would overflow a naive exp
    big = lessons.softmax([1000.0, 1000.0, -1000.0])
    np.testing.assert_allclose(big, [0.5, 0.5, 0.0])
    np.testing.assert_allclose(lessons.softmax(z, axis=0).sum(axis=0), 1.0)


# ---------------------------------------------------------------------------
# Dropout and cross-entropy
# ---------------------------------------------------------------------------

def test_dropout_is_identity_when_predicting():
    x = _rng("dropout-off").normal(size=(5, 5))
    out, mask = lessons.dropout(x, 0.5, seed=1, training=False)
    np.testing.assert_array_equal(out, x)
    assert mask.dtype == bool and mask.all()


@pytest.mark.parametrize("rate", [0.2, 0.5])
def test_dropout_training_drops_about_rate_and_scales_survivors(rate):
    x = _rng("dropout", rate).uniform(0.5, 1.5, size=(200, 200))
    out, mask = lessons.dropout(x, rate, seed=7)
    assert abs((~mask).mean() - rate) < 0.01
    assert np.all(out[~mask] == 0)
    np.testing.assert_allclose(out[mask], x[mask] / (1 - rate), rtol=1e-12)
    # same seed, same mask; another seed, another mask
    np.testing.assert_array_equal(lessons.dropout(x, rate, seed=7)[1], mask)
    assert not np.array_equal(lessons.dropout(x, rate, seed=8)[1], mask)


def test_dropout_scale_matches_keras():
    x = np.full((50, 50), 2.0, dtype="float32")
    keras_out = keras.ops.convert_to_numpy(keras.layers.Dropout(0.25, seed=3)(x, training=True))
    ours, _ = lessons.dropout(x, 0.25, seed=3)
    # the masks differ (different random generators) but survivors get the same scale
    np.testing.assert_allclose(np.unique(keras_out[keras_out != 0]), [2.0 / 0.75], rtol=1e-6)
    np.testing.assert_allclose(np.unique(ours[ours != 0]), [2.0 / 0.75])


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5, "0.5"])
def test_dropout_rejects_bad_rate(rate):
    with pytest.raises(ValueError, match=r"rate must be a number in \[0, 1\)"):
        lessons.dropout(np.ones(3), rate)


def test_cross_entropy_matches_keras():
    p = lessons.softmax(_rng("xent").normal(size=10))
    expected = keras.ops.convert_to_numpy(
        keras.losses.sparse_categorical_crossentropy(np.array([4]), p[None].astype("float32")))[0]
    assert abs(lessons.cross_entropy(p, 4) - expected) <= TOL
    assert lessons.cross_entropy(p, 4) == pytest.approx(-np.log(p[4]))
    # a zero probability is clipped, not log(0)
    assert lessons.cross_entropy([1.0, 0.0], 1) == pytest.approx(-np.log(1e-7))
    with pytest.raises(ValueError, match="label must be an integer in 0…1, got 2"):
        lessons.cross_entropy([1.0, 0.0], 2)


def test_lessons_does_not_import_tensorflow():
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(lessons))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= {"__future__", "math", "numbers", "numpy", "cnn"}


def test_dropout_keeps_the_sum_on_average_not_per_mask():
    x = np.linspace(0, 2, 64)
    sums = lessons.dropout_sums(x, 0.5, draws=4000, seed=1)
    assert abs(sums.mean() - x.sum()) < 0.02 * x.sum()  # the 1/(1−rate) scaling is right on average
    assert sums.std() > 0.1 * x.sum()  # single masks are far from it
    out, _ = lessons.dropout(x, 0.5, seed=1)
    assert out.sum() != pytest.approx(x.sum(), rel=1e-3)


def test_ink_pixels_counts_positions_not_values():
    rgb = np.zeros((10, 10, 3), np.uint8)
    rgb[:4, :4] = (200, 30, 30)
    assert lessons.ink_pixels(rgb) == 16  # not 48
    gray = np.zeros((10, 10, 1), np.uint8)
    gray[2, 3] = 1
    assert lessons.ink_pixels(gray) == 1 and lessons.ink_pixels(gray[..., 0]) == 1

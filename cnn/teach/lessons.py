"""Plain-NumPy teaching versions of the CNN operations, for the Learn page.

Each function does by hand what one Keras layer does (same numbers, same padding rules),
so the page can show every intermediate value of the user's own digit. The `*_at` and
`*_unit` helpers explain a single output value. Nothing here imports TensorFlow or Keras.
Bad arguments raise `ValueError` naming the value and what is allowed.
"""
from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from cnn.model.spec import PADDINGS, output_size, output_size_formula, same_padding

__all__ = [
    "pad_same",
    "conv2d",
    "conv_at",
    "relu",
    "relu_zeroed",
    "pool2d",
    "pool_at",
    "flatten",
    "dense",
    "dense_unit",
    "softmax",
    "dropout",
    "dropout_sums",
    "cross_entropy",
    "ink_pixels",
]

POOL_MODES = ("max", "avg")
EPSILON = 1e-7  # Keras's backend epsilon: the clip used by its cross-entropy


# ---------------------------------------------------------------------------
# Argument checks (shared)
# ---------------------------------------------------------------------------

def _check_int(name: str, value, minimum: int = 1) -> int:
    """`value` as an int ≥ `minimum`, or a ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ValueError(f"{name} must be an integer ≥ {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be ≥ {minimum}, got {value}")
    return int(value)


def _check_padding(padding) -> str:
    """`padding` if Keras accepts it ('valid' or 'same')."""
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {', '.join(map(repr, PADDINGS))}, got {padding!r}")
    return padding


def _check_image(x, allow_channels: bool = True) -> np.ndarray:
    """`x` as float64, shape (H, W) or, if allowed, (H, W, C)."""
    x = np.asarray(x, dtype=np.float64)
    ndims = (2, 3) if allow_channels else (2,)
    if x.ndim not in ndims or 0 in x.shape:
        allowed = "(H, W) or (H, W, C)" if allow_channels else "(H, W)"
        raise ValueError(f"input must have shape {allowed} with no empty axis, got {x.shape}")
    return x


def _output_hw(shape: tuple[int, int], kernel: int, stride: int, padding: str, what: str) -> tuple[int, int]:
    """Output (Ho, Wo) from cnn.model.spec, or a ValueError when the window does not fit."""
    height, width = shape
    out_h = output_size(height, kernel, stride, padding)
    out_w = output_size(width, kernel, stride, padding)
    if out_h <= 0 or out_w <= 0:
        # show the arithmetic for the axis that does not fit, e.g. ⌊(4−5+0)/1⌋+1 = 0
        side = height if out_h <= 0 else width
        raise ValueError(f"{what} {kernel} > input {height}×{width} with padding {padding!r}: "
                         f"{output_size_formula(side, kernel, stride, padding)}")
    return out_h, out_w


# ---------------------------------------------------------------------------
# Padding
# ---------------------------------------------------------------------------

def pad_same(x, kernel: int, stride: int, value: float = 0.0) -> np.ndarray:
    """Pad (H, W) or (H, W, C) with `value` exactly as Keras padding='same' does (extra row/column after)."""
    x = _check_image(x)
    kernel = _check_int("kernel", kernel)
    stride = _check_int("stride", stride)
    # (before, after) per spatial axis; the odd one out goes bottom/right, as in TF
    pads = [same_padding(x.shape[0], kernel, stride), same_padding(x.shape[1], kernel, stride)]
    # channels are never padded
    pads += [(0, 0)] * (x.ndim - 2)
    return np.pad(x, pads, mode="constant", constant_values=value)


def _windows(x: np.ndarray, size: int, stride: int) -> np.ndarray:
    """Every size×size window of a (H, W, C) array at the given stride: shape (Ho, Wo, C, size, size)."""
    return sliding_window_view(x, (size, size), axis=(0, 1))[::stride, ::stride]


# ---------------------------------------------------------------------------
# Convolution
# ---------------------------------------------------------------------------

def conv2d(x, kernels, bias=None, stride: int = 1, padding: str = "valid") -> np.ndarray:
    """Keras Conv2D by hand: cross-correlation of x (H, W[, Cin]) with kernels (K, K) or (K, K, Cin, Cout), plus bias."""
    x = _check_image(x)
    kernels = np.asarray(kernels, dtype=np.float64)
    stride = _check_int("stride", stride)
    padding = _check_padding(padding)
    single = kernels.ndim == 2
    if kernels.ndim not in (2, 4):
        raise ValueError(f"kernels must have shape (K, K) or (K, K, Cin, Cout), got {kernels.shape}")
    if kernels.shape[0] != kernels.shape[1]:
        raise ValueError(f"kernel must be square, got {kernels.shape[0]}×{kernels.shape[1]}")
    size = _check_int("kernel", kernels.shape[0])
    # work in (H, W, Cin) and (K, K, Cin, Cout) throughout
    if x.ndim == 2:
        x = x[:, :, None]
    if single:
        kernels = kernels[:, :, None, None]
    if kernels.shape[2] != x.shape[2]:
        raise ValueError(f"kernels expect {kernels.shape[2]} input channel(s), input has {x.shape[2]}")
    out_h, out_w = _output_hw(x.shape[:2], size, stride, padding, "kernel")
    if padding == "same":
        x = pad_same(x, size, stride)
    # (Ho, Wo, Cin, K, K): the patch under the kernel at every output position
    patches = _windows(x, size, stride)[:out_h, :out_w]
    # multiply each patch by each kernel and add up over rows, columns and input channels -> (Ho, Wo, Cout)
    out = np.einsum("hwcij,ijco->hwo", patches, kernels)
    if bias is not None:
        bias = np.asarray(bias, dtype=np.float64).reshape(-1)
        if bias.shape != (kernels.shape[3],):
            raise ValueError(f"bias must have {kernels.shape[3]} value(s) (one per kernel), got {bias.size}")
        # one bias per output channel, broadcast over positions
        out = out + bias
    return out[:, :, 0] if single else out


def conv_at(x, kernel, row: int, col: int, stride: int = 1, padding: str = "valid") -> dict:
    """Explain conv2d(x, kernel)[row, col] for one (H, W) map and one (K, K) kernel: patch, products, value."""
    x = _check_image(x, allow_channels=False)
    kernel = np.asarray(kernel, dtype=np.float64)
    if kernel.ndim != 2 or kernel.shape[0] != kernel.shape[1]:
        raise ValueError(f"kernel must be a square (K, K) array, got shape {kernel.shape}")
    size = _check_int("kernel", kernel.shape[0])
    stride = _check_int("stride", stride)
    padding = _check_padding(padding)
    out_h, out_w = _output_hw(x.shape, size, stride, padding, "kernel")
    row, col = _check_position(row, col, out_h, out_w)
    # zeros Keras adds above and to the left ('same' only); the patch starts that far before the input
    before_h = same_padding(x.shape[0], size, stride)[0] if padding == "same" else 0
    before_w = same_padding(x.shape[1], size, stride)[0] if padding == "same" else 0
    padded = pad_same(x, size, stride) if padding == "same" else x
    # the K×K patch the kernel sits on for this output value
    patch = padded[row * stride: row * stride + size, col * stride: col * stride + size]
    products = patch * kernel
    return {
        "patch": patch,
        "products": products,
        "value": float(products.sum()),
        "top": row * stride - before_h,
        "left": col * stride - before_w,
    }


def _check_position(row, col, out_h: int, out_w: int) -> tuple[int, int]:
    """(row, col) if it is a position of the (out_h, out_w) output."""
    for name, value, limit in (("row", row, out_h), ("col", col, out_w)):
        if isinstance(value, bool) or not isinstance(value, Integral) or not 0 <= value < limit:
            raise ValueError(f"{name} must be an integer in 0…{limit - 1} (output is {out_h}×{out_w}), got {value!r}")
    return int(row), int(col)


# ---------------------------------------------------------------------------
# ReLU
# ---------------------------------------------------------------------------

def relu(x) -> np.ndarray:
    """max(x, 0) element-wise, as keras.activations.relu."""
    return np.maximum(np.asarray(x, dtype=np.float64), 0.0)


def relu_zeroed(x) -> int:
    """How many values ReLU sets to zero (the negative ones)."""
    return int(np.count_nonzero(np.asarray(x) < 0))


# ---------------------------------------------------------------------------
# Pooling
# ---------------------------------------------------------------------------

def _check_pool(pool, stride, padding, mode) -> tuple[int, int, str, str]:
    """Validated (pool, stride, padding, mode); stride None means stride = pool, as in Keras."""
    pool = _check_int("pool", pool)
    stride = pool if stride is None else _check_int("stride", stride)
    if mode not in POOL_MODES:
        raise ValueError(f"mode must be one of {', '.join(map(repr, POOL_MODES))}, got {mode!r}")
    return pool, stride, _check_padding(padding), mode


def pool2d(x, pool: int = 2, stride: int | None = None, padding: str = "valid", mode: str = "max") -> np.ndarray:
    """Keras MaxPooling2D / AveragePooling2D by hand on (H, W) or (H, W, C)."""
    x = _check_image(x)
    pool, stride, padding, mode = _check_pool(pool, stride, padding, mode)
    single = x.ndim == 2
    # work in (H, W, C): each channel is pooled on its own
    if single:
        x = x[:, :, None]
    out_h, out_w = _output_hw(x.shape[:2], pool, stride, padding, "pool")
    if mode == "max":
        # -inf padding can never win a max, so only real values are kept
        padded = pad_same(x, pool, stride, value=-np.inf) if padding == "same" else x
        out = _windows(padded, pool, stride)[:out_h, :out_w].max(axis=(3, 4))
    else:
        # TF averages over the REAL values only: sum with 0 padding, divide by the count of real values
        ones = np.ones(x.shape[:2] + (1,))
        if padding == "same":
            x, ones = pad_same(x, pool, stride), pad_same(ones, pool, stride)
        sums = _windows(x, pool, stride)[:out_h, :out_w].sum(axis=(3, 4))
        counts = _windows(ones, pool, stride)[:out_h, :out_w].sum(axis=(3, 4))
        out = sums / counts
    return out[:, :, 0] if single else out


def pool_at(x, row: int, col: int, pool: int = 2, stride: int | None = None, padding: str = "valid",
            mode: str = "max") -> dict:
    """Explain pool2d(x)[row, col] for one (H, W) map: the window (padding as nan), value and kept position."""
    x = _check_image(x, allow_channels=False)
    pool, stride, padding, mode = _check_pool(pool, stride, padding, mode)
    out_h, out_w = _output_hw(x.shape, pool, stride, padding, "pool")
    row, col = _check_position(row, col, out_h, out_w)
    # nan marks padded positions: they are shown but never used
    padded = pad_same(x, pool, stride, value=np.nan) if padding == "same" else x
    before_h = same_padding(x.shape[0], pool, stride)[0] if padding == "same" else 0
    before_w = same_padding(x.shape[1], pool, stride)[0] if padding == "same" else 0
    window = padded[row * stride: row * stride + pool, col * stride: col * stride + pool]
    top, left = row * stride - before_h, col * stride - before_w
    result = {"window": window, "top": top, "left": left}
    if mode == "max":
        # first largest real value, in original input coordinates
        r, c = np.unravel_index(np.nanargmax(window), window.shape)
        result["value"] = float(window[r, c])
        result["argmax"] = (top + int(r), left + int(c))
    else:
        # mean of the real values only (TF's rule for 'same' average pooling)
        result["value"] = float(np.nanmean(window))
    return result


# ---------------------------------------------------------------------------
# Flatten, dense, softmax
# ---------------------------------------------------------------------------

def flatten(x) -> np.ndarray:
    """One long vector in C order (row by row, channels innermost), as keras Flatten on channels_last."""
    return np.asarray(x, dtype=np.float64).reshape(-1)


def _check_dense(x, weights, bias) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x (n,) or (batch, n), weights (n, units), bias (units,) as float64, or a ValueError."""
    x = np.asarray(x, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    bias = np.asarray(bias, dtype=np.float64)
    if weights.ndim != 2:
        raise ValueError(f"weights must have shape (inputs, units), got {weights.shape}")
    if x.ndim not in (1, 2) or x.shape[-1] != weights.shape[0]:
        raise ValueError(f"x must have shape ({weights.shape[0]},) or (batch, {weights.shape[0]}), got {x.shape}")
    if bias.shape != (weights.shape[1],):
        raise ValueError(f"bias must have shape ({weights.shape[1]},), got {bias.shape}")
    return x, weights, bias


def dense(x, weights, bias) -> np.ndarray:
    """Keras Dense without activation: x @ weights + bias."""
    x, weights, bias = _check_dense(x, weights, bias)
    # (n,) @ (n, units) -> (units,); a batch keeps its first axis
    return x @ weights + bias


def dense_unit(x, weights, bias, unit: int) -> dict:
    """Explain dense(x)[unit] for one input vector: products, their sum, the bias and the result."""
    x, weights, bias = _check_dense(x, weights, bias)
    if x.ndim != 1:
        raise ValueError(f"x must be one input vector of shape ({weights.shape[0]},), got {x.shape}")
    units = weights.shape[1]
    if isinstance(unit, bool) or not isinstance(unit, Integral) or not 0 <= unit < units:
        raise ValueError(f"unit must be an integer in 0…{units - 1}, got {unit!r}")
    # one product per input: how much each input pushes this unit up or down
    products = x * weights[:, unit]
    weighted_sum = float(products.sum())
    return {
        "products": products,
        "weighted_sum": weighted_sum,
        "bias": float(bias[unit]),
        "value": weighted_sum + float(bias[unit]),
    }


def softmax(z, axis: int = -1) -> np.ndarray:
    """exp(z) / sum(exp(z)) along `axis`; subtracting the max first avoids overflow and changes nothing."""
    z = np.asarray(z, dtype=np.float64)
    # the largest score becomes exp(0) = 1, so no exp can overflow
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


# ---------------------------------------------------------------------------
# Dropout and loss
# ---------------------------------------------------------------------------

def dropout(x, rate: float, seed: int | None = None, training: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Inverted dropout as Keras: keep each value with probability 1−rate and scale kept ones by 1/(1−rate).

    Returns (output, keep_mask). At prediction time (training=False) nothing is dropped or scaled.
    """
    x = np.asarray(x, dtype=np.float64)
    if isinstance(rate, bool) or not isinstance(rate, Real) or not 0 <= rate < 1:
        raise ValueError(f"rate must be a number in [0, 1), got {rate!r}")
    if not training:
        # Keras turns dropout off when predicting
        return x.copy(), np.ones(x.shape, dtype=bool)
    # uniform [0, 1) < 1−rate is True with probability 1−rate
    keep = np.random.default_rng(seed).random(x.shape) < 1.0 - rate
    # scale the survivors so the expected value of each output equals its input
    out = np.where(keep, x * (1.0 / (1.0 - rate)), 0.0)
    return out, keep


def dropout_sums(x, rate: float, draws: int = 1000, seed: int = 0) -> np.ndarray:
    """The output's sum under `draws` independent dropout masks: their mean is the input's sum (that is what
    the 1/(1−rate) scaling is for), while any single mask can land far from it."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    dropout(x, rate)  # the same argument checks
    # (draws, n): each row one mask, kept values scaled by 1/(1−rate)
    keep = np.random.default_rng(seed).random((draws, x.size)) < 1.0 - rate
    return (keep * x).sum(axis=1) / (1.0 - rate)


def ink_pixels(image) -> int:
    """Pixels with any ink: positions where at least one channel is above 0 (not values: a colour pixel
    has three)."""
    image = np.asarray(image)
    return int(np.count_nonzero(image.max(axis=-1) > 0 if image.ndim == 3 else image > 0))


def cross_entropy(probabilities, label: int) -> float:
    """−log p[label], with p clipped to [1e-7, 1 − 1e-7] as Keras does, so p = 0 gives a finite loss."""
    p = np.asarray(probabilities, dtype=np.float64).reshape(-1)
    if isinstance(label, bool) or not isinstance(label, Integral) or not 0 <= label < p.size:
        raise ValueError(f"label must be an integer in 0…{p.size - 1}, got {label!r}")
    return float(-math.log(min(max(p[label], EPSILON), 1.0 - EPSILON)))


# Classic hand-made kernels for the convolution lesson (Sobel edges, box blur, sharpen).
KERNELS = {
    "vertical edges": np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float64),
    "horizontal edges": np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]], dtype=np.float64),
    "blur": np.full((3, 3), 1 / 9),
    "sharpen": np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], dtype=np.float64),
}

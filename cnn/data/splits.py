"""Splits: the seeded validation hold-out every training run, calibration and evaluation agree on.
"""
from __future__ import annotations

import numpy as np


def split_validation(x, y, share: float, seed: int):
    """Hold out a seeded random `share` of (x, y): ((x_fit, y_fit), (x_val, y_val) or None)."""
    if share <= 0:
        return (x, y), None
    order = np.random.default_rng(seed).permutation(len(y))
    n_val = max(1, int(round(len(y) * share)))
    val, fit = np.sort(order[:n_val]), np.sort(order[n_val:])
    return (x[fit], y[fit]), (x[val], y[val])

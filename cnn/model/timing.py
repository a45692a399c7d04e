"""Estimate training time per epoch on this machine from a short measured probe.

Model: seconds per step = overhead + batch × 3 × MACs / rate (forward + backward ≈ 3 forward passes).
Two probes of a few steps each — a near-empty model (overhead) and the keras-mnist-convnet (compute) —
give the two unknowns. The probe takes a few seconds once per process; estimates are then instant.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from cnn.model.builder import build_model
from cnn.model.spec import Analysis, Flatten, ModelSpec, preset, validate


@dataclass(frozen=True)
class MachineSpeed:
    step_overhead: float  # seconds per optimizer step whatever the model
    macs_per_second: float  # effective training MACs per second (counted as 3 × forward MACs)
    batch_size: int  # the probe's batch


def _seconds_per_step(spec: ModelSpec, batch_size: int, steps: int) -> float:
    import keras

    model = build_model(spec)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (batch_size * steps, *spec.input_shape), dtype=np.uint8)
    y = rng.integers(0, spec.num_classes, batch_size * steps)
    times = []
    clock = keras.callbacks.LambdaCallback(on_epoch_begin=lambda e, l: times.append(time.perf_counter()),
                                           on_epoch_end=lambda e, l: times.append(time.perf_counter()))
    model.fit(x, y, batch_size=batch_size, epochs=2, verbose=0, shuffle=False, callbacks=[clock])
    return (times[3] - times[2]) / steps  # second epoch: tracing is done


def measure_speed(batch_size: int = 128, steps: int = 10) -> MachineSpeed:
    """Probe this machine (a few seconds)."""
    light = ModelSpec(layers=[Flatten()])
    heavy = preset("keras-mnist-convnet")
    t_light = _seconds_per_step(light, batch_size, steps)
    t_heavy = _seconds_per_step(heavy, batch_size, steps)
    macs_light, macs_heavy = validate(light).macs, validate(heavy).macs
    work = 3 * batch_size * (macs_heavy - macs_light)
    rate = work / max(t_heavy - t_light, 1e-6)
    overhead = max(t_light - 3 * batch_size * macs_light / rate, 0.0)
    return MachineSpeed(overhead, rate, batch_size)


def epoch_seconds(analysis: Analysis, images: int, batch_size: int, speed: MachineSpeed) -> float:
    """Estimated seconds for one epoch of `images` at `batch_size` on the probed machine."""
    steps = math.ceil(images / batch_size)
    return steps * speed.step_overhead + 3 * images * analysis.macs / speed.macs_per_second


AFTER_TRAINING_SECONDS = 1.0  # fixed part of what follows training: the film's last frame, the save, handing over


def after_training_seconds(analysis: Analysis, test_images: int, calibration_images: int,
                           speed: MachineSpeed) -> float:
    """Estimated seconds from the last batch to the saved model: one forward pass over the test split
    (evaluation) and over the calibration images (their features), plus a fixed part."""
    return (test_images + calibration_images) * analysis.macs / speed.macs_per_second + AFTER_TRAINING_SECONDS

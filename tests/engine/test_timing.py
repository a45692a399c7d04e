"""The time model behind the queue's "starting in about …": its arithmetic, on a machine speed given by hand."""
import pytest

from cnn.model.spec import preset, validate
from cnn.model.timing import AFTER_TRAINING_SECONDS, MachineSpeed, after_training_seconds, epoch_seconds

SPEED = MachineSpeed(step_overhead=0.002, macs_per_second=1e9, batch_size=128)


def test_an_epoch_is_its_steps_overhead_plus_three_passes_of_work():
    analysis = validate(preset("default"))
    # 1,000 images at batch 256 → 4 steps; training work counts 3 forward passes per image.
    assert epoch_seconds(analysis, 1000, 256, SPEED) == pytest.approx(4 * 0.002 + 3 * 1000 * analysis.macs / 1e9)


def test_what_follows_training_is_one_forward_pass_over_test_and_calibration_images_plus_a_fixed_part():
    analysis = validate(preset("default"))
    assert after_training_seconds(analysis, 0, 0, SPEED) == AFTER_TRAINING_SECONDS
    assert after_training_seconds(analysis, 2000, 9500, SPEED) == pytest.approx(
        AFTER_TRAINING_SECONDS + 11500 * analysis.macs / 1e9)

"""The training memory estimate and its budget: one estimate (Configure shows it), the
budget setting, and train() refusing an impossible run before building anything."""
import pytest

from cnn.core.errors import TrainingError
from cnn.data.datasets import CATALOG
from cnn.model.memory import (GiB, check_memory, estimate, estimate_for, largest_batch, machine_memory, memory_budget)
from cnn.model.spec import Conv2D, GlobalAveragePooling2D, ModelSpec, preset, validate


def huge_spec() -> ModelSpec:
    """Issue 11's run: 2× Conv2D(1024, same) at batch 4096 (Configure estimated 49.7 GiB)."""
    spec = ModelSpec(layers=[Conv2D(1024, 3, padding="same"), Conv2D(1024, 3, padding="same"),
                             GlobalAveragePooling2D()])
    spec.train.batch_size = 4096
    return spec


def test_configure_and_training_use_one_estimate():
    spec = preset("keras-mnist-convnet")
    analysis = validate(spec)
    assert estimate(analysis, 128, "adam").total == estimate_for(spec).total


def test_estimate_parts_scale_as_they_should():
    analysis = validate(preset("keras-mnist-convnet"))
    small, big = estimate(analysis, 32), estimate(analysis, 256)
    assert big.activations == 8 * small.activations and big.parameters == small.parameters
    assert estimate(analysis, 32, "sgd").parameters < small.parameters  # one optimizer slot, not two
    data = estimate(analysis, 32, train_images=10_000, image_bytes=784, test_images=2000)
    assert data.data == (3 * 10_000 + 2000) * 784
    assert estimate(analysis, 32, train_images=10_000, image_bytes=784, test_images=2000, streamed=True).data == \
        (4096 + 2000) * 784
    # A streamed split small enough for the shuffle buffer is cached whole (cnn.run.train): counted twice.
    assert estimate(analysis, 32, train_images=36, image_bytes=784, test_images=9, streamed=True).data == \
        (2 * 36 + 9) * 784
    assert estimate(analysis, 32, train_images=4096, image_bytes=784, test_images=0, streamed=True).data == \
        2 * 4096 * 784  # the largest cached split; one more image and only the buffer is held
    assert estimate(analysis, 32, train_images=4097, image_bytes=784, test_images=0, streamed=True).data == 4096 * 784


def test_catalogue_datasets_are_costed_without_loading(small_data):
    spec = preset("default")
    by_name, by_data = estimate_for(spec, CATALOG["mnist"]), estimate_for(spec, small_data)
    assert by_name.data == (3 * 60_000 + 10_000) * 784 and by_data.data == (3 * 2000 + 500) * 784
    assert by_name.activations == by_data.activations == estimate_for(spec).activations


def test_the_huge_run_is_refused_with_the_numbers():
    with pytest.raises(TrainingError) as err:
        check_memory(huge_spec(), budget=12 * GiB)
    text = str(err.value)
    assert text.startswith("this training needs ~") and "GiB: activations" in text and "for batch 4,096" in text
    assert "the memory budget is 12.0 GiB (CNN_MEMORY_BUDGET_MB) — use a batch size of at most" in text
    fits = largest_batch(validate(huge_spec()), 12 * GiB)
    assert 0 < fits < 4096
    spec = huge_spec()
    spec.train.batch_size = fits
    assert check_memory(spec, budget=12 * GiB).total <= 12 * GiB
    spec.train.batch_size = fits + 1
    with pytest.raises(TrainingError):
        check_memory(spec, budget=12 * GiB)
    with pytest.raises(TrainingError, match="even a batch of 1 does not fit"):
        check_memory(spec, budget=50 * 2 ** 20)


def test_the_budget_setting(monkeypatch):
    monkeypatch.delenv("CNN_MEMORY_BUDGET_MB", raising=False)
    assert memory_budget() == machine_memory() // 2 and machine_memory() > 2 ** 28
    monkeypatch.setenv("CNN_MEMORY_BUDGET_MB", "1500")
    assert memory_budget() == 1500 * 2 ** 20
    for bad in ("lots", "-5", "nan", "0"):
        monkeypatch.setenv("CNN_MEMORY_BUDGET_MB", bad)
        with pytest.raises(TrainingError, match="CNN_MEMORY_BUDGET_MB must be"):
            memory_budget()


def test_train_refuses_before_building_anything(small_data, monkeypatch):
    import cnn.run.train
    from cnn.run.train import train

    # train() builds through the name it imported: a refusal must come before it.
    monkeypatch.setattr(cnn.run.train, "build_model", lambda spec: pytest.fail("built a model it cannot train"))
    monkeypatch.setenv("CNN_MEMORY_BUDGET_MB", "4000")
    with pytest.raises(TrainingError, match="the memory budget is 3.9 GiB"):
        train(huge_spec(), small_data)


def test_a_training_job_fails_with_the_message(small_data, monkeypatch):
    from cnn.run.jobs import TrainingJob

    monkeypatch.setenv("CNN_MEMORY_BUDGET_MB", "100")
    job = TrainingJob(preset("tiny-vgg").with_data(small_data.input_shape, small_data.num_classes), small_data)
    job.start().join(60)
    snap = job.snapshot()
    assert snap.state == "failed" and snap.message.startswith("this training needs ~")

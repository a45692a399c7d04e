"""Training: progress reports, stop, NaN, seeded reproducibility, strategies, streamed folders."""
import threading

import numpy as np
import pytest

from cnn.core.errors import TrainingError
from cnn.model.spec import Conv2D, Dense, Flatten, ModelSpec, TrainConfig
from cnn.data.splits import split_validation
from cnn.run.train import train


def test_one_epoch_reports_progress_and_learns(small_spec, small_data):
    reports = []
    config = TrainConfig(epochs=1, batch_size=64, learning_rate=3e-3)
    result = train(small_spec, small_data, config, on_progress=reports.append, progress_interval=0)
    assert result.status == "completed"
    batches = reports[0].batches
    assert batches == int(np.ceil(1800 / 64))  # 2,000 minus the 10% validation split
    assert [r.batch for r in reports if r.phase == "batch"] == list(range(1, batches + 1))
    last = reports[-1]
    assert last.phase == "epoch" and last.fraction == 1.0 and last.eta == 0
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(last.metrics)
    assert last.metrics["val_accuracy"] > 0.5  # far above chance (0.1) after one epoch
    assert result.history["epoch"] == [1] and len(result.history["seconds"]) == 1
    assert len(result.history["batches"]["step"]) == batches


def test_progress_is_throttled(small_spec, small_data):
    reports = []
    train(small_spec, small_data, TrainConfig(epochs=1, batch_size=32), on_progress=reports.append,
          progress_interval=60)
    # With a 60 s interval only the last batch of the epoch and the epoch end are reported.
    assert [(r.phase, r.batch) for r in reports] == [("batch", reports[0].batches), ("epoch", reports[0].batches)]


def test_stop_ends_after_the_current_batch_and_keeps_weights(small_spec, small_data):
    stop = threading.Event()
    seen = []

    def on_progress(report):
        seen.append(report)
        if report.batch == 3:
            stop.set()

    result = train(small_spec, small_data, TrainConfig(epochs=3, batch_size=32), on_progress=on_progress,
                   stop=stop, progress_interval=0)
    assert result.status == "stopped" and "epoch 1 of 3" in result.message
    assert max(r.batch for r in seen if r.phase == "batch") == 4  # the batch in flight finishes
    assert result.history["epoch"] == [1]
    assert all(np.isfinite(w).all() for w in result.model.get_weights())


def test_nan_loss_stops_with_a_clear_message_and_finite_weights(small_data):
    # A deep linear stack under plain SGD at lr 1.0 diverges within a few batches.
    spec = ModelSpec(layers=[Conv2D(8, 3, activation="linear"), Flatten(), Dense(256, "linear"),
                             Dense(256, "linear")], train=TrainConfig(optimizer="sgd", learning_rate=1.0, epochs=2))
    result = train(spec, small_data)
    assert result.status == "failed"
    assert "loss became nan" in result.message and "lower learning rate" in result.message
    assert all(np.isfinite(w).all() for w in result.model.get_weights())


def test_same_seed_same_data_same_model(small_spec, small_data):
    config = TrainConfig(epochs=1, batch_size=64, seed=7)
    a, b = train(small_spec, small_data, config), train(small_spec, small_data, config)
    for wa, wb in zip(a.model.get_weights(), b.model.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    c = train(small_spec, small_data, TrainConfig(epochs=1, batch_size=64, seed=8))
    assert not np.array_equal(a.model.get_weights()[0], c.model.get_weights()[0])


def test_runs_under_a_distribution_strategy(small_spec, small_data):
    import tensorflow as tf

    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    result = train(small_spec, small_data, TrainConfig(epochs=1, batch_size=128), strategy=strategy)
    assert result.status == "completed"
    assert result.model.get_weights()[0].shape == (3, 3, 1, 8)


def test_cosine_schedule_warms_up_then_decays(small_spec, small_data):
    reports = []
    config = TrainConfig(epochs=2, batch_size=64, learning_rate=0.01, lr_schedule="cosine")
    result = train(small_spec, small_data, config, on_progress=reports.append, progress_interval=0)
    lrs = [r.learning_rate for r in reports if r.phase == "batch"]
    peak = int(np.argmax(lrs))
    assert lrs[0] < 0.5 * max(lrs) and max(lrs) == pytest.approx(0.01, rel=0.05) and lrs[-1] < 0.001
    assert 0 < peak < len(lrs) // 4
    assert result.history["lr"][-1] < 0.001


def test_mismatched_dataset_is_refused(small_spec):
    from cnn.data.datasets import Dataset

    colour = Dataset("x", ["a", "b"], (32, 32, 3), np.zeros((4, 32, 32, 3), np.uint8), np.zeros(4, int),
                     np.zeros((2, 32, 32, 3), np.uint8), np.zeros(2, int), "test")
    with pytest.raises(TrainingError, match="expects \\(28, 28, 1\\) images and 10 classes"):
        train(small_spec, colour)


def test_augmentation_trains(small_spec, small_data):
    spec = small_spec.copy()
    spec.train.augmentation.shift, spec.train.augmentation.rotation, spec.train.augmentation.zoom = 0.1, 10, 0.1
    spec.train.epochs = 1
    result = train(spec, small_data.__class__(**{**small_data.__dict__}))
    assert result.status == "completed"
    assert {"augment_shift", "augment_rotate", "augment_zoom"} <= {layer.name for layer in result.model.layers}


def test_streamed_folder_dataset_trains(tmp_path):
    from cnn.data.load import load_dataset
    from tests.engine.test_data import make_class_folders

    ds = load_dataset(str(make_class_folders(tmp_path / "f", per_class=8)))
    spec = ModelSpec(input_shape=ds.input_shape, num_classes=3, layers=[Conv2D(4, 3), Flatten()],
                     train=TrainConfig(epochs=2, batch_size=4))
    reports = []
    result = train(spec, ds, on_progress=reports.append, progress_interval=0)
    assert result.status == "completed" and reports[0].batches == int(np.ceil(ds.num_train / 4))


def test_split_validation_is_seeded_and_disjoint():
    x, y = np.arange(100)[:, None], np.arange(100) % 10
    (xf, yf), (xv, yv) = split_validation(x, y, 0.2, seed=3)
    assert len(xv) == 20 and len(xf) == 80 and not set(xf[:, 0]) & set(xv[:, 0])
    (xf2, _), _ = split_validation(x, y, 0.2, seed=3)
    assert np.array_equal(xf, xf2)
    assert split_validation(x, y, 0.0, seed=0)[1] is None

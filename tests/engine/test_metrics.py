"""Evaluation numbers equal scikit-learn's; drill-down and ordering helpers."""
import numpy as np
import pytest
from sklearn.metrics import confusion_matrix as sk_confusion
from sklearn.metrics import log_loss, precision_recall_fscore_support

from cnn.analysis.metrics import Evaluation, confusion_matrix, evaluate


@pytest.fixture(scope="module")
def evaluation(trained):
    result, spec, data = trained
    return evaluate(result.model, data.x_test, data.y_test, data.class_names, batch_size=128)


def test_confusion_and_per_class_equal_sklearn(evaluation, trained):
    y, pred = evaluation.y_true, evaluation.y_pred
    np.testing.assert_array_equal(evaluation.confusion, sk_confusion(y, pred, labels=range(10)))
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=range(10), zero_division=0)
    rows = evaluation.per_class()
    np.testing.assert_allclose([row["precision"] for row in rows], p)
    np.testing.assert_allclose([row["recall"] for row in rows], r)
    np.testing.assert_allclose([row["f1"] for row in rows], f)
    assert [row["support"] for row in rows] == s.tolist()
    assert evaluation.accuracy == pytest.approx(np.mean(pred == y))
    assert evaluation.loss == pytest.approx(log_loss(y, evaluation.probabilities, labels=range(10)), rel=1e-4)


def test_evaluate_matches_keras_evaluate(evaluation, trained):
    result, spec, data = trained
    model = result.model
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    loss, accuracy = model.evaluate(data.x_test, data.y_test, verbose=0)
    assert evaluation.accuracy == pytest.approx(accuracy, abs=1e-6)
    assert evaluation.loss == pytest.approx(loss, rel=1e-4)


def test_confusion_matrix_on_known_labels():
    cm = confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]


def test_cell_misclassified_and_hardest():
    probs = np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0], [0.6, 0.3, 0.1], [0.1, 0.0, 0.9], [0.25, 0.65, 0.1]])
    ev = Evaluation(["a", "b", "c"], np.array([0, 1, 1, 0, 0]), probs, 0.0)
    assert ev.cell(1, 0).tolist() == [2] and ev.cell(0, 1).tolist() == [4] and ev.cell(0, 2).tolist() == [3]
    assert ev.misclassified().tolist() == [3, 4, 2]  # wrong with confidence 0.9, 0.65, 0.6
    assert ev.hardest(2).tolist() == [3, 4]  # p(true) = 0.1, 0.25
    summary = ev.summary()
    assert summary["confusion_matrix"] == [[1, 1, 1], [1, 1, 0], [0, 0, 0]] and summary["num_test"] == 5


def test_progress_reports(trained):
    result, spec, data = trained
    seen = []
    evaluate(result.model, data.x_test[:250], data.y_test[:250], data.class_names, batch_size=100,
             on_progress=lambda done, total: seen.append((done, total)))
    assert seen == [(100, 250), (200, 250), (250, 250)]


def test_drill_down_returns_exactly_each_cells_images(evaluation):
    seen = []
    for t in range(10):
        for p in range(10):
            idx = evaluation.cell(t, p)
            assert len(idx) == evaluation.confusion[t, p]
            assert np.all(evaluation.y_true[idx] == t) and np.all(evaluation.y_pred[idx] == p)
            assert np.all(np.diff(evaluation.confidence[idx]) <= 0)  # most confident first
            seen.extend(idx.tolist())
    assert sorted(seen) == list(range(len(evaluation.y_true)))


def test_misclassified_ordering_on_a_trained_model(evaluation):
    wrong = evaluation.misclassified()
    assert np.all(evaluation.y_pred[wrong] != evaluation.y_true[wrong])
    assert np.all(np.diff(evaluation.confidence[wrong]) <= 0)
    assert len(wrong) == int((evaluation.y_pred != evaluation.y_true).sum())


def test_csv_has_one_row_per_image(evaluation):
    import csv
    import io

    rows = list(csv.reader(io.StringIO(evaluation.to_csv())))
    assert rows[0][:4] == ["index", "true", "predicted", "confidence"] and len(rows[0]) == 14
    assert len(rows) == len(evaluation.y_true) + 1
    first = rows[1]
    assert first[1] == evaluation.class_names[evaluation.y_true[0]]
    assert abs(sum(float(v) for v in first[4:]) - 1) < 1e-4


def test_filter_report_finds_a_dead_filter(trained):
    from cnn.analysis.metrics import filter_report

    result, spec, data = trained
    model = result.model
    report = filter_report(model, data.x_test[:200], batch_size=64)
    assert [r["layer"] for r in report] == ["conv1", "conv2"]
    assert all(len(r["mean_activation"]) == r["filters"] for r in report)
    # Kill filter 3 of conv1 (large negative bias): the report must find it.
    import keras

    clone = keras.Model.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    kernel, bias = clone.get_layer("conv1").get_weights()
    bias[3] = -100.0
    clone.get_layer("conv1").set_weights([kernel, bias])
    conv1 = filter_report(clone, data.x_test[:200])[0]
    assert conv1["dead"] >= 1 and conv1["active_share"][3] == 0 and conv1["mean_activation"][3] == 0


def test_evaluation_cache_is_invalidated_when_the_model_file_changes(registry, trained):
    import os
    import time

    from cnn.analysis.metrics import EvaluationCache
    from cnn.store.registry import model_info, save_model

    result, spec, data = trained
    save_model("m", result.model, spec, result.history, {"dataset": "mnist-sample"})
    cache = EvaluationCache(size=2)
    first = model_info("m")
    cache.put(EvaluationCache.key(first, "mnist-sample"), "evaluation of the first file")
    assert cache.get(EvaluationCache.key(model_info("m"), "mnist-sample")) == "evaluation of the first file"
    save_model("m", result.model, spec, result.history, {"dataset": "mnist-sample"}, overwrite=True)
    path = model_info("m").path / "model.keras"
    os.utime(path, (time.time() + 5, time.time() + 5))  # a later mtime even on coarse clocks
    assert cache.get(EvaluationCache.key(model_info("m"), "mnist-sample")) is None
    for i in range(3):
        cache.put(("k", i), i)
    assert cache.get(("k", 0)) is None and cache.get(("k", 2)) == 2  # least recently used goes first

"""Evaluation numbers equal scikit-learn's; drill-down and ordering helpers."""
import numpy as np
import pytest
from sklearn.metrics import confusion_matrix as sk_confusion
from sklearn.metrics import log_loss, precision_recall_fscore_support

from cnn.metrics import Evaluation, confusion_matrix, evaluate


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

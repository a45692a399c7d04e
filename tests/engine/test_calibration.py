"""Calibration: temperature scaling, the calibration error, the OOD score's threshold and flag rates, the file
stored with a model (and what an upload may put in it), training and the CLI writing it."""
import json

import numpy as np
import pytest

from cnn.analysis import calibration as cal
from cnn.analysis import ood as ood_parts
from cnn.analysis import temperature
from cnn.run import workflows
from cnn.teach import softmax as lessons_softmax
from cnn.core.errors import CalibrationError
from tests import ood_images as gen


# ---------------------------------------------------------------------------
# Temperature scaling and the calibration error (pure NumPy, no model)
# ---------------------------------------------------------------------------

def overconfident(n=4000, k=10, sharpen=3.0, seed=0):
    """Labels drawn from softmax(z), and logits `sharpen`·z: the true temperature is `sharpen`."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2, (n, k))
    p = temperature.softmax(z)
    labels = np.array([rng.choice(k, p=row) for row in p])
    return sharpen * z, labels


def test_fit_temperature_recovers_a_known_temperature_and_lowers_nll():
    logits, labels = overconfident(sharpen=3.0)
    t = temperature.fit_temperature(logits, labels)
    assert t == pytest.approx(3.0, rel=0.1)
    assert temperature.nll(logits, labels, t) < temperature.nll(logits, labels) - 0.1
    # A minimum: nudging T either way only raises the NLL.
    assert temperature.nll(logits, labels, t) <= min(temperature.nll(logits, labels, t * 0.95), temperature.nll(logits, labels, t * 1.05))
    # Underconfident logits get T < 1.
    assert temperature.fit_temperature(logits / 9, labels) == pytest.approx(1 / 3, rel=0.1)


def test_temperature_never_changes_the_predicted_class():
    logits, _ = overconfident(n=500)
    for t in (0.3, 1.0, 2.5):
        np.testing.assert_array_equal(temperature.softmax(logits, t).argmax(axis=1), logits.argmax(axis=1))
        np.testing.assert_allclose(temperature.softmax(logits, t).sum(axis=1), 1.0)


def direct_ece(probabilities, labels, bins):
    """The textbook definition, one bin at a time: Σ_b |B_b|/N · |acc(B_b) − conf(B_b)|, bins (a, b]."""
    conf = probabilities.max(axis=1)
    right = probabilities.argmax(axis=1) == labels
    total = 0.0
    for b in range(bins):
        low, high = b / bins, (b + 1) / bins
        members = (conf > low) & (conf <= high) if b else (conf >= 0) & (conf <= high)
        if members.any():
            total += members.sum() / len(labels) * abs(right[members].mean() - conf[members].mean())
    return total


@pytest.mark.parametrize("bins", [5, 15])
def test_ece_equals_a_direct_computation(bins):
    logits, labels = overconfident(n=3000, sharpen=2.0, seed=3)
    probs = temperature.softmax(logits)
    rel = temperature.reliability(probs, labels, bins)
    assert rel.ece == pytest.approx(direct_ece(probs, labels, bins), abs=1e-12)
    assert rel.counts.sum() == len(labels) and len(rel.edges) == bins + 1
    assert rel.ece > 0.05  # overconfident logits are visibly miscalibrated …
    after = temperature.expected_calibration_error(temperature.softmax(logits, temperature.fit_temperature(logits, labels)), labels, bins)
    assert after < rel.ece / 3  # … and the temperature fixes most of it


def test_confidences_on_bin_edges_go_to_the_lower_bin():
    probs = np.array([[0.6, 0.4], [0.5, 0.5], [1.0, 0.0], [0.8, 0.2]])
    rel = temperature.reliability(probs, np.array([0, 1, 0, 1]), bins=5)  # edges 0, .2, .4, .6, .8, 1
    assert rel.counts.tolist() == [0, 0, 2, 1, 1]  # 0.5 and 0.6 in (0.4, 0.6]; 0.8 in (0.6, 0.8]
    assert rel.accuracy[2] == 0.5 and rel.confidence[2] == pytest.approx(0.55)
    assert rel.ece == pytest.approx(direct_ece(probs, np.array([0, 1, 0, 1]), 5))


# ---------------------------------------------------------------------------
# Fitting on a trained model
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fitted(trained):
    """(model, calibration, validation images, validation labels) for the session's small trained model."""
    result, spec, data = trained
    fit, (x_val, y_val), how = workflows._split_for(data, spec.train)
    calibration = cal.fit_calibration(result.model, fit, (x_val, y_val), seed=spec.train.seed,
                                      fitted_on={"dataset": data.name, "split": how})
    return result.model, calibration, x_val, y_val


def test_fitted_temperature_lowers_the_validation_nll(fitted):
    model, calibration, x_val, y_val = fitted
    logits = calibration.features(model, x_val).logits
    assert calibration.temperature != pytest.approx(1.0, abs=1e-3)
    assert temperature.nll(logits, y_val, calibration.temperature) < temperature.nll(logits, y_val)
    assert calibration.validation["nll_after"] < calibration.validation["nll_before"]


def test_threshold_flags_the_stated_share_of_validation_images(fitted):
    model, calibration, x_val, _ = fitted
    scored = cal.score_batch(model, calibration, x_val)
    assert abs(scored.flagged.mean() - cal.FLAG_SHARE) <= 0.01
    assert calibration.validation["flagged"] == pytest.approx(scored.flagged.mean())


def test_score_is_the_sum_of_its_parts_and_parts_match_numpy(fitted):
    from scipy.special import logsumexp

    model, calibration, x_val, _ = fitted
    features = calibration.features(model, x_val[:20])
    z = calibration.ood.z_parts(features)
    assert set(z) == {"penultimate", "early", "energy"}
    np.testing.assert_allclose(sum(z.values()), calibration.ood.scores(features))
    # Mahalanobis by its definition, one image and one class at a time.
    g = calibration.ood.penultimate
    f = features.penultimate[3]
    direct = min(float((f - m) @ g.precision @ (f - m)) for m in g.means)
    assert calibration.ood.raw_parts(features)["penultimate"][3] == pytest.approx(np.sqrt(direct), rel=1e-6)
    np.testing.assert_allclose(calibration.ood.raw_parts(features)["energy"], -logsumexp(features.logits, axis=1))


def test_features_and_logits_agree_with_the_model(fitted):
    from cnn.analysis.inference import activations, features_and_logits, predict_proba

    model, _, x_val, _ = fitted
    named, penultimate, logits = features_and_logits(model, x_val[:5], layers=("maxpool1",), spatial_mean=True)
    acts = activations(model, x_val[:5])
    np.testing.assert_allclose(temperature.softmax(logits), predict_proba(model, x_val[:5]), atol=1e-5)
    np.testing.assert_allclose(penultimate, acts[model.layers[-2].name], atol=1e-5)
    np.testing.assert_allclose(named["maxpool1"], acts["maxpool1"].mean(axis=(1, 2)), atol=1e-5)
    one = features_and_logits(model, x_val[0])
    assert one[1].shape == penultimate.shape[1:] and one[2].shape == (10,)
    empty = features_and_logits(model, x_val[:0])
    assert empty[1].shape == (0, penultimate.shape[1]) and empty[2].shape == (0, 10)


def test_wide_features_get_a_diagonal_covariance(monkeypatch):
    rng = np.random.default_rng(0)
    labels = np.arange(600) % 3
    features = rng.normal(0, [1.0, 2.0, 0.5, 3.0], (600, 4)) + labels[:, None]
    features[:, 2] = 0.0  # a dead unit: no variance, no weight
    monkeypatch.setattr(ood_parts, "MAX_FULL_COVARIANCE", 3)
    diagonal = ood_parts.fit_class_gaussians("wide", features, labels, 3)
    assert diagonal.precision.shape == (4,) and diagonal.precision[2] == 0
    full = ood_parts.ClassGaussians("wide", diagonal.means, np.diag(diagonal.precision))
    np.testing.assert_allclose(diagonal.squared_distances(features[:7]), full.squared_distances(features[:7]))
    again = ood_parts.ClassGaussians.from_dict(json.loads(json.dumps(diagonal.to_dict())))
    np.testing.assert_allclose(again.squared_distances(features[:7]), diagonal.squared_distances(features[:7]),
                               rtol=1e-5)


def test_file_round_trip_and_model_check(fitted, trained):
    model, calibration, x_val, _ = fitted
    again = cal.Calibration.from_json(calibration.to_json())
    again.check_model(model)
    np.testing.assert_allclose(cal.score_batch(model, again, x_val[:50]).scores,
                               cal.score_batch(model, calibration, x_val[:50]).scores, rtol=1e-4, atol=1e-4)
    assert again.temperature == calibration.temperature and again.ood.threshold == calibration.ood.threshold


@pytest.mark.parametrize("change, fragment", [
    (lambda d: "not json", "not valid JSON"),
    (lambda d: {**d, "version": 99}, "format version 99"),
    (lambda d: {**d, "temperature": -1}, "temperature -1"),
    (lambda d: {**d, "temperature": "hot"}, "'temperature' must be a finite number"),
    (lambda d: {**d, "ood": {**d["ood"], "threshold": float("nan")}}, "'threshold' must be a finite number"),
    (lambda d: {**d, "ood": {**d["ood"], "penultimate": {**d["ood"]["penultimate"], "means": [[1, 2], [3]]}}},
     "rectangular"),
    (lambda d: {**d, "ood": {**d["ood"], "penultimate": {**d["ood"]["penultimate"], "precision": [[1.0]]}}},
     "precision is 1×1"),
    (lambda d: {**d, "ood": {**d["ood"], "scale": {"penultimate": [0, 0]}}}, "positive spread"),
    (lambda d: {**d, "ood": {**d["ood"], "validation_quantiles": [3, 2, 1]}}, "increasing"),
    (lambda d: {**d, "ood": {**d["ood"], "flag_share": 2}}, "flag_share"),
    (lambda d: {k: v for k, v in d.items() if k != "ood"}, "'ood' must be an object"),
    (lambda d: "[" * 100_000, "not valid JSON"),
])
def test_damaged_or_hostile_files_are_refused_with_a_reason(fitted, change, fragment):
    _, calibration, _, _ = fitted
    data = change(json.loads(calibration.to_json()))
    text = data if isinstance(data, str) else json.dumps(data)
    with pytest.raises(CalibrationError, match=fragment):
        cal.Calibration.from_json(text)


def test_a_calibration_for_another_model_is_refused(fitted, small_data):
    from cnn.model.builder import build_model
    from cnn.model.spec import Conv2D, Dense, Flatten, MaxPooling2D, ModelSpec

    _, calibration, _, _ = fitted
    other = build_model(ModelSpec(layers=[Conv2D(4, 3), MaxPooling2D(2), Flatten(), Dense(16)]))
    with pytest.raises(CalibrationError, match="16 features|lacks"):
        calibration.check_model(other)


def test_assessment_and_lesson_of_one_input(fitted):
    model, calibration, x_val, _ = fitted
    one = cal.assess(model, calibration, x_val[0])
    batch = cal.score_batch(model, calibration, x_val[:1])
    np.testing.assert_allclose(one.probabilities, batch.probabilities[0], atol=1e-6)
    assert one.verdict.score == pytest.approx(batch.scores[0]) and one.verdict.flagged == bool(batch.flagged[0])
    assert 0 <= one.verdict.percentile <= 1 and one.verdict.message
    lesson = lessons_softmax.softmax_lesson(model, calibration, x_val[0], list("0123456789"))
    assert lesson.sums == pytest.approx((1.0, 1.0))
    np.testing.assert_allclose(lesson.shifted_probabilities, lesson.probabilities)  # only differences count
    assert lesson.exponentials.max() == 1.0 and lesson.top == int(one.probabilities.argmax())
    assert lesson.distances.min() == pytest.approx(one.verdict.distance, rel=1e-5)
    assert int(lesson.distances.argmin()) == one.verdict.nearest_class
    uncalibrated = lessons_softmax.softmax_lesson(model, None, x_val[0], list("0123456789"))
    assert uncalibrated.verdict is None and uncalibrated.temperature == 1.0


def test_the_explain_pass_can_be_reused(fitted):
    from cnn.analysis.inference import explain

    model, calibration, x_val, _ = fitted
    probe = explain(model, x_val[1])
    reused = cal.assess(model, calibration, x_val[1], probe.activations)
    fresh = cal.assess(model, calibration, x_val[1])
    np.testing.assert_allclose(reused.probabilities, fresh.probabilities, atol=1e-5)
    np.testing.assert_allclose(reused.raw_probabilities, probe.probabilities, atol=1e-5)
    assert reused.verdict.score == pytest.approx(fresh.verdict.score, abs=1e-3)
    lesson = lessons_softmax.softmax_lesson(model, calibration, x_val[1], list("0123456789"), probe.activations)
    assert lesson.distances.min() == pytest.approx(fresh.verdict.distance, rel=1e-4)


def test_evaluation_carries_raw_and_calibrated_probabilities(fitted, trained):
    from cnn.analysis.metrics import evaluate

    model, calibration, _, _ = fitted
    data = trained[2]
    plain = evaluate(model, data.x_test, data.y_test, data.class_names)
    calibrated = evaluate(model, data.x_test, data.y_test, data.class_names, calibration=calibration)
    assert calibrated.accuracy == plain.accuracy and not plain.calibrated and calibrated.calibrated
    np.testing.assert_allclose(calibrated.raw_probabilities, plain.probabilities, atol=1e-5)
    assert calibrated.raw_loss == pytest.approx(plain.loss, rel=1e-4)
    assert calibrated.loss == pytest.approx(temperature.nll(np.log(calibrated.probabilities), data.y_test), rel=1e-5)
    assert calibrated.ece_before == pytest.approx(plain.ece_after)
    assert len(calibrated.ood_scores) == len(data.y_test) and 0 <= calibrated.flagged_share <= 1
    summary = calibrated.summary()
    assert summary["calibrated"] and summary["temperature"] == calibration.temperature
    header = calibrated.to_csv().splitlines()[0].split(",")
    assert header[-13:] == ["raw_confidence", *[f"raw_p_{c}" for c in data.class_names], "ood_score", "unusual"]
    assert plain.to_csv().splitlines()[0].split(",")[-1] == "p_9" and plain.summary()["calibrated"] is False


def test_predict_images_reports_the_verdict(fitted, trained):
    from cnn.analysis.predict import predict_images

    model, calibration, _, _ = fitted
    data = trained[2]
    images = [("digit", data.x_test[0]), ("dots", gen.dots(np.random.default_rng(1))), ("bad", b"not an image")]
    rows = predict_images(model, images, (28, 28, 1), data.class_names, calibration=calibration)
    assert rows[2]["error"] and "prediction" not in rows[2]
    for row in rows[:2]:
        assert row["calibrated"] and row["temperature"] == calibration.temperature
        assert sum(row["probabilities"].values()) == pytest.approx(1) and row["ood_threshold"] is not None
        assert row["unusual"] == (row["ood_score"] > row["ood_threshold"])
    plain = predict_images(model, images[:1], (28, 28, 1), data.class_names)[0]
    assert plain["calibrated"] is False and plain["unusual"] is None
    assert plain["probabilities"] == pytest.approx(rows[0]["raw_probabilities"], abs=1e-5)


# ---------------------------------------------------------------------------
# Stored with the model: training writes it, the CLI refits it, uploads keep only a valid one
# ---------------------------------------------------------------------------

def test_training_saves_a_calibration_and_without_a_validation_split_says_why(registry, trained):
    from dataclasses import replace

    from cnn.store.registry import model_info
    from cnn.run.workflows import evaluate_and_save

    result, spec, data = trained
    evaluation, info = evaluate_and_save(result, spec, data, "calibrated")
    stored = cal.load_calibration(info)
    assert stored is not None and evaluation.calibrated and stored.temperature == evaluation.temperature
    assert info.metrics["calibrated"] and info.metrics["ece_after"] == pytest.approx(evaluation.ece_after)
    assert cal.calibration_summary(info)["calibrated"]
    no_split = replace(spec, train=replace(spec.train, validation_split=0.0))
    evaluation, info = evaluate_and_save(result, no_split, data, "uncalibrated")
    assert cal.load_calibration(info) is None and not evaluation.calibrated
    assert "validation split 0" in model_info("uncalibrated").metrics["calibration_note"]
    assert not cal.calibration_summary(info)["calibrated"]


def test_a_streamed_folder_dataset_is_calibrated_on_its_held_out_split(registry, tmp_path):
    from cnn.data.load import load_dataset
    from cnn.model.spec import Conv2D, Dense, Flatten, MaxPooling2D, ModelSpec, TrainConfig
    from cnn.run.workflows import train_and_save
    from tests.engine.test_data import make_class_folders

    data = load_dataset(str(make_class_folders(tmp_path / "f", per_class=40)))
    assert data.streamed and data.num_test >= 20
    spec = ModelSpec(input_shape=data.input_shape, num_classes=3,
                     layers=[Conv2D(4, 3), MaxPooling2D(2), Flatten(), Dense(8)],
                     train=TrainConfig(epochs=1, batch_size=16))
    seen = []
    _, evaluation, info = train_and_save(spec, data, "folders", on_calibration_progress=lambda d, t: seen.append(d))
    stored = cal.load_calibration(info)
    assert stored.fitted_on["split"].startswith("held-out test split")
    assert stored.fitted_on["fit_images"] == data.num_train and seen[-1] == data.num_train
    assert stored.validation["images"] == data.num_test and evaluation.calibrated


def test_calibrate_adds_the_file_and_leaves_the_model_untouched(registry, trained):
    from cnn.store.registry import model_info, save_model, write_extra_file
    from cnn.core.errors import RegistryError

    result, spec, data = trained
    info = save_model("later", result.model, spec, result.history, {"dataset": "mnist-sample"})
    before = (info.path / "model.keras").read_bytes()
    assert cal.load_calibration(info) is None
    fitted = workflows.calibrate_model("later", data)
    info = model_info("later")
    assert (info.path / "model.keras").read_bytes() == before
    assert cal.load_calibration(info).temperature == fitted.temperature
    assert not [p for p in info.path.iterdir() if p.name.startswith(".tmp")]  # nothing half-written left
    with pytest.raises(RegistryError, match="unexpected model file"):
        write_extra_file("later", "../evil.json", b"{}")
    (info.path / cal.FILE).write_text("{broken")
    with pytest.raises(CalibrationError, match="python -m cnn calibrate later"):
        cal.load_calibration(model_info("later"))
    assert not cal.calibration_summary(model_info("later"))["calibrated"]


def test_an_upload_is_calibrated_when_its_dataset_is_at_hand_else_marked(registry, trained):
    from cnn.store.registry import model_info, save_model

    result, spec, data = trained
    save_model("upload", result.model, spec, result.history, {"dataset": "mnist-sample"})
    fitted, note = workflows.calibrate_if_possible("upload", data)
    assert fitted is not None and note == "" and cal.load_calibration(model_info("upload")) is not None
    save_model("stranger", result.model, spec, result.history, {"dataset": "unknown"})
    fitted, note = workflows.calibrate_if_possible("stranger")
    assert fitted is None and note.startswith("uncalibrated") and "--dataset" in note
    assert cal.load_calibration(model_info("stranger")) is None


def test_calibrate_refuses_a_dataset_that_does_not_fit(registry, trained):
    from cnn.data.datasets import Dataset
    from cnn.store.registry import save_model

    result, spec, data = trained
    save_model("wrong", result.model, spec, result.history, {"dataset": "mnist-sample"})
    colour = Dataset("colour", data.class_names, (32, 32, 3), np.zeros((20, 32, 32, 3), np.uint8),
                     np.arange(20) % 10, np.zeros((20, 32, 32, 3), np.uint8), np.arange(20) % 10, "test")
    with pytest.raises(CalibrationError, match=r"takes \(28, 28, 1\) images"):
        workflows.calibrate_model("wrong", colour)


def test_an_uploaded_bundle_keeps_only_a_valid_calibration(registry, trained, fitted):
    import io
    import zipfile

    from cnn.store.bundles import bundle_bytes, import_model
    from cnn.store.registry import model_info, save_model

    result, spec, data = trained
    _, calibration, _, _ = fitted
    save_model("source", result.model, spec, result.history, {"dataset": "mnist-sample"},
               extra_files={cal.FILE: calibration.to_json().encode()})
    bundle = bundle_bytes("source")
    kept = import_model(bundle, "source.zip", name="kept")
    assert cal.load_calibration(kept).temperature == calibration.temperature
    # The same bundle with a tampered calibration: the model comes in, uncalibrated, with a note.
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(bundle)) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.namelist():
            data_bytes = src.read(item)
            if item.endswith(cal.FILE):
                data_bytes = json.dumps({**json.loads(data_bytes), "temperature": 1e9}).encode()
            dst.writestr(item, data_bytes)
    dropped = import_model(out.getvalue(), "tampered.zip", name="dropped")
    assert cal.load_calibration(dropped) is None
    assert "calibration.json was left out" in model_info("dropped").metrics["calibration_note"]


# ---------------------------------------------------------------------------
# The committed default model: its calibration and its flag rates on generated canvases
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def default(default_model_dir):
    """(model, calibration) of the committed models/mnist-default, read from its folder."""
    import keras

    from cnn.store.registry import ModelInfo

    info = ModelInfo("mnist-default", default_model_dir, {}, {}, 0.0)
    calibration = cal.load_calibration(info)
    assert calibration is not None, "models/mnist-default/calibration.json is missing: run python -m cnn calibrate"
    model = keras.saving.load_model(default_model_dir / "model.keras", compile=False, safe_mode=True)
    calibration.check_model(model)
    return model, calibration


def test_default_model_flags_its_stated_share_of_its_validation_images(default, default_model_dir, full_mnist):
    from cnn.data.load import load_dataset
    from cnn.model.spec import ModelSpec
    from cnn.data.splits import split_validation

    model, calibration = default
    train = ModelSpec.from_json((default_model_dir / "spec.json").read_text()).train
    data = load_dataset("mnist")
    _, (x_val, _) = split_validation(data.x_train, data.y_train, train.validation_split, train.seed)
    share = cal.score_batch(model, calibration, x_val).flagged.mean()
    assert abs(share - calibration.ood.flag_share) <= 0.01


def test_default_model_flags_non_digits_but_not_digits(default):
    from cnn.data.load import load_dataset

    model, calibration = default
    # Generated non-digits (30 of each NON_DIGITS family), through prepare_image like a canvas drawing.
    images, families = gen.non_digits(240, seed=7)
    x, kept = gen.prepare_all(images)
    flagged = cal.score_batch(model, calibration, x).flagged
    families = np.array(families)[kept]
    assert flagged.mean() >= 0.88, f"only {flagged.mean():.1%} of non-digits flagged"
    for family in gen.NON_DIGITS:
        assert flagged[families == family].mean() >= 0.6, family
    # Digits drawn like the canvas: few flagged, and still read right.
    images, labels = gen.drawn_digits(200, seed=8)
    x, kept = gen.prepare_all(images)
    scored = cal.score_batch(model, calibration, x)
    assert kept.all() and scored.flagged.mean() <= 0.08
    assert np.mean(scored.probabilities.argmax(axis=1) == labels) >= 0.97
    # MNIST test digits (the embedded sample's 2,000): about the stated share.
    sample = load_dataset("mnist-sample")
    assert cal.score_batch(model, calibration, sample.x_test).flagged.mean() <= 0.07


def test_default_model_ece_after_the_temperature_is_small(default):
    from cnn.data.load import load_dataset

    model, calibration = default
    sample = load_dataset("mnist-sample")
    scored = cal.score_batch(model, calibration, sample.x_test)
    assert temperature.expected_calibration_error(scored.probabilities, sample.y_test) <= 0.01
    assert calibration.temperature > 1  # the default model was overconfident on its validation images


# ---------------------------------------------------------------------------
# Figures: arrays in, go.Figure out
# ---------------------------------------------------------------------------

def test_calibration_figures_show_what_they_say():
    from cnn.figures.probabilities import FAMILIAR, UNUSUAL, distance_bars, ood_gauge, ood_histogram, reliability_diagram, temperature_bars

    logits, labels = overconfident(n=1000, sharpen=2.0)
    before = temperature.reliability(temperature.softmax(logits), labels)
    after = temperature.reliability(temperature.softmax(logits, 2.0), labels)
    fig = reliability_diagram(before, after)
    bars = [t for t in fig.data if t.type == "bar"]
    assert [f"ECE {before.ece:.4f}" in bars[0].name, f"ECE {after.ece:.4f}" in bars[1].name] == [True, True]
    np.testing.assert_allclose(bars[0].y, before.accuracy[before.counts > 0])
    assert len(reliability_diagram(before).data) == 2  # one series and the diagonal

    scores = np.r_[np.zeros(95), np.full(5, 10.0)]
    hist = ood_histogram(scores, threshold=5.0, marker=12.0)
    colours = dict(zip(hist.data[0].x, hist.data[0].marker.color))
    assert {c for x, c in colours.items() if x > 5} == {UNUSUAL} and {c for x, c in colours.items() if x < 5} == {FAMILIAR}
    assert sum(hist.data[0].y) == 100 and "5.0% above" in hist.layout.annotations[0].text

    gauge = ood_gauge(7.0, 3.0).data[0]
    assert gauge.value == 7.0 and gauge.gauge.bar.color == UNUSUAL and gauge.gauge.threshold.value == 3.0
    assert ood_gauge(-1.0, 3.0).data[0].gauge.bar.color == FAMILIAR

    bars = temperature_bars("ab", [0.9, 0.1], [0.7, 0.3], 2.0).data
    assert [list(b.y) for b in bars] == [[0.9, 0.1], [0.7, 0.3]] and "2.00" in bars[1].name
    far = distance_bars("abc", [20.0, 25.0, 30.0], {"p50": 7.0, "p95": 11.0, "p99": 13.0})
    assert far.data[0].marker.color[0] == UNUSUAL and len(far.layout.shapes) == 3

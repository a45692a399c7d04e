"""AppTest: calibrated probabilities and the "doesn't look like anything it was trained on" verdict on Predict,
Evaluate, Learn and Models, with the committed default model (which carries its calibration)."""
import io
import shutil

import numpy as np
import pytest
from PIL import Image

from app import session
from app.session import Tab
from cnn.store import registry as reg
from tests.apptest import open_app, texts
from tests.ood_images import drawn_digit, scribble


@pytest.fixture
def default_model(registry, default_model_dir):
    shutil.copytree(default_model_dir, reg.models_dir() / "mnist-default")
    return "mnist-default"


def png(rgba: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgba).save(buffer, format="PNG")
    return buffer.getvalue()


def upload(at, name: str, data: bytes):
    at.segmented_control(key="predict_source").set_value("Upload").run()
    at.file_uploader(key="predict_upload").set_value([(name, data, "image/png")]).run()
    assert not at.exception
    return at


def test_a_scribble_is_flagged_and_a_digit_is_not(default_model):
    rng = np.random.default_rng(3)
    at = upload(open_app("predict"), "scribble.png", png(scribble(rng)))
    assert any("Doesn't look like a digit this model knows" in w for w in texts(at, "warning"))
    gauge = [c for c in at.get("plotly_chart") if "indicator" in c.proto.spec]
    assert gauge, "the verdict's gauge is shown"
    at = upload(open_app("predict"), "three.png", png(drawn_digit(rng, 3)))
    assert next(m for m in at.metric if m.label == "Prediction").value == "3"
    assert not any("Doesn't look like" in w for w in texts(at, "warning"))
    assert any("Looks like the digits it was trained on" in c for c in texts(at, "caption"))


def test_before_an_input_the_gauge_is_empty_and_the_raw_softmax_is_drawn_only_when_opened(default_model):
    at = open_app("predict")
    assert not at.exception
    assert [m.value for m in at.metric if m.label == "Prediction"] == ["—"]
    gauge = next(c for c in at.get("plotly_chart") if "indicator" in c.proto.spec)
    assert '"rgba(0,0,0,0)"' in gauge.proto.spec  # no score shown
    assert not any("softmax(logits" in c.proto.spec for c in at.get("plotly_chart"))
    at.session_state[session.PREDICT_RAW_OPEN] = True
    at.run()
    assert not at.exception
    assert any("softmax(logits" in c.proto.spec for c in at.get("plotly_chart"))


def test_an_uncalibrated_model_says_so(registry, trained):
    result, spec, data = trained
    reg.save_model("raw", result.model, spec, result.history, {"dataset": "mnist-sample",
                                                                 "class_names": data.class_names})
    at = open_app("predict")
    at.segmented_control(key="predict_source").set_value("Sample").run()
    assert any("uncalibrated" in c for c in texts(at, "caption"))


def test_evaluate_shows_calibration_and_unusual_inputs(default_model):
    at = open_app("evaluate", eval_tabs="Calibration")
    metrics = {m.label: m.value for m in at.metric}
    assert float(metrics["Calibration error (ECE), raw softmax"]) > float(metrics["After temperature scaling"])
    assert float(metrics["Temperature"]) > 1  # the raw softmax was over-sure
    at.session_state["eval_tabs"] = "Unusual inputs"
    at.run()
    assert any("of the test images score above the threshold" in str(c.proto.spec) for c in at.get("plotly_chart"))


def test_learn_explains_why_softmax_is_not_certainty(default_model):
    scribbled = scribble(np.random.default_rng(0))  # scores 6.9 against a threshold of 3.3 on the default model
    from cnn.data.preprocess import prepare_image

    x = prepare_image(scribbled, (28, 28, 1))
    at = open_app("learn", learn_chapter=5,  # 6 · Why "99.9%" is not certainty
                  **{session.PREDICT_INPUT: {"x": x, "model": "mnist-default", "label": None}})
    text = "\n".join(texts(at, "markdown"))
    assert "always add up to 1" in text and "(here 1.000000)" in text
    assert any("doesn't look like anything the model was trained on" in w for w in texts(at, "warning"))


def test_models_calibrates_a_model_that_has_none(registry, trained):
    result, spec, data = trained
    reg.save_model("raw", result.model, spec, result.history, {"dataset": "mnist-sample",
                                                                 "class_names": data.class_names})
    at = open_app("models", tab=Tab(active_model="raw"))
    assert any("uncalibrated" in c for c in texts(at, "caption"))
    at.button(key="models_calibrate").click().run()
    assert any("Calibrated 'raw'" in s for s in texts(at, "success"))
    assert (reg.models_dir() / "raw" / "calibration.json").is_file()
    assert at.button(key="models_calibrate").label == "Recalibrate"

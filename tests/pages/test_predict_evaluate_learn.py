"""AppTest for Predict, Evaluate and Learn with a trained model on the embedded sample."""
import io
import json

import numpy as np
import pytest
from PIL import Image, ImageDraw

from cnn.store import registry as reg
from app import resources, session
from app.session import Tab
from tests.apptest import open_app, texts


def save_small(trained) -> str:
    result, spec, data = trained
    reg.save_model("small", result.model, spec, result.history,
                   {"dataset": "mnist-sample", "class_names": data.class_names, "test_accuracy": 0.9,
                    "epochs": 2, "num_test": 500})
    return "small"


@pytest.fixture(scope="module")
def shared_registry(tmp_path_factory, trained):
    """One registry with the small model for this module's tests that only read it: what the pages compute
    for a model (kept per model folder) carries over from test to test, as from visitor to visitor."""
    folder = tmp_path_factory.mktemp("sample") / "models"
    with reg.using_models_dir(folder):
        save_small(trained)
    return folder


@pytest.fixture
def model_on_sample(shared_registry, monkeypatch):
    monkeypatch.setenv("CNN_MODELS_DIR", str(shared_registry))
    return "small"


@pytest.fixture
def model_of_its_own(registry, trained):
    """The small model in this test's own registry (for a test that changes it)."""
    return save_small(trained)


def png_of_digit(dark_on_light: bool = True) -> bytes:
    image = Image.new("L", (200, 200), 235 if dark_on_light else 0)
    draw = ImageDraw.Draw(image)
    ink = 30 if dark_on_light else 255
    draw.line([(60, 40), (140, 40), (90, 170)], fill=ink, width=14)  # a 7
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def charts(at) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


# ---------------------------------------------------------------------------
# Predict
# ---------------------------------------------------------------------------

def test_predict_upload_one_file(model_on_sample):
    at = open_app("predict")
    at.segmented_control(key="predict_source").set_value("Upload").run()
    at.file_uploader(key="predict_upload").set_value([("seven.png", png_of_digit(), "image/png")]).run()
    assert not at.exception
    prediction = next(m for m in at.metric if m.label == "Prediction")
    bars = next(c for c in charts(at) if c["data"][0].get("type") == "bar")
    probs = bars["data"][0]["y"]
    assert len(probs) == 10 and abs(sum(probs) - 1) < 1e-3
    assert prediction.value == str(int(np.argmax(probs)))
    stored = at.session_state[session.PREDICT_INPUT]
    assert stored["x"].shape == (28, 28, 1) and stored["model"] == "small"
    # The upload was dark ink on light paper: auto-invert made the background black.
    assert stored["x"][0, 0, 0] == 0 and stored["x"].max() > 200


def test_predict_several_uploads_table_and_bad_file(model_on_sample):
    at = open_app("predict")
    at.segmented_control(key="predict_source").set_value("Upload").run()
    at.file_uploader(key="predict_upload").set_value([
        ("a.png", png_of_digit(), "image/png"), ("b.png", png_of_digit(False), "image/png"),
        ("broken.png", b"\x89PNG\r\n\x1a\n broken", "image/png")]).run()
    assert not at.exception
    rows = at.dataframe[0].value.to_dict("records")
    assert [r["file"] for r in rows] == ["a.png", "b.png", "broken.png"]
    assert rows[2]["prediction"] == "–" and rows[2]["note"]
    assert rows[0]["prediction"] in list("0123456789")


def test_predict_sample_shows_the_true_label_and_next(model_on_sample):
    at = open_app("predict")
    at.segmented_control(key="predict_source").set_value("Sample").run()
    first = at.session_state["predict_sample_index"]
    true = next(c.value for c in at.caption if "true label" in c.value).split("**")[1]
    predicted = at.metric[0].value
    # the verdict agrees with the shown prediction (a small model may be wrong: then it must say so)
    verdicts = [t for t in texts(at, "success") + texts(at, "warning") if t.startswith("True label")]  # wrong: a warning
    assert verdicts == [f"True label {true}: {'right' if predicted == true else 'wrong'}"]
    assert (texts(at, "success") != []) == (predicted == true)
    for _ in range(3):  # a different random image (3 tries: a repeat is possible but unlikely)
        at.button(key="predict_next").click().run()
        if at.session_state["predict_sample_index"] != first:
            break
    assert at.session_state["predict_sample_index"] != first


def test_predict_opens_while_tensorflow_still_loads_and_predicts_once_ready(model_on_sample, monkeypatch):
    """Right after a server starts, Predict shows its inputs at once and says the model is loading; it must not
    load the model (nor import TensorFlow for it) meanwhile, and it predicts as soon as the warm-up is done."""
    from app import warmup

    at = open_app("predict")
    at.segmented_control(key="predict_source").set_value("Sample").run()
    resources._caches()["models"].clear()  # as on a fresh server: no model loaded yet
    loads = []
    with monkeypatch.context() as warming:
        warming.setattr(warmup, "status", lambda: {"running": True, "seconds": None, "error": None})
        warming.setattr(reg, "load_model", lambda *a, **k: loads.append(a))
        at.run()
    assert not at.exception
    assert any("Loading TensorFlow and the model" in t for t in texts(at, "info"))
    assert any("true label" in c.value for c in at.caption) and not at.metric and loads == []
    at.run()  # the warm-up has finished
    assert not at.exception and not any("Loading TensorFlow" in t for t in texts(at, "info"))
    assert next(m for m in at.metric if m.label == "Prediction").value in list("0123456789")


def test_predict_views_change_with_their_controls(model_on_sample):
    at = open_app("predict")
    at.segmented_control(key="predict_source").set_value("Sample").run()
    at.selectbox(key="predict_layer").set_value("conv2").run()
    grid = next(c for c in charts(at) if "conv2: 16 feature maps" in str(c["layout"].get("title", "")))
    # One picture for all 16 maps (sent as an image, not 16 heatmaps), each labelled.
    assert [t["type"] for t in grid["data"] if t["type"] != "scatter"] == ["image"]
    assert [a["text"] for a in grid["layout"]["annotations"]] == [f"#{i}" for i in range(16)]
    assert not any("Grad-CAM" in str(c["layout"].get("title", "")) for c in charts(at))  # closed views cost nothing
    at.session_state["predict_view"] = "Grad-CAM & saliency"  # what clicking the tab does
    at.run()
    at.selectbox(key="predict_cam_class").set_value(3).run()
    titles = [str(c["layout"].get("title", "")) for c in charts(at)]
    assert any("Grad-CAM for '3' at conv2" in t for t in titles)
    at.session_state["predict_view"] = "Robustness"
    at.run()
    at.radio(key="predict_sweep").set_value("scale").run()
    sweep = next(c for c in charts(at) if c["layout"].get("xaxis", {}).get("title", {}).get("text") == "scale (×)")
    assert len(sweep["data"]) == 10


def test_predict_draw_tab_without_a_drawing_says_draw(model_on_sample):
    at = open_app("predict")
    assert not at.exception
    assert any("Draw something" in s for s in texts(at, "info"))
    # The same layout as with a drawing, with nothing predicted: empty bars, the blank input's activation maps.
    assert [m.value for m in at.metric if m.label == "Prediction"] == ["—"]
    probabilities = next(c for c in charts(at) if c["layout"].get("yaxis", {}).get("title", {}).get("text") ==
                         "probability")
    assert probabilities["data"][0]["y"] == [0.0] * 10
    assert set(probabilities["data"][0]["marker"]["color"]) == {"#9ecae1"}  # no class highlighted
    assert any("only its layer's biases" in c for c in texts(at, "caption"))


def test_predict_without_a_model(registry):
    at = open_app("predict")
    assert any("No active model" in s for s in texts(at, "info"))


# ---------------------------------------------------------------------------
# Evaluate
# ---------------------------------------------------------------------------

def test_evaluate_shows_metrics_matrix_and_table(model_on_sample):
    at = open_app("evaluate")
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Test images"] == "2,000"  # the whole test split of the embedded sample
    cm = next(c for c in charts(at) if len(c["data"]) == 3 and c["data"][2]["type"] == "scatter")
    assert sum(p[2] for p in cm["data"][2]["customdata"]) == 2000
    rows = at.dataframe[0].value.to_dict("records")
    assert [r["support"] for r in rows] == [200] * 10
    acc = float(metrics["Test accuracy"].rstrip("%")) / 100
    mistakes = int(metrics["Mistakes"].replace(",", ""))
    assert mistakes == round((1 - acc) * 2000)
    at.toggle(key="eval_normalise").set_value(True).run()
    assert not at.exception
    from cnn.analysis.metrics import filter_report  # the page's dead-filter lines are the engine's report, cached

    from cnn.data.load import load_dataset

    expected = filter_report(reg.load_model("small"), load_dataset("mnist-sample").x_test[:2000])
    assert not [m for m in texts(at, "markdown") if "filters dead" in m]  # a closed tab is not computed
    at.session_state["eval_tabs"] = "Dead filters"  # what clicking the tab does
    at.run()
    shown = [m for m in texts(at, "markdown") if "filters dead" in m]
    assert shown == [f"**{r['layer']}** ({r['activation']}): {r['dead']} of {r['filters']} filters dead "
                     f"({r['dead_share']:.0%})" for r in expected] and shown


def test_evaluate_without_a_model(registry):
    at = open_app("evaluate")
    assert any("No active model" in s for s in texts(at, "info"))


# ---------------------------------------------------------------------------
# Learn
# ---------------------------------------------------------------------------

def learn_markdown(at) -> str:
    return "\n".join(texts(at, "markdown"))


def chapter(at, index: int):
    """Turn Learn to chapter `index` (0-based) with its picker."""
    at.segmented_control(key="learn_chapter").set_value(index).run()
    assert not at.exception, [e.value for e in at.exception]
    assert [h.value for h in at.header][-1].startswith(f"{index + 1} · ")
    return at


def test_learn_walkthrough_agrees_with_keras(model_on_sample):
    at = open_app("learn")
    assert [h.value for h in at.header] == ["1 · Pixels and channels"]  # one chapter at a time
    assert [c.proto.id.rsplit("-", 1)[-1] for c in at.get("plotly_chart")] == ["learn_pixels"]
    successes = texts(chapter(at, 1), "success")
    assert any("conv1, filter 0, after relu: NumPy and Keras agree" in s for s in successes)
    successes = texts(chapter(at, 4), "success")
    assert any("softmax probabilities: NumPy and Keras agree" in s for s in successes)
    assert any("dense1 unit 0: NumPy and Keras agree" in s for s in successes)
    assert not texts(at, "error")


def test_learn_controls_change_the_numbers(model_on_sample):
    at = chapter(open_app("learn"), 1)
    before = learn_markdown(at)
    at.selectbox(key="learn_kernel").set_value("vertical edges").run()
    at.selectbox(key="learn_stride").set_value(2).run()
    text = learn_markdown(at)
    assert "height ⌊(28−3+0)/2⌋+1 = 13" in text and text != before
    at.radio(key="learn_padding").set_value("same").run()
    assert "height ⌊(28−3+1)/2⌋+1 = 14" in learn_markdown(at)
    at.slider(key="learn_row").set_value(3).run()
    assert not at.exception
    # ReLU and pooling go on from chapter 2's convolution, which keeps its settings meanwhile.
    chapter(at, 2)
    assert any("the vertical edges kernel, stride 2, padding 'same'" in c for c in texts(at, "caption"))
    zero_text = [t for t in texts(at, "markdown") if "values zeroed" in t][0]
    chapter(at, 3)
    at.radio(key="learn_pool_mode").set_value("avg")
    at.selectbox(key="learn_pool").set_value(3).run()
    assert "'valid' ⌊(14−3+0)/3⌋+1 = 4, 'same' ⌊(14−3+1)/3⌋+1 = 5" in learn_markdown(at)
    chapter(at, 2)
    assert zero_text in learn_markdown(at)  # ReLU's count depends on the conv only
    chapter(at, 1)  # back in chapter 2, every control as it was left
    assert (at.selectbox(key="learn_kernel").value, at.selectbox(key="learn_stride").value,
            at.radio(key="learn_padding").value, at.slider(key="learn_row").value) == ("vertical edges", 2, "same", 3)
    chapter(at, 6)
    at.slider(key="learn_dropout_rate").set_value(0.8).run()
    dropout = [t for t in texts(at, "markdown") if "dropout zeroes" in t][0]
    assert "rate 80%" in dropout and "1/(1−0.80) = **5.00**" in dropout
    from cnn.data.load import load_dataset
    from cnn.teach.learning import learning_step, runner_up
    from cnn.analysis.inference import predict_proba

    data = load_dataset("mnist-sample")
    x = data.x_test[0]  # the walkthrough's image when nothing was drawn on Predict
    others = (data.x_test[-300:], data.y_test[-300:])
    # At the defaults the lesson works: the runner-up class as the label, a rate at which the loss falls.
    chapter(at, 7)
    label = runner_up(predict_proba(reg.load_model("small"), x))
    assert at.selectbox(key="learn_label").value == label
    suggested = learning_step(reg.load_model("small"), x, label, None, "conv1", others)
    assert at.select_slider(key=f"learn_lr_{label}").value == suggested.learning_rate
    metrics = {m.label: float(m.value) for m in at.metric if m.label.startswith("loss")}
    assert metrics["loss after"] < metrics["loss before"]
    assert metrics["loss after"] == pytest.approx(suggested.loss_after, abs=2e-4)
    assert not any("loss went up" in w for w in texts(at, "warning"))

    other = 2 if label != 2 else 3
    at.selectbox(key="learn_label").set_value(other).run()
    assert not at.exception
    for lr in (0.1, 1.0):  # the page's numbers are the engine's learning step for the chosen label and rate
        at.select_slider(key=f"learn_lr_{other}").set_value(lr).run()
        expected = learning_step(reg.load_model("small"), x, other, lr, "conv1", others)
        metrics = {m.label: float(m.value) for m in at.metric if m.label.startswith("loss")}
        assert metrics["loss before"] == pytest.approx(expected.loss_before, abs=2e-4)
        assert metrics["loss after"] == pytest.approx(expected.loss_after, abs=2e-4)
        # A step that raises the loss is called an overshoot, with the rate that would have worked.
        assert any("loss went up" in w for w in texts(at, "warning")) == expected.overshot


def test_learn_previous_and_next_walk_every_chapter_and_keep_the_filter_picked(model_on_sample):
    at = chapter(open_app("learn"), 1)
    at.slider(key="learn_filter").set_value(3).run()
    titles = [at.header[-1].value]
    while any(b.key == "learn_next" for b in at.button):
        at.button(key="learn_next").click().run()
        assert not at.exception and not texts(at, "error")
        titles.append(at.header[-1].value)
    assert [t.split(" · ")[0] for t in titles] == [str(i) for i in range(2, 10)]
    assert not any(b.key == "learn_next" for b in at.button)  # the last chapter has no Next
    at.button(key="learn_previous").click().run()
    assert at.header[-1].value == "8 · Learning: one gradient-descent step"
    # The learning step shows the filter picked in chapter 2, six chapters ago.
    assert any(c.proto.id.endswith("learn_step") and "conv1 filter 3 before" in c.proto.spec
               for c in at.get("plotly_chart"))
    # A new script run of the same tab (a refresh) opens Learn where it was left.
    at.switch_page("pages/home.py").run()
    at.switch_page("pages/learn.py").run()
    assert at.header[-1].value == "8 · Learning: one gradient-descent step"


def test_learn_a_kept_position_that_no_longer_fits_starts_again_in_the_middle(model_on_sample):
    at = chapter(open_app("learn"), 3)  # 4 · Pooling of chapter 2's 26×26 map: 13×13
    at.slider(key="learn_pool_row").set_value(12).run()
    chapter(at, 1)
    at.selectbox(key="learn_stride").set_value(3).run()  # now a 9×9 map, pooled 4×4
    chapter(at, 3)
    assert not at.exception and not texts(at, "error")
    assert at.slider(key="learn_pool_row").value == 2 and at.slider(key="learn_pool_row").max == 3


def test_learn_uses_the_image_from_predict(model_on_sample):
    drawn = np.zeros((28, 28, 1), np.uint8)
    drawn[5:20, 12:15] = 255  # a "1" of 45 ink pixels
    at = open_app("learn", **{session.PREDICT_INPUT: {"x": drawn, "model": "small", "label": None}})
    text = learn_markdown(at)
    assert "**45 ink pixels**" in text
    assert any("your image from **Predict**" in c.value for c in at.caption)


def test_learn_without_a_model(registry):
    at = open_app("learn")
    assert any("No active model" in s for s in texts(at, "info"))


@pytest.mark.parametrize("page", ["predict", "evaluate", "learn"])
def test_a_model_whose_file_is_damaged_is_named_not_a_traceback(model_of_its_own, page):
    (reg.models_dir() / "small" / "model.keras").write_bytes(b"PK\x03\x04 not really a model")
    at = open_app(page)
    assert not at.exception
    assert any("cannot load model 'small'" in e and "Pick another model" in e for e in texts(at, "error"))


def test_offline_without_full_mnist_the_default_model_uses_the_embedded_sample(registry, default_model_dir, tmp_path,
                                                                               monkeypatch):
    import shutil

    import keras

    shutil.copytree(default_model_dir, reg.models_dir() / "mnist-default")
    monkeypatch.setenv("CNN_DATA_DIR", str(tmp_path))  # no mnist.npz here
    attempts = []

    def offline():
        attempts.append(1)
        raise OSError("no network")

    monkeypatch.setattr(keras.datasets.mnist, "load_data", offline)
    monkeypatch.setattr(resources, "_stand_in_reasons", {})  # this process's memory of failed loads, reset after
    resources.dataset.clear()  # an earlier test may have cached the full set
    try:
        at = open_app("evaluate", tab=Tab(active_model="mnist-default"))
        note = next(s for s in texts(at, "info") if "is not on this server" in s)
        assert "MNIST sample (embedded, offline)" in note and "2,000 test images" in note
        assert "mnist-sample" not in note and "Error" not in note  # plain words; the details are folded away
        assert any("CNN_DATA_DIR" in c and "no network" in c for c in texts(at, "caption"))
        metrics = {m.label: m.value for m in at.metric}
        assert metrics["Test images"] == "2,000" and float(metrics["Test accuracy"].rstrip("%")) > 97

        at.switch_page("pages/predict.py")
        at.run()
        at.segmented_control(key="predict_source").set_value("Sample").run()
        assert not at.exception
        assert any("is not on this server" in i for i in texts(at, "info"))
        assert any("of MNIST sample (embedded, offline) — true label" in c.value for c in at.caption)
        assert len(attempts) == 1  # one failed download, not one per rerun
    finally:
        resources.dataset.clear()

"""AppTest: every page renders; Configure edits and errors; Train runs, stops and saves; Models uploads."""
import io
import json
import zipfile

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from cnn.store import registry as reg
from cnn.store import bundles
from app import session
from app.session import Tab
from cnn.model.spec import Conv2D, Flatten, MaxPooling2D, ModelSpec, TrainConfig, preset
from tests.apptest import finished, open_app, session_job, sidebar_model, tab_of, texts, wait_for
from tests.conftest import ROOT

PAGES = ["home", "configure", "train", "predict", "evaluate", "learn", "models"]


@pytest.fixture
def saved_model(registry, trained):
    """A registry with one small trained model, 'small'."""
    result, spec, data = trained
    return registry_save(result, spec, data, "small")


def registry_save(result, spec, data, name):
    return reg.save_model(name, result.model, spec, result.history,
                               {"dataset": data.name, "class_names": data.class_names, "test_accuracy": 0.9,
                                "test_loss": 0.3, "epochs": 2, "num_test": 500})


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_with_no_models(registry, page):
    at = open_app(page)
    assert not at.exception
    if page == "home":
        assert any("No saved model yet" in s for s in texts(at, "info"))
    if page == "models":
        assert any("No saved models" in s for s in texts(at, "info"))


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_with_a_model(saved_model, page):
    at = open_app(page)
    assert sidebar_model(at) == "small"


def test_sidebar_picker_lists_the_registry_on_every_run(saved_model, trained):
    result, spec, data = trained
    registry_save(result, spec, data, "another")
    at = open_app("models")
    for _ in range(2):  # the sidebar is drawn on every run, on every page
        picker = at.sidebar.selectbox(key=session.SIDEBAR_MODEL)
        assert sorted(picker.options) == ["another", "small"]
        assert any("Training data:" in c.value for c in at.sidebar.caption)
        at.run()
    picker.set_value("another").run()
    assert tab_of(at).active_model == "another"
    at.switch_page("pages/home.py").run()
    assert {m.label: m.value for m in at.metric}["Model"] == "another"  # kept across pages


def test_home_shows_the_active_model_card(saved_model):
    at = open_app()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Model"] == "small" and metrics["Test accuracy"] == "90.00%"
    assert metrics["Parameters"] == f"{saved_model.params:,}"


def test_home_does_not_import_tensorflow(saved_model):
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    code = ("import sys; from streamlit.testing.v1 import AppTest;"
            f"at = AppTest.from_file({str(ROOT / 'streamlit_app.py')!r}); at.run();"
            "assert not at.exception; print('tensorflow' in sys.modules)")
    # The background warm-up (app/warmup.py) imports TensorFlow on purpose; Home's own run must not.
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "CNN_WARMUP": "0"})
    assert out.stdout.strip().splitlines()[-1] == "False", out.stderr[-2000:]


# ---------------------------------------------------------------------------
# Configure
# ---------------------------------------------------------------------------

def layer_key(at, index: int, field: str) -> str:
    return f"L{at.session_state['cfg_layer_ids'][index]}_{field}"


def table(at) -> list[dict]:
    return at.dataframe[0].value.to_dict("records")


def test_choose_a_preset_shows_its_shapes_and_params(registry):
    at = open_app("configure")
    at.selectbox(key="cfg_preset").set_value("lenet5")
    at.button(key="cfg_load_preset").click().run()
    rows = table(at)
    assert [r["layer"] for r in rows] == ["image", "conv1", "avgpool1", "conv2", "avgpool2", "flatten1", "dense1",
                                          "dense2", "output"]
    assert [r["output shape"] for r in rows][3] == "10 × 10 × 16"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Parameters"] == "61,706" and metrics["Time per epoch (est.)"].endswith("s")
    assert tab_of(at).spec.preset == "lenet5"


def test_impossible_edit_shows_the_inline_error(registry):
    at = open_app("configure")
    at.selectbox(key="cfg_preset").set_value("keras-mnist-convnet")
    at.button(key="cfg_load_preset").click().run()
    # conv2 sees 13×13; a 15×15 kernel cannot fit.
    at.number_input(key=layer_key(at, 2, "kernel")).set_value(15).run()
    message = "layer 3 Conv2D: kernel 15 > input 13×13 with padding 'valid': ⌊(13−15+0)/1⌋+1 = −1"
    assert texts(at, "error").count(message) == 2  # beside the layer and above the table
    assert [r["layer"] for r in table(at)] == ["image", "conv1", "maxpool1"]  # the part that fits
    assert at.download_button(key="cfg_export_script").disabled if hasattr(at, "download_button") else True
    at.selectbox(key=layer_key(at, 2, "padding")).set_value("same").run()
    assert not at.error and table(at)[3]["output shape"] == "13 × 13 × 64"


def test_add_move_remove_layers(registry):
    at = open_app("configure")
    at.selectbox(key="cfg_preset").set_value("keras-mnist-convnet")
    at.button(key="cfg_load_preset").click().run()
    at.selectbox(key="cfg_add_kind").set_value("BatchNormalization")
    at.selectbox(key="cfg_add_at").set_value(1)
    at.button(key="cfg_add").click().run()
    assert [type(l).__name__ for l in tab_of(at).spec.layers][:3] == ["Conv2D", "BatchNormalization",
                                                                                  "MaxPooling2D"]
    assert tab_of(at).spec.preset == "custom"
    bn = at.session_state["cfg_layer_ids"][1]
    at.button(key=f"L{bn}_down").click().run()
    assert [type(l).__name__ for l in tab_of(at).spec.layers][:3] == ["Conv2D", "MaxPooling2D",
                                                                                  "BatchNormalization"]
    at.button(key=f"L{bn}_remove").click().run()
    assert len(tab_of(at).spec.layers) == 6
    assert "bn1" not in [r["layer"] for r in table(at)]


def test_dataset_change_adapts_the_input(registry):
    at = open_app("configure")
    at.selectbox(key="cfg_dataset").set_value("cifar10").run()
    assert tab_of(at).dataset == "cifar10"
    assert tuple(tab_of(at).spec.input_shape) == (32, 32, 3)
    assert table(at)[0]["output shape"] == "32 × 32 × 3"


def test_training_settings_are_edited(registry):
    at = open_app("configure")
    at.number_input(key="cfg_epochs").set_value(7)
    at.selectbox(key="cfg_optimizer").set_value("sgd")
    at.number_input(key="cfg_aug_rotation").set_value(10.0).run()
    cfg = tab_of(at).spec.train
    assert (cfg.epochs, cfg.optimizer, cfg.augmentation.rotation) == (7, "sgd", 10.0)


def test_import_spec_json_and_reject_bad_json(registry):
    at = open_app("configure")
    spec = preset("lenet5")
    at.file_uploader(key="cfg_import").set_value(
        [("mine.json", spec.to_json().encode(), "application/json")]).run()
    assert [type(l).__name__ for l in tab_of(at).spec.layers] == [type(l).__name__ for l in spec.layers]
    at.file_uploader(key="cfg_import").set_value(
        [("bad.json", b'{"layers": [{"type": "Conv3D"}]}', "application/json")]).run()
    assert any("bad.json: layer 1: unknown type 'Conv3D'" in e for e in texts(at, "error"))
    assert not at.exception


def test_export_script_is_shown(registry):
    at = open_app("configure")
    code = [c.value for c in at.code]
    assert code and "def build_model()" in code[0] and "keras.datasets.mnist" in code[0]


# ---------------------------------------------------------------------------
# Train
# ---------------------------------------------------------------------------

def tiny_spec(epochs=1):
    return ModelSpec(layers=[Conv2D(4, 3), MaxPooling2D(2), Flatten()],
                     train=TrainConfig(epochs=epochs, batch_size=32, validation_split=0.1), preset="tiny")


def test_train_one_epoch_saves_and_activates(registry):
    at = open_app("train", tab=Tab(spec=tiny_spec(), dataset="mnist-sample"))
    at.text_input(key="train_name").set_value("first-run")
    at.number_input(key="train_limit").set_value(300)
    at.button(key="train_start").click().run()
    wait_for(at, finished)
    assert any("saved as 'first-run'" in s for s in texts(at, "success"))
    info = reg.model_info("first-run")
    assert info.metrics["num_train"] == 300 and info.epochs == 1
    at.run()  # the rerun the live fragment asks for when it sees the job end
    assert sidebar_model(at) == "first-run" and tab_of(at).active_model == "first-run"
    figure = json.loads(at.get("plotly_chart")[0].proto.spec)
    names = [trace["name"] for trace in figure["data"]]
    assert "train loss" in names and "validation accuracy" in names


def test_second_start_says_a_job_is_running_and_stop_keeps_weights(registry):
    at = open_app("train", tab=Tab(spec=tiny_spec(epochs=50), dataset="mnist-sample"))
    at.text_input(key="train_name").set_value("long-run")
    at.number_input(key="train_limit").set_value(2000)
    at.button(key="train_start").click().run()
    wait_for(at, lambda a: session_job(a).snapshot().progress is not None)
    assert any("A training job is running" in s for s in texts(at, "info"))
    first = session_job(at)
    at.text_input(key="train_name").set_value("another")
    at.button(key="train_start").click().run()
    assert any("already running in this session" in e for e in texts(at, "error"))
    assert session_job(at) is first
    at.button(key="train_stop").click().run()
    wait_for(at, finished)
    assert any("stopped on request" in s for s in texts(at, "warning"))
    info = reg.model_info("long-run")
    assert info.metrics["status"] == "stopped" and info.epochs < 50
    assert not (reg.models_dir() / "another").exists()
    assert all(np.isfinite(w).all() for w in reg.load_model("long-run").get_weights())


def test_start_with_an_impossible_spec_is_refused(registry):
    bad = ModelSpec(layers=[Conv2D(4, 15), MaxPooling2D(8), Conv2D(4, 5), Flatten()])
    at = open_app("train", tab=Tab(spec=bad))
    at.button(key="train_start").click().run()
    assert any("cannot be built" in e for e in texts(at, "error"))
    assert session_job(at) is None


def test_duplicate_name_is_refused(saved_model):
    at = open_app("train", tab=Tab(spec=tiny_spec()))
    at.text_input(key="train_name").set_value("small")
    at.button(key="train_start").click().run()
    assert any("already exists" in e for e in texts(at, "error"))


# ---------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------

def test_models_table_details_and_compare(saved_model, trained):
    result, spec, data = trained
    registry_save(result, spec, data, "second")
    at = open_app("models")
    rows = at.dataframe[0].value.to_dict("records")
    assert {r["name"] for r in rows} == {"small", "second"}
    # Read like the rest of the app: accuracy as a percentage, parameters with separators, dates as dates.
    columns = json.loads(at.dataframe[0].proto.columns)
    assert columns["test accuracy"]["type_config"]["format"] == "percent"
    assert columns["parameters"]["type_config"]["format"] == "localized"
    assert columns["created"]["type_config"] == {"type": "datetime", "format": "D MMM YYYY, HH:mm"}
    assert str(at.dataframe[0].value["created"].dtype).startswith("datetime64")  # a time, not ISO text
    assert rows[0]["dataset"] == "MNIST sample (embedded, offline)"
    at.selectbox(key="models_pick").set_value("second").run()
    assert any(m.label == "Test accuracy" and m.value == "90.00%" for m in at.metric)
    assert not at.get("multiselect")  # only the open tab (Details) is drawn
    at.session_state["models_tabs"] = "Compare"  # what clicking the Compare tab does
    at.run()
    assert sorted(at.multiselect(key="models_compare").value) == ["second", "small"]  # the two newest
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert any(len(c["data"]) == 2 for c in charts)  # two models on one compare chart


def test_set_active_rename_delete(saved_model, trained):
    result, spec, data = trained
    registry_save(result, spec, data, "second")
    # 'small' active whichever is newer (both may be saved within one second or not).
    at = open_app("models", tab=Tab(active_model="small"), models_tabs="Manage")
    at.selectbox(key="models_pick").set_value("second").run()
    at.button(key="models_set_active").click().run()
    assert tab_of(at).active_model == "second"
    at.text_input(key="models_rename_second").set_value("renamed").run()
    at.button(key="models_rename").click().run()
    assert {i.name for i in reg.list_models()} == {"small", "renamed"}
    assert tab_of(at).active_model == "renamed"
    assert at.button(key="models_delete").disabled  # not confirmed: cannot delete
    assert {i.name for i in reg.list_models()} == {"small", "renamed"}
    at.checkbox(key="models_confirm_renamed").check().run()
    at.button(key="models_delete").click().run()
    assert {i.name for i in reg.list_models()} == {"small"}
    assert sidebar_model(at) == "small"


def test_deleting_a_model_another_tab_already_deleted_says_so(saved_model, trained):
    result, spec, data = trained
    registry_save(result, spec, data, "second")
    at = open_app("models", models_tabs="Manage")
    at.selectbox(key="models_pick").set_value("second").run()
    at.checkbox(key="models_confirm_second").check().run()
    reg.delete_model("second")  # meanwhile, elsewhere
    at.button(key="models_delete").click().run()
    assert not at.exception
    assert any("second" in e for e in texts(at, "error"))
    assert {i.name for i in reg.list_models()} == {"small"}


def test_upload_a_bundle_and_a_keras_file(saved_model, tmp_path):
    bundle = bundles.bundle_bytes("small")
    at = open_app("models")
    at.file_uploader(key="models_upload").set_value([("small.zip", bundle, "application/zip")]).run()
    assert any("Imported small.zip as 'small-2'" in s for s in texts(at, "success"))
    imported = reg.model_info("small-2")
    assert imported.spec["layers"] == reg.model_info("small").spec["layers"]
    # A bare .keras file from plain Keras (keras-io style: no rescaling, inputs 0…1) is rebuilt.
    import keras

    plain = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(2, 3, activation="relu"),
                              keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")])
    plain.save(tmp_path / "plain.keras")
    at.file_uploader(key="models_upload").set_value(
        [("plain.keras", (tmp_path / "plain.keras").read_bytes(), "application/octet-stream")]).run()
    assert any("Imported plain.keras as 'plain'" in s for s in texts(at, "success")), texts(at, "error") + texts(at, "success")
    x = np.random.default_rng(0).integers(0, 256, (3, 28, 28, 1)).astype("float32")
    ours = reg.load_model("plain")
    np.testing.assert_allclose(ours(x).numpy(), plain(x / 255).numpy(), atol=1e-5)


@pytest.mark.parametrize("name, payload, message", [
    ("notes.keras", b"just text", "is not a Keras model"),
    ("empty.zip", None, "no config.json or model.keras inside"),
    ("big.keras", b"x" * 60_000_001, "the limit is 50 MB"),
])
def test_bad_uploads_are_refused_and_nothing_written(saved_model, name, payload, message):
    if payload is None:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as zf:
            zf.writestr("readme.txt", "hello")
        payload = buffer.getvalue()
    before = sorted(p.name for p in reg.models_dir().iterdir())
    at = open_app("models")
    at.file_uploader(key="models_upload").set_value([(name, payload, "application/octet-stream")]).run()
    assert any(message in e for e in texts(at, "error")), texts(at, "error")
    assert sorted(p.name for p in reg.models_dir().iterdir()) == before


def test_upload_with_code_or_wrong_shape_is_refused(saved_model, tmp_path):
    import keras

    lam = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Lambda(lambda t: t * 2), keras.layers.Flatten(),
                            keras.layers.Dense(10, activation="softmax")])
    lam.save(tmp_path / "lambda.keras")
    odd = keras.Sequential([keras.Input((50, 40, 1)), keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])
    odd.save(tmp_path / "odd.keras")
    before = sorted(p.name for p in reg.models_dir().iterdir())
    at = open_app("models")
    at.file_uploader(key="models_upload").set_value(
        [("lambda.keras", (tmp_path / "lambda.keras").read_bytes(), "application/octet-stream")]).run()
    assert any("contains code" in e for e in texts(at, "error"))
    at.file_uploader(key="models_upload").set_value(
        [("odd.keras", (tmp_path / "odd.keras").read_bytes(), "application/octet-stream")]).run()
    assert any("takes 50×40×1 images, which no dataset here fits" in e for e in texts(at, "error"))
    assert sorted(p.name for p in reg.models_dir().iterdir()) == before


def test_page_reruns_leave_keras_state_alone(saved_model, monkeypatch):
    """Streamlit's own after-run cleanup would call keras.backend.clear_session() (app/hooks.py disables it)."""
    import keras

    calls = []
    monkeypatch.setattr(keras.backend, "clear_session", lambda *a, **k: calls.append(1))
    at = open_app("predict")
    at.run()
    assert calls == []


def test_a_failed_run_says_why_and_can_keep_its_last_good_weights(registry):
    from cnn.model.spec import Dense

    diverging = ModelSpec(layers=[Conv2D(8, 3, activation="linear"), Flatten(), Dense(256, "linear"),
                                  Dense(256, "linear")], train=TrainConfig(optimizer="sgd", learning_rate=1.0, epochs=2))
    at = open_app("train", tab=Tab(spec=diverging, dataset="mnist-sample"))
    at.text_input(key="train_name").set_value("diverges")
    at.number_input(key="train_limit").set_value(1000)
    at.button(key="train_start").click().run()
    wait_for(at, lambda a: any("the loss became" in e and "lower learning rate" in e for e in texts(a, "error")))
    assert not (reg.models_dir() / "diverges").exists()  # a failed run is not saved by itself
    at.button(key="train_save_failed").click().run()
    saved = [i.name for i in reg.list_models()]
    assert saved == ["diverges-last-good"] and tab_of(at).active_model == "diverges-last-good"
    assert any("last good weights were saved" in e for e in texts(at, "error"))


def test_a_browser_refresh_keeps_the_tabs_dataset_spec_and_model(registry):
    at = open_app("configure")
    at.selectbox(key="cfg_preset").set_value("keras-mnist-convnet")
    at.button(key="cfg_load_preset").click().run()
    at.number_input(key=layer_key(at, 0, "filters")).set_value(12).run()  # an edit made in the page body
    sid = at.session_state[session.SESSION_ID]
    kept = tab_of(at).spec

    # A refresh: a new session whose URL carries the tab's id.
    fresh = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=180)
    fresh.query_params["sid"] = sid
    fresh.run()
    fresh.switch_page("pages/configure.py")
    fresh.run()
    assert not fresh.exception
    restored = tab_of(fresh).spec
    assert restored == kept and restored.layers[0].filters == 12 and restored is not kept
    assert table(fresh)[1]["output shape"] == "26 × 26 × 12"

    # Another tab starts from the defaults.
    other = open_app("configure")
    assert tab_of(other).spec.preset == "default"

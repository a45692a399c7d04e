"""AppTest for the training film (Train while it runs, Models afterwards), the exports on Models and the camera
input on Predict."""
import io
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from app import session
from app.session import Tab
from cnn.store import registry as reg
from tests.apptest import open_app, session_job, texts, wait_for
from tests.plotly_specs import array, chart


def tiny_spec(epochs: int = 2):
    from cnn.model.spec import Conv2D, Flatten, MaxPooling2D, ModelSpec, TrainConfig

    return ModelSpec(layers=[Conv2D(4, 3), MaxPooling2D(2), Flatten()],
                     train=TrainConfig(epochs=epochs, batch_size=32, validation_split=0.1), preset="tiny")


@pytest.fixture
def filmed(registry):
    """A tiny model trained for 2 epochs with a film (3 frames: before training, after epochs 1 and 2)."""
    from cnn.data.load import load_dataset
    from cnn.run.workflows import train_and_save

    data = load_dataset("mnist-sample", limit=(300, 100))
    _, _, info = train_and_save(tiny_spec(), data, "filmed", film=True)
    assert (info.path / "film.npz").is_file()
    return info.name


# ---------------------------------------------------------------------------
# The film
# ---------------------------------------------------------------------------

def test_models_replays_the_film_of_a_model(filmed):
    from cnn.explain.film import load_film

    at = open_app("models", tab=Tab(active_model="filmed"), **{session.MODELS_TABS: "Training film"})
    slider = at.select_slider(key="models_film_filmed")
    assert slider.options == ["before training", "after epoch 1", "after epoch 2"]
    assert slider.value == 2  # the last frame first
    figure = chart(at, "models_film_filmed_figure")
    assert figure["layout"]["title"]["text"] == "frame 3 of 3: after epoch 2"
    # Back to the start: the kernels drawn are the film's first frame (the starting weights).
    slider.set_value(0).run()
    figure = chart(at, "models_film_filmed_figure")
    assert figure["layout"]["title"]["text"] == "frame 1 of 3: before training"
    film = load_film(reg.model_info("filmed"))
    kernels = array(figure["data"][0]["z"]).astype(float)  # 4 kernels of 3×3 side by side, 1 px apart
    for k in range(4):
        np.testing.assert_allclose(kernels[:3, 4 * k:4 * k + 3], film.kernels[0, k, ..., 0], atol=1e-6)
    assert not at.exception and not at.error


def test_models_says_when_a_model_has_no_film_or_a_broken_one(filmed):
    (reg.models_dir() / "filmed" / "film.npz").write_bytes(b"not a film")
    at = open_app("models", tab=Tab(active_model="filmed"), **{session.MODELS_TABS: "Training film"})
    assert any("film.npz of 'filmed' cannot be read" in w for w in texts(at, "warning"))
    assert not at.error and not at.exception
    (reg.models_dir() / "filmed" / "film.npz").unlink()
    at.run()
    assert any("trained without a film" in i for i in texts(at, "info"))


def test_train_shows_the_film_live_and_follows_the_newest_frame(registry):
    at = open_app("train", tab=Tab(spec=tiny_spec(epochs=3), dataset="mnist-sample"))
    at.text_input(key="train_name").set_value("live-film")
    at.number_input(key="train_limit").set_value(300)
    at.button(key="train_start").click().run()
    wait_for(at, lambda a: session_job(a).snapshot().film is not None)
    at.session_state[session.TRAIN_FILM_OPEN] = True  # what opening the expander does
    at.run()
    frames = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")
              if c.proto.id.endswith("-train_film_frame_figure")]
    assert len(frames) == 1 and frames[0].startswith("frame ")
    # The slider follows the newest frame while training runs, up to the last one.
    wait_for(at, lambda a: not session_job(a).snapshot().running)
    at.run()
    slider = at.select_slider(key=session.TRAIN_FILM_FRAME)
    assert slider.options == ["before training", "after epoch 1", "after epoch 2", "after epoch 3"]
    assert slider.value == 3
    slider.set_value(1).run()
    assert chart(at, "train_film_frame_figure")["layout"]["title"]["text"] == "frame 2 of 4: after epoch 1"
    assert (reg.model_info("live-film").path / "film.npz").is_file()


# ---------------------------------------------------------------------------
# Exports
# ---------------------------------------------------------------------------

@pytest.fixture
def default_in_registry(registry, default_model_dir):
    shutil.copytree(default_model_dir, registry / "mnist-default")
    return "mnist-default"


def test_an_export_is_made_on_request_then_downloaded_with_its_size_and_agreement(default_in_registry):
    at = open_app("models", **{session.MODELS_TABS: "Export"})
    # Nothing is exported until asked: every available format offers its button, no download yet.
    assert {b.key for b in at.button if b.key.startswith("models_export_")} == \
        {"models_export_keras", "models_export_savedmodel", "models_export_tflite", "models_export_tflite-int8",
         "models_export_onnx"}
    assert not [b for b in at.get("download_button") if "export" in b.proto.id]
    at.button(key="models_export_tflite").click().run()
    assert not at.exception and not at.error
    downloads = [b for b in at.get("download_button") if b.proto.id.endswith("-models_export_download_tflite")]
    assert len(downloads) == 1 and downloads[0].proto.label == "Download mnist-default.tflite"
    line = next(m for m in texts(at, "markdown") if "same top class as Keras" in m)
    assert "KB**" in line and "largest probability difference" in line and "test images of" in line
    at.run()
    assert "models_export_tflite" not in {b.key for b in at.button}  # made: the button gave way to the download
    assert "models_export_keras" in {b.key for b in at.button}
    # A rerun (or a new visit) finds it made: no new export.
    at2 = open_app("models", **{session.MODELS_TABS: "Export"})
    assert [b for b in at2.get("download_button") if b.proto.id.endswith("-models_export_download_tflite")]


def test_the_download_is_the_verified_file(default_in_registry):
    from cnn.store.export import export_for_app, run_tflite

    at = open_app("models", **{session.MODELS_TABS: "Export"})
    at.button(key="models_export_keras").click().run()
    report = export_for_app("mnist-default", "keras")
    assert report.passed and report.max_diff == 0
    assert report.path.read_bytes() == (reg.model_info("mnist-default").path / "model.keras").read_bytes()
    assert any(f"{report.images:,} test images" in m for m in texts(at, "markdown"))


# ---------------------------------------------------------------------------
# The camera
# ---------------------------------------------------------------------------

def test_a_camera_photo_of_a_written_digit_is_predicted(default_in_registry):
    from cnn.data.load import load_dataset
    from tests.engine.test_camera import camera_frame

    data = load_dataset("mnist-sample", limit=(10, 30))
    digit, label = data.x_test[3][..., 0], int(data.y_test[3])
    at = open_app("predict")
    at.segmented_control(key=session.PREDICT_SOURCE).set_value("Camera").run()
    assert any("Take a picture" in i for i in texts(at, "info"))
    assert any("asks for permission to use the camera" in c for c in texts(at, "caption"))
    at.camera_input(key=session.PREDICT_CAMERA).set_value(("photo.jpg", camera_frame(digit, seed=2), "image/jpeg"))
    at.run()
    assert not at.exception and not at.error
    assert next(m for m in at.metric if m.label == "Prediction").value == str(label)
    stored = at.session_state[session.PREDICT_INPUT]
    assert stored["x"].shape == (28, 28, 1) and stored["x"][0, 0, 0] == 0  # paper → black, as for uploads
    # The inspector's step images are drawn only once it is opened; then the same steps as for an upload,
    # starting from the 640×480 photo.
    assert not any("640×480" in c for c in texts(at, "caption"))
    at.session_state[session.PREDICT_INSPECTOR_OPEN] = True
    at.run()
    assert any("640×480" in c for c in texts(at, "caption"))


def test_a_blank_camera_photo_says_what_to_do(default_in_registry):
    at = open_app("predict", **{session.PREDICT_SOURCE: "Camera"})
    paper = Image.new("RGB", (640, 480), (230, 220, 200))
    buffer = io.BytesIO()
    paper.save(buffer, format="JPEG")
    at.camera_input(key=session.PREDICT_CAMERA).set_value(("photo.jpg", buffer.getvalue(), "image/jpeg"))
    at.run()
    assert not at.exception and not at.error
    assert any("No digit found in the picture" in i for i in texts(at, "info"))

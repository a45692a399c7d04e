"""Exports for deployment: every format is written, run by its own runtime and compared with Keras."""
import json
import shutil
import zipfile

import numpy as np
import pytest

from cnn.store.export import FORMATS, MAX_FLOAT_DIFF, MAX_INT8_DROP, ExportError, export_model

FLOAT_FORMATS = ("keras", "savedmodel", "tflite", "onnx")


@pytest.fixture(scope="module")
def exports(tmp_path_factory, default_model_dir):
    """A registry holding a copy of the committed model, and a folder to export into."""
    root = tmp_path_factory.mktemp("exports")
    shutil.copytree(default_model_dir, root / "models" / "mnist-default")
    (root / "out").mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CNN_MODELS_DIR", str(root / "models"))
        yield root / "out"


def test_the_model_exported_has_training_only_layers(exports):
    """The committed model trains with augmentation: exports must leave those random ops out."""
    from cnn.store.export import serving_model
    from cnn.store.registry import load_model

    model = load_model("mnist-default")
    kinds = {type(layer).__name__ for layer in model.layers}
    assert {"RandomTranslation", "RandomRotation", "RandomZoom"} <= kinds
    assert not {"RandomTranslation", "RandomRotation", "RandomZoom"} & {type(l).__name__ for l in
                                                                       serving_model(model).layers}


@pytest.mark.parametrize("fmt", FLOAT_FORMATS)
def test_float_formats_agree_with_keras(exports, fmt):
    report = export_model("mnist-default", fmt, exports / f"m{FORMATS[fmt][0]}", limit=1000)
    assert report.passed and report.path.exists() and report.size > 100_000  # 46,922 float32 weights
    assert report.images == 1000 and report.max_diff <= MAX_FLOAT_DIFF
    assert report.agreement == 1.0 and report.export_accuracy == report.keras_accuracy > 0.95
    assert fmt in report.summary() and "verified" in report.summary()


def test_int8_tflite_is_integer_small_and_accurate(exports):
    from cnn.store.export import tflite_interpreter

    float_report = export_model("mnist-default", "tflite", exports / "f.tflite", limit=200)
    report = export_model("mnist-default", "tflite-int8", exports / "q.tflite")  # the whole test split
    assert report.passed and report.accuracy_drop <= MAX_INT8_DROP
    assert report.images >= 2000 and report.keras_accuracy > 0.97
    assert report.size < 0.4 * float_report.size  # int8 weights: about a quarter of float32
    interpreter = tflite_interpreter(report.path)
    assert interpreter.get_input_details()[0]["dtype"] == np.int8
    assert interpreter.get_output_details()[0]["dtype"] == np.int8


def test_savedmodel_serves_images_by_name(exports):
    import tensorflow as tf

    report = export_model("mnist-default", "savedmodel", exports / "served", limit=100)
    serve = tf.saved_model.load(str(report.path)).signatures["serving_default"]
    image = serve.structured_input_signature[1]["image"]
    assert image.shape.as_list() == [None, 28, 28, 1] and image.dtype == tf.float32
    out = serve(image=tf.zeros((3, 28, 28, 1)))["probabilities"].numpy()
    assert out.shape == (3, 10) and np.allclose(out.sum(axis=1), 1, atol=1e-5)


def test_a_failed_check_is_reported_not_hidden(exports, monkeypatch):
    import cnn.store.export

    monkeypatch.setattr(cnn.store.export, "MAX_FLOAT_DIFF", 0.0)  # TFLite's float kernels differ by ~1e-6
    report = export_model("mnist-default", "tflite", exports / "strict.tflite", limit=200)
    assert not report.passed and report.max_diff > 0 and "FAILED" in report.summary()


def test_refusals_name_the_problem(exports, monkeypatch):
    import cnn.store.export

    with pytest.raises(ExportError, match="unknown export format 'zip'"):
        export_model("mnist-default", "zip", exports / "x")
    (exports / "taken.tflite").write_bytes(b"x")
    with pytest.raises(ExportError, match="already exists"):
        export_model("mnist-default", "tflite", exports / "taken.tflite")
    with pytest.raises(ExportError, match="does not exist"):
        export_model("mnist-default", "tflite", exports / "no-such-folder" / "m.tflite")
    monkeypatch.setattr(cnn.store.export, "onnx_unavailable", lambda: "ONNX export needs tf2onnx (test)")
    with pytest.raises(ExportError, match="needs tf2onnx"):
        export_model("mnist-default", "onnx", exports / "m2.onnx")
    assert not list(exports.glob(".export-*"))  # nothing half-written left behind


def test_downloads_and_the_apps_cache(exports):
    from cnn.store.export import cache_path, download_bytes, export_for_app
    from cnn.store.registry import model_info

    report = export_for_app("mnist-default", "savedmodel", limit=100)
    assert report.path == cache_path(model_info("mnist-default"), "savedmodel") and report.passed
    again = export_for_app("mnist-default", "savedmodel", limit=100)
    assert again == report  # read back from the saved report, not exported again
    name, data = download_bytes(report)
    assert name == "mnist-default.savedmodel.zip"
    with zipfile.ZipFile(__import__("io").BytesIO(data)) as zf:
        assert "mnist-default.savedmodel/saved_model.pb" in zf.namelist()
    tflite = export_for_app("mnist-default", "tflite", limit=100)
    assert download_bytes(tflite) == ("mnist-default.tflite", tflite.path.read_bytes())


def test_cli_export(exports, capsys, monkeypatch):
    import cnn.store.export
    from cnn.__main__ import main

    assert main(["export", "mnist-default", "--format", "tflite", "-o", str(exports / "cli.tflite"), "--limit",
                 "200", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] and report["size"] == (exports / "cli.tflite").stat().st_size
    assert {"path", "max_diff", "keras_accuracy", "export_accuracy", "agreement"} <= set(report)
    monkeypatch.setattr(cnn.store.export, "onnx_unavailable", lambda: "tf2onnx is not installed (test)")
    with pytest.raises(SystemExit) as stop:
        main(["export", "mnist-default", "--format", "onnx"])
    assert stop.value.code == 2
    assert "onnx export is not available here: tf2onnx is not installed (test)" in capsys.readouterr().err


def test_a_model_whose_dataset_is_gone_cannot_be_checked(exports, tmp_path):
    from cnn.store.registry import models_dir

    folder = models_dir() / "orphan"
    shutil.copytree(models_dir() / "mnist-default", folder)
    metrics = json.loads((folder / "metrics.json").read_text())
    metrics.update(dataset="folder:digits", dataset_source=str(tmp_path / "deleted-folder"))
    (folder / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(ExportError, match="cannot check the export of 'orphan'.*deleted-folder"):
        export_model("orphan", "tflite", exports / "orphan.tflite")
    assert not (exports / "orphan.tflite").exists()

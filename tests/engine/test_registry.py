"""The registry: save/load round trip, atomic saves, listing without TensorFlow, delete, rename."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from cnn.core.errors import RegistryError
from cnn.analysis.inference import predict_proba
from cnn.store.registry import delete_model, list_models, load_model, model_info, rename_model, save_model, unique_name


def save(trained, name="m1", **kw):
    result, spec, data = trained
    return save_model(name, result.model, spec, result.history,
                      {"dataset": data.name, "class_names": data.class_names, "test_accuracy": 0.5, "epochs": 2}, **kw)


def test_round_trip_gives_identical_predictions(registry, trained):
    info = save(trained)
    assert sorted(p.name for p in info.path.iterdir()) == ["history.json", "metrics.json", "model.keras",
                                                           "spec.json"]
    loaded = load_model("m1")
    x = trained[2].x_test[:50]
    np.testing.assert_array_equal(predict_proba(loaded, x), predict_proba(trained[0].model, x))
    assert [l.name for l in loaded.layers] == [l.name for l in trained[0].model.layers]
    assert info.metrics["keras_version"] and info.metrics["created"] and info.params == loaded.count_params()
    assert info.spec["preset"] == "test-small" and info.history()["epoch"] == [1, 2]


def test_saved_file_has_no_optimizer_state(registry, trained):
    info = save(trained)
    import zipfile

    with zipfile.ZipFile(info.path / "model.keras") as zf:
        config = json.loads(zf.read("config.json"))
        weights_bytes = zf.getinfo("model.weights.h5").file_size
    assert not config.get("compile_config")
    assert weights_bytes < info.params * 4 * 1.5 + 50_000  # float32 weights only: no Adam slots (would be 3×)


def test_existing_name_is_refused_unless_overwrite(registry, trained):
    save(trained)
    with pytest.raises(RegistryError, match="already exists"):
        save(trained)
    assert save(trained, overwrite=True).name == "m1"
    assert [i.name for i in list_models()] == ["m1"]


def test_crash_mid_save_leaves_nothing(registry, trained, monkeypatch):
    import cnn.store.registry as reg

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(reg.json, "dumps", crash)
    with pytest.raises(OSError, match="disk full"):
        save(trained, name="half")
    assert list_models() == [] and list(registry.iterdir()) == []


def test_crash_while_overwriting_keeps_the_old_model(registry, trained, monkeypatch):
    save(trained)
    before = (registry / "m1" / "metrics.json").read_text()
    import cnn.store.registry as reg

    monkeypatch.setattr(reg.json, "dumps", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        save(trained, overwrite=True)
    assert (registry / "m1" / "metrics.json").read_text() == before
    assert [p.name for p in registry.iterdir()] == ["m1"]


def test_listing_skips_incomplete_and_hidden_folders(registry, trained):
    save(trained)
    (registry / ".tmp-x-123").mkdir()
    (registry / "partial").mkdir()
    (registry / "partial" / "spec.json").write_text("{}")
    assert [i.name for i in list_models()] == ["m1"]
    with pytest.raises(RegistryError, match="incomplete: missing model.keras"):
        model_info("partial")


def test_delete_and_rename(registry, trained):
    save(trained)
    assert rename_model("m1", "renamed").name == "renamed"
    with pytest.raises(RegistryError, match="no saved model named 'm1'"):
        model_info("m1")
    save(trained, name="other")
    with pytest.raises(RegistryError, match="already exists"):
        rename_model("other", "renamed")
    delete_model("renamed")
    assert [i.name for i in list_models()] == ["other"]


@pytest.mark.parametrize("bad", ["", "../up", "a/b", ".hidden", "x" * 65, "sp ace"])
def test_bad_names_are_refused(registry, bad):
    with pytest.raises(RegistryError, match="invalid model name"):
        model_info(bad)


def test_unique_name(registry, trained):
    save(trained, name="default-mnist")
    assert unique_name("default-mnist") == "default-mnist-2"
    assert unique_name("weird name/..") == "weird-name"


def test_load_refuses_lambda_layers(registry, trained):
    import keras

    inputs = keras.Input((28, 28, 1))
    outputs = keras.layers.Lambda(lambda t: t * 2)(inputs)
    outputs = keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(outputs))
    info = save(trained, name="sneaky")
    keras.Model(inputs, outputs).save(info.path / "model.keras")  # a file with code in it lands in the folder
    with pytest.raises(RegistryError, match="cannot load model 'sneaky'"):
        load_model("sneaky")


def test_listing_needs_no_tensorflow(registry, trained):
    save(trained)
    code = ("import sys; from cnn.store.registry import list_models; names = [i.name for i in list_models()];"
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TF imported'; print(names)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "CNN_MODELS_DIR": str(registry)}, cwd=os.getcwd())
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['m1']"


def test_extra_files_are_saved_and_bundled(registry, trained):
    import io
    import zipfile

    from cnn.core.errors import RegistryError
    from cnn.store.bundles import bundle_bytes
    from cnn.store.registry import save_model

    result, spec, data = trained
    info = save_model("extra", result.model, spec, result.history, {"dataset": data.name},
                      extra_files={"calibration.json": b'{"temperature": 1.5}'})
    assert (info.path / "calibration.json").read_bytes() == b'{"temperature": 1.5}'
    assert "extra/calibration.json" in zipfile.ZipFile(io.BytesIO(bundle_bytes("extra"))).namelist()
    with pytest.raises(RegistryError, match="unexpected model file"):
        save_model("other", result.model, spec, result.history, {}, extra_files={"../x": b""})
    assert not (registry / "other").exists()

"""The CLI end to end on a temporary registry: train → models → evaluate → predict → export-script."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.conftest import ROOT


def cli(*args, registry, check=True):
    env = {**os.environ, "CNN_MODELS_DIR": str(registry)}
    out = subprocess.run([sys.executable, "-m", "cnn", *args], capture_output=True, text=True, env=env, cwd=ROOT,
                         timeout=600)
    if check:
        assert out.returncode == 0, out.stderr
    return out


@pytest.fixture(scope="module")
def cli_registry(tmp_path_factory):
    """A registry holding one model trained by the CLI (1 epoch on a slice of the embedded sample)."""
    registry = tmp_path_factory.mktemp("cli-models")
    out = cli("train", "--preset", "keras-mnist-convnet", "--dataset", "mnist-sample", "--epochs", "1",
              "--limit", "1500", "--batch-size", "64", "--name", "cli-model", registry=registry)
    assert "saved as 'cli-model'" in out.stdout and "test accuracy" in out.stdout
    assert "epoch 1/1" in out.stderr  # progress, one line per epoch when not on a terminal
    return registry


def test_train_saves_a_complete_model(cli_registry):
    folder = cli_registry / "cli-model"
    assert sorted(p.name for p in folder.iterdir()) == ["film.npz", "history.json", "metrics.json", "model.keras",
                                                        "spec.json"]
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["dataset"] == "mnist-sample" and metrics["num_test"] == 1500 and metrics["epochs"] == 1
    assert metrics["test_accuracy"] > 0.6
    assert json.loads((folder / "spec.json").read_text())["preset"] == "keras-mnist-convnet"


def test_models_lists_it(cli_registry):
    assert "cli-model" in cli("models", registry=cli_registry).stdout


def test_evaluate_json(cli_registry):
    report = json.loads(cli("evaluate", "cli-model", "--json", "--limit", "300", registry=cli_registry).stdout)
    assert report["num_images"] == 300 and len(report["confusion_matrix"]) == 10
    assert sum(map(sum, report["confusion_matrix"])) == 300
    assert 0 <= report["accuracy"] <= 1 and len(report["per_class"]) == 10
    text = cli("evaluate", "cli-model", "--limit", "300", registry=cli_registry).stdout
    assert "confusion matrix" in text and "accuracy" in text


def test_predict_files(cli_registry, tmp_path):
    from cnn.data import load_dataset

    data = load_dataset("mnist-sample", limit=(10, 10))
    paths = []
    for i in range(3):
        path = tmp_path / f"digit{i}.png"
        Image.fromarray(data.x_test[i, ..., 0]).save(path)
        paths.append(str(path))
    rows = json.loads(cli("predict", "cli-model", *paths, "--json", registry=cli_registry).stdout)
    assert [r["file"] for r in rows] == paths
    for row in rows:
        assert set(row["probabilities"]) == set("0123456789")
        assert sum(row["probabilities"].values()) == pytest.approx(1, abs=1e-3)
        assert row["prediction"] == max(row["probabilities"], key=row["probabilities"].get)
    text = cli("predict", "cli-model", paths[0], registry=cli_registry).stdout
    assert text.startswith(paths[0] + ": ")


def test_predict_bad_file_is_one_line(cli_registry, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    out = cli("predict", "cli-model", str(bad), registry=cli_registry, check=False)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert out.stderr.strip().count("\n") == 0 and "notes.png" in out.stderr


def test_export_script(cli_registry, tmp_path):
    target = tmp_path / "model.py"
    cli("export-script", "cli-model", "-o", str(target), registry=cli_registry)
    assert "def build_model()" in target.read_text() and "keras.datasets.mnist" in target.read_text()


@pytest.mark.parametrize("args, fragment", [
    (["train", "--epochs", "zero"], "--epochs: expected a whole number"),
    (["train", "--preset", "resnet"], "unknown preset 'resnet'"),
    (["train", "--dataset", "imagenet"], "unknown dataset 'imagenet'"),
    (["train", "--name", "../escape"], "invalid model name"),
    (["evaluate", "missing"], "no saved model named 'missing'"),
    (["predict", "missing", "nofile.png"], "no such file: nofile.png"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
])
def test_bad_arguments_exit_nonzero_with_one_line(tmp_path, args, fragment):
    out = cli(*args, registry=tmp_path, check=False)
    assert out.returncode == 2
    assert fragment in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_presets_and_datasets_listings(tmp_path):
    presets = cli("presets", registry=tmp_path).stdout
    assert "keras-mnist-convnet  34,826" in presets and "default" in presets
    assert "mnist-sample" in cli("datasets", registry=tmp_path).stdout


def test_train_without_the_film(tmp_path):
    cli("train", "--preset", "lenet5", "--dataset", "mnist-sample", "--epochs", "1", "--limit", "300", "--no-film",
        "--name", "no-film", registry=tmp_path)
    assert not (tmp_path / "no-film" / "film.npz").exists() and (tmp_path / "no-film" / "model.keras").is_file()

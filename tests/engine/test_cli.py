"""The CLI end to end on a temporary registry: train → models → evaluate → predict → export-script.

Most commands run in this process (`cli`: `cnn.__main__.main` with its own stdout, stderr and environment), so the
TensorFlow import is paid once per test run, not once per command. The tests marked "as a shell runs it" start
`python -m cnn` in a process of its own (`shell_cli`): there, whatever reaches file descriptor 2 — TensorFlow's
C++ lines included — counts against the one-line error."""
import io
import json
import os
import subprocess
import sys
import time
from contextlib import redirect_stderr, redirect_stdout
from unittest import mock

import pytest
from PIL import Image

from cnn.__main__ import main
from tests.conftest import ROOT


def cli(*args, registry, check=True, env=None):
    """`python -m cnn ARGS`, run in this process; returns what subprocess.run would (returncode, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with mock.patch.dict(os.environ, {"CNN_MODELS_DIR": str(registry), **(env or {})}), \
            redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    result = subprocess.CompletedProcess(["python", "-m", "cnn", *args], code, out.getvalue(), err.getvalue())
    if check:
        assert result.returncode == 0, result.stderr
    return result


def shell_cli(*args, registry, env=None):
    """`python -m cnn ARGS` in a process of its own, as a shell runs it."""
    env = {**os.environ, "CNN_MODELS_DIR": str(registry), **(env or {})}
    return subprocess.run([sys.executable, "-m", "cnn", *args], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=600)


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
    assert sorted(p.name for p in folder.iterdir()) == ["calibration.json", "film.npz", "history.json",
                                                        "metrics.json", "model.keras", "spec.json"]
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["calibrated"] and metrics["ece_after"] >= 0 and metrics["temperature"] > 0
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
    from cnn.data.load import load_dataset

    data = load_dataset("mnist-sample", limit=(10, 10))
    paths = []
    for i in range(3):
        path = tmp_path / f"digit{i}.png"
        Image.fromarray(data.x_test[i, ..., 0]).save(path)
        paths.append(str(path))
    rows = json.loads(cli("predict", "cli-model", *paths, "--json", registry=cli_registry).stdout)
    assert [r["file"] for r in rows] == paths
    for row in rows:
        assert set(row["probabilities"]) == set("0123456789") == set(row["raw_probabilities"])
        assert sum(row["probabilities"].values()) == pytest.approx(1, abs=1e-3)
        assert row["prediction"] == max(row["probabilities"], key=row["probabilities"].get)
        assert row["calibrated"] and row["unusual"] == (row["ood_score"] > row["ood_threshold"])
    text = cli("predict", "cli-model", paths[0], registry=cli_registry).stdout
    assert text.startswith(paths[0] + ": ") and ("UNUSUAL" in text or "looks familiar" in text)


def test_calibrate_refits_and_keeps_the_model_file(cli_registry):
    folder = cli_registry / "cli-model"
    model_bytes = (folder / "model.keras").read_bytes()
    (folder / "calibration.json").unlink()
    assert "uncalibrated" in cli("evaluate", "cli-model", "--limit", "100", registry=cli_registry).stdout
    out = cli("calibrate", "cli-model", "--flag-share", "0.1", registry=cli_registry)
    flagged = float(out.stdout.split(" flags ")[1].split("%")[0])
    assert "temperature" in out.stdout and abs(flagged - 10) <= 1
    assert (folder / "model.keras").read_bytes() == model_bytes
    assert json.loads((folder / "calibration.json").read_text())["ood"]["flag_share"] == 0.1
    report = json.loads(cli("evaluate", "cli-model", "--json", "--limit", "300", registry=cli_registry).stdout)
    assert report["calibrated"] and report["ece_before"] >= 0 and 0 <= report["ood_flagged_share"] <= 1
    assert "T=" in cli("models", registry=cli_registry).stdout
    bad = cli("calibrate", "cli-model", "--dataset", "cifar10-nowhere", registry=cli_registry, check=False)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines()[-1].startswith("error: unknown dataset 'cifar10-nowhere'")


def test_predict_bad_file_is_one_line(cli_registry, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    out = shell_cli("predict", "cli-model", str(bad), registry=cli_registry)  # as a shell runs it, TensorFlow loaded
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
    (["calibrate", "missing"], "no saved model named 'missing'"),
    (["calibrate", "x", "--flag-share", "0.7"], "--flag-share: must be below 0.5"),
])
def test_bad_arguments_exit_nonzero_with_one_line(tmp_path, args, fragment):
    """As a shell runs it: nothing else reaches stderr."""
    out = shell_cli(*args, registry=tmp_path)
    assert out.returncode == 2
    assert fragment in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_presets_and_datasets_listings(tmp_path):
    presets = cli("presets", registry=tmp_path).stdout
    assert "keras-mnist-convnet  34,826" in presets and "default" in presets
    assert "mnist-sample" in cli("datasets", registry=tmp_path).stdout


# ---------------------------------------------------------------------------
# Every failure is one line and status 2 (hostile files, impossible runs)
# ---------------------------------------------------------------------------

def one_line_failure(out, fragment):
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert out.stderr.startswith("error: ") and fragment in out.stderr, out.stderr


def test_spec_file_with_non_utf8_bytes(tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_bytes(b'{"preset": "\xff\xfe"}')
    one_line_failure(cli("train", "--spec", str(spec), registry=tmp_path, check=False),
                     "not a JSON text file: byte 0xff at position 12 is not UTF-8")


def test_export_script_into_a_missing_folder(cli_registry):
    one_line_failure(cli("export-script", "cli-model", "-o", "/missing/dir/x.py", registry=cli_registry, check=False),
                     "cannot write /missing/dir/x.py: No such file or directory")


def test_evaluate_on_a_dataset_with_other_classes_or_shapes(cli_registry, tmp_path):
    from tests.hostile import class_zip, png_bytes, zip_of

    two = tmp_path / "two.zip"  # mostly 16×16 images: the dataset is 16×16
    two.write_bytes(class_zip(per_class=6, extra={f"b/{i}x.png": png_bytes((28, 28)) for i in range(3)}))
    one_line_failure(cli("evaluate", "cli-model", "--dataset", str(two), registry=cli_registry, check=False),
                     "takes 28×28×1 images but folder:two has 16×16×1")
    big = tmp_path / "digits.zip"
    big.write_bytes(zip_of({f"{c}/{i}.png": png_bytes((28, 28), "L", i) for c in "ab" for i in range(4)}))
    one_line_failure(cli("evaluate", "cli-model", "--dataset", str(big), registry=cli_registry, check=False),
                     "model 'cli-model' predicts 10 classes but folder:digits has 2")


def test_hostile_model_folder(cli_registry, tmp_path):
    import shutil

    registry = tmp_path / "models"
    shutil.copytree(cli_registry / "cli-model", registry / "tampered")
    (registry / "tampered" / "spec.json").write_text('{"layers": [{"type": ["Dense"]}]}')
    (registry / "tampered" / "metrics.json").write_text('{"created": 12345, "test_accuracy": "high", "epochs": "many"}')
    listing = cli("models", registry=registry)
    assert "tampered" in listing.stdout and "unusable" in listing.stdout
    for command in (["evaluate", "tampered"], ["predict", "tampered", __file__], ["export-script", "tampered"]):
        one_line_failure(cli(*command, registry=registry, check=False), "model 'tampered' is damaged")


def test_train_on_a_zip_bomb_or_a_one_class_zip(tmp_path):
    from tests.hostile import class_zip, zero_entries_zip

    (tmp_path / "zeros.zip").write_bytes(zero_entries_zip(100, 1_000_000))
    one_line_failure(cli("train", "--dataset", str(tmp_path / "zeros.zip"), registry=tmp_path, check=False),
                     "a zip bomb")
    (tmp_path / "one.zip").write_bytes(class_zip(classes=("cats",)))
    one_line_failure(cli("train", "--dataset", str(tmp_path / "one.zip"), registry=tmp_path, check=False),
                     "found 1 class folder ('cats', 6 images) and needs at least 2")


def test_training_beyond_the_memory_budget_is_refused_before_it_starts(tmp_path):
    start = time.monotonic()
    out = cli("train", "--preset", "tiny-vgg", "--batch-size", "4096", "--limit", "200", registry=tmp_path,
              check=False, env={"CNN_MEMORY_BUDGET_MB": "500"})
    one_line_failure(out, "this training needs ~")
    assert "for batch 4,096" in out.stderr and "the memory budget is 0.5 GiB (CNN_MEMORY_BUDGET_MB)" in out.stderr
    assert "use a batch size of at most" in out.stderr and time.monotonic() - start < 60
    assert list(tmp_path.iterdir()) == []


def test_a_taken_name_is_refused_before_training(cli_registry):
    one_line_failure(cli("train", "--name", "cli-model", registry=cli_registry, check=False),
                     "a model named 'cli-model' already exists")


def test_train_without_the_film(tmp_path):
    cli("train", "--preset", "lenet5", "--dataset", "mnist-sample", "--epochs", "1", "--limit", "300", "--no-film",
        "--name", "no-film", registry=tmp_path)
    assert not (tmp_path / "no-film" / "film.npz").exists() and (tmp_path / "no-film" / "model.keras").is_file()

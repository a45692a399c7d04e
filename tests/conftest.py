"""Shared fixtures. Every test runs against a temporary model registry and cache, never the project's."""
import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
SHARED = (ROOT / ".." / "shared" / "datasets").resolve()
if "CNN_DATA_DIR" not in os.environ and SHARED.is_dir():
    os.environ["CNN_DATA_DIR"] = str(SHARED)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session", autouse=True)
def isolated_dirs(tmp_path_factory):
    """CNN_MODELS_DIR and CNN_CACHE_DIR point at temporary folders for the whole run, and no model ships
    (CNN_SHIPPED_DIR: an empty folder): each test's registry holds only what it puts there."""
    saved = {k: os.environ.get(k) for k in ("CNN_MODELS_DIR", "CNN_CACHE_DIR", "CNN_SHIPPED_DIR",
                                             "CNN_WORKSPACES_DIR")}
    os.environ["CNN_MODELS_DIR"] = str(tmp_path_factory.mktemp("models"))
    os.environ["CNN_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    os.environ["CNN_SHIPPED_DIR"] = str(tmp_path_factory.mktemp("shipped"))
    os.environ["CNN_WORKSPACES_DIR"] = str(tmp_path_factory.mktemp("workspaces"))
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def registry(tmp_path, monkeypatch):
    """An empty registry of this test's own."""
    monkeypatch.setenv("CNN_MODELS_DIR", str(tmp_path / "models"))
    return tmp_path / "models"


@pytest.fixture(scope="session")
def full_mnist() -> Path:
    """The full MNIST npz from CNN_DATA_DIR; required in CI, skipped elsewhere if absent."""
    path = Path(os.environ.get("CNN_DATA_DIR", SHARED)) / "mnist.npz"
    if not path.is_file():
        if IN_CI:
            pytest.fail(f"CI needs the full MNIST at {path}: set CNN_DATA_DIR")
        pytest.skip(f"full MNIST not found at {path} (set CNN_DATA_DIR)")
    return path


@pytest.fixture(scope="session")
def small_data():
    """2,000 train / 500 test images of the embedded sample, balanced by class."""
    from cnn.data.load import load_dataset

    return load_dataset("mnist-sample", limit=(2000, 500))


@pytest.fixture(scope="session")
def small_spec():
    """A small, fast CNN for tests (2 epochs on small_data reach ~90%)."""
    from cnn.model.spec import Conv2D, Dense, Flatten, MaxPooling2D, ModelSpec, TrainConfig

    return ModelSpec(layers=[Conv2D(8, 3), MaxPooling2D(2), Conv2D(16, 3), MaxPooling2D(2), Flatten(), Dense(32)],
                     train=TrainConfig(epochs=2, batch_size=64, learning_rate=3e-3, validation_split=0.1),
                     preset="test-small")


@pytest.fixture(scope="session")
def trained(small_spec, small_data):
    """(TrainResult, spec, dataset) of small_spec trained on small_data once per run."""
    from cnn.run.train import train

    return train(small_spec, small_data), small_spec, small_data


@pytest.fixture(scope="session")
def default_model_dir() -> Path:
    """The committed pretrained model's folder."""
    path = ROOT / "models" / "mnist-default"
    assert (path / "model.keras").is_file(), "the committed default model models/mnist-default is missing"
    return path


def pytest_collection_modifyitems(items):
    """Every test in tests/browser/ and every test that drives Chromium (its `chromium` fixture, also behind `page`)
    carries the `browser` marker, so `-m "not browser"` is the fast loop."""
    browser = ROOT / "tests" / "browser"
    for item in items:
        if "chromium" in getattr(item, "fixturenames", ()) or browser in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.browser)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach each phase's report to the test item (the browser `page` fixture screenshots failed tests)."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


# Browser-test fixtures (app_server, chromium, page) live with their harness.
from tests.chromium import app_server, chromium, page  # noqa: E402,F401

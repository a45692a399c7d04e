"""AppTest in hosted mode (CNN_HOSTED=1): two visitors on one server each see only their own models and jobs,
even with the other's link (its ?sid=); shipped models are shared and read-only."""
import json
import shutil

import pytest
from streamlit.testing.v1 import AppTest

from app import session
from app.session import Tab
from cnn.store import bundles
from cnn.model.spec import Conv2D, Dense, Flatten, MaxPooling2D, ModelSpec, TrainConfig
from tests.apptest import open_app, texts, wait_for
from tests.conftest import ROOT


@pytest.fixture
def hosted(monkeypatch, tmp_path, default_model_dir):
    """Hosted mode with the default model shipped, and workspaces in a folder of this test's own."""
    shipped = tmp_path / "shipped"
    shutil.copytree(default_model_dir, shipped / "mnist-default")
    (shipped / "shipped.json").write_text(json.dumps({"models": ["mnist-default"]}))
    monkeypatch.setenv("CNN_SHIPPED_DIR", str(shipped))
    monkeypatch.setenv("CNN_WORKSPACES_DIR", str(tmp_path / "workspaces"))
    monkeypatch.setenv("CNN_HOSTED", "1")
    return tmp_path


def model_names(at) -> set[str]:
    return {r["name"] for r in at.dataframe[0].value.to_dict("records")}


def test_visitors_never_see_each_others_models_or_jobs(hosted):
    alice = open_app("models")
    bundle = bundles.bundle_bytes("mnist-default")
    alice.file_uploader(key="models_upload").set_value([("mine.zip", bundle, "application/zip")]).run()
    assert model_names(alice) == {"mine", "mnist-default"}
    assert any("Your private workspace" in c for c in texts(alice, "caption"))

    bob = open_app("models")
    assert model_names(bob) == {"mnist-default"}  # Alice's model is not there
    # With Alice's link (her tab id in the URL) Bob still has only his own workspace.
    intruder = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=180)
    intruder.query_params["sid"] = alice.session_state[session.SESSION_ID]
    intruder.run()
    intruder.switch_page("pages/models.py")
    intruder.run()
    assert model_names(intruder) == {"mnist-default"}

    # Alice starts a training; nobody else finds her job, her tab's id notwithstanding.
    tiny = ModelSpec(layers=[Conv2D(4, 3), MaxPooling2D(2), Flatten(), Dense(8)],
                     train=TrainConfig(epochs=30, batch_size=64))
    alice_train = open_app("train", tab=Tab(spec=tiny))
    alice_train.number_input(key="train_limit").set_value(600)
    alice_train.button(key="train_start").click().run()
    wait_for(alice_train, lambda a: any("A training job is running" in s for s in texts(a, "info")))
    intruder.switch_page("pages/train.py")
    intruder.query_params["sid"] = alice_train.session_state[session.SESSION_ID]
    intruder.run()
    assert "train_stop" not in [b.key for b in intruder.button]  # no Stop for someone else's job
    assert not any("A training job is running" in s for s in texts(intruder, "info"))
    alice_train.button(key="train_stop").click().run()
    wait_for(alice_train, lambda a: any("stopped" in s for s in texts(a, "warning")))


def test_nobody_can_delete_or_rename_the_shipped_model(hosted):
    at = open_app("models", tab=Tab(active_model="mnist-default"), models_tabs="Manage")
    assert any("ships with CNN Studio, so it is read-only" in c for c in texts(at, "caption"))
    keys = [b.key for b in at.button]
    assert "models_delete" not in keys and "models_rename" not in keys and "models_set_active" in keys

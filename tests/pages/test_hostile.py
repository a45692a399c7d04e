"""AppTest: hostile uploads and damaged model folders on Configure and Models leave usable pages and say what
was wrong; the client's file name never becomes a path; a spec too big for memory is refused with numbers."""
import json
import os

from streamlit.testing.v1 import AppTest

from app import session
from app.session import Tab
from cnn.store import registry as reg
from cnn.data.uploads import cache_dir
from cnn.model.spec import Conv2D, Flatten, ModelSpec, TrainConfig
from tests.apptest import open_app, tab_of, texts
from tests.conftest import ROOT
from tests.hostile import class_zip, huge_png, zero_entries_zip


def upload_zip(at, name: str, data: bytes):
    at.selectbox(key="cfg_dataset").set_value("upload").run()
    at.file_uploader(key="cfg_zip").set_value([(name, data, "application/zip")]).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_a_refused_zip_leaves_the_dataset_and_a_usable_page(registry):
    at = upload_zip(open_app("configure"), "cats.zip", class_zip(classes=("cats",)))
    assert any("found 1 class folder ('cats', 6 images) and needs at least 2" in e for e in texts(at, "error"))
    assert tab_of(at).dataset == "mnist-sample"  # unchanged
    at.run()  # the page keeps working on the next run…
    assert not at.exception and tab_of(at).dataset == "mnist-sample"
    fresh = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=180)  # …and after a refresh
    fresh.query_params["sid"] = at.session_state[session.SESSION_ID]
    fresh.run()
    fresh.switch_page("pages/configure.py")
    fresh.run()
    assert not fresh.exception and not texts(fresh, "error")


def test_a_zip_bomb_is_refused_before_it_fills_the_disk(registry):
    at = upload_zip(open_app("configure"), "bomb.zip", zero_entries_zip(120, 1_000_000))
    assert any("zip bomb" in e for e in texts(at, "error"))
    extracted = cache_dir() / "datasets"
    assert not extracted.exists() or sum(f.stat().st_size for f in extracted.rglob("*") if f.is_file()) < 1_000_000


def test_the_uploaded_name_never_becomes_a_path(registry, tmp_path):
    hostile = "x/../../../../" + str(tmp_path).lstrip("/") + "/PWNED.zip"
    at = upload_zip(open_app("configure"), hostile, class_zip(per_class=4, extra={"b/big.png": huge_png()}))
    assert not (tmp_path / "PWNED.zip").exists()
    uploads = list((cache_dir() / "uploads").glob("*.zip"))
    assert uploads and all(len(p.stem) >= 32 and set(p.stem) <= set("0123456789abcdef") for p in uploads)  # a hash
    assert tab_of(at).dataset.startswith(str(cache_dir()))
    # The oversized image inside was skipped by its header and said so; the others make the dataset.
    assert any("big.png" in w for w in texts(at, "warning"))
    assert any("2 classes (a, b)" in c for c in texts(at, "caption"))


def test_a_spec_too_big_for_memory_is_refused_on_configure(registry, monkeypatch):
    monkeypatch.setenv("CNN_MEMORY_BUDGET_MB", "4000")
    huge = ModelSpec(layers=[Conv2D(256, 3, padding="same"), Conv2D(256, 3, padding="same"), Flatten()],
                     train=TrainConfig(batch_size=2048))
    at = open_app("configure", tab=Tab(spec=huge))
    error = next(e for e in texts(at, "error") if "Too big to train here" in e)
    assert "for batch 2,048" in error and "the memory budget is" in error and "batch size of at most" in error


def test_a_tampered_model_folder_is_listed_as_damaged_and_never_active(registry, trained):
    result, spec, data = trained
    reg.save_model("good", result.model, spec, result.history, {"dataset": data.name})
    reg.save_model("tampered", result.model, spec, result.history, {"dataset": data.name})
    (reg.models_dir() / "tampered" / "metrics.json").write_text(json.dumps(
        {"created": 12345, "test_accuracy": "high", "epochs": "many", "dataset_source": "/"}))
    (reg.models_dir() / "tampered" / "spec.json").write_text('{"layers": [{"type": ["Dense"]}]}')
    at = open_app("models", tab=Tab(active_model="tampered"))
    assert not at.exception
    rows = {r["name"]: r for r in at.dataframe[0].value.to_dict("records")}
    assert rows["tampered"]["files"] in ("damaged", "unusable") and rows["good"]["files"] == "ok"
    assert tab_of(at).active_model == "good"  # a damaged model is never the active one
    at.selectbox(key=session.MODELS_PICK).set_value("tampered").run()
    assert any("damaged" in w or "unusable" in w for w in texts(at, "warning"))
    assert os.environ.get("CNN_MODELS_DIR")  # (the registry is this test's own)

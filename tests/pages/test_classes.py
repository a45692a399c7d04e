"""AppTest of Your classes: make classes, see what is missing, rename and delete, train in one press, then every
page works on a model of three classes that are not digits; hosted, two visitors' classes stay apart."""
import io
import json
import os
import shutil
import time
import zipfile

import pytest
from PIL import Image

from app.drawing import rasterise, vet_drawing
from cnn.data.own import ClassSet
from tests.apptest import finished, open_app, texts, wait_for
from tests.shapes import SHAPES, canvas_json, drawings


@pytest.fixture
def classes_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("CNN_CLASSES_DIR", str(tmp_path / "classes"))
    return tmp_path / "classes"


def add_class(at, name):
    at.text_input(key="classes_new").set_value(name)
    at.button(key="FormSubmitter:classes_add-Add class").click().run()
    assert not at.exception, [e.value for e in at.exception]


def draw(own: ClassSet, shape: str, count: int, seed: int = 0):
    """Examples as the page stores a drawing (the canvas cannot be driven here; the browser test draws)."""
    for strokes in drawings(shape, count, seed):
        own.add_picture(shape, rasterise(vet_drawing(canvas_json(strokes), 280), 280))


def test_classes_are_made_checked_renamed_and_deleted(classes_dir):
    at = open_app("classes")
    assert any("Start with a class" in s for s in texts(at, "info"))
    add_class(at, "circle")
    add_class(at, "../etc")
    assert any("cannot be a class name" in s for s in texts(at, "error"))
    add_class(at, "Circle")
    assert any("already a class named 'Circle'" in s for s in texts(at, "error"))
    add_class(at, "square")
    own = ClassSet(classes_dir)
    assert own.classes() == ["circle", "square"]
    draw(own, "circle", 6)
    at.run()
    assert any("'square' (0)" in s for s in texts(at, "info"))  # what is missing, by name
    assert at.button(key="classes_train").disabled
    assert at.segmented_control(key="classes_kind").disabled  # examples exist: the kind is fixed
    # Delete one example, then rename the class.
    first = own.examples("circle")[-1]
    at.button(key=f"classes_del_circle_{first}").click().run()
    assert first not in own.examples("circle") and len(own.examples("circle")) == 5
    at.text_input(key="classes_rename_circle").set_value("ring")
    at.button(key="classes_do_rename_circle").click().run()
    assert own.classes() == ["ring", "square"]
    at.button(key="classes_do_remove_square").click().run()
    assert own.classes() == ["ring"] and not at.exception
    # Another tab deletes what this one still shows: pressing it here is no traceback.
    add_class(at, "square")
    draw(own, "square", 2)
    at.run()
    other = ClassSet(classes_dir)
    shown = own.examples("square")[0]
    other.remove_example("square", shown)
    at.button(key=f"classes_del_square_{shown}").click().run()
    assert not at.exception, [e.value for e in at.exception]
    other.remove_class("square")
    at.button(key="classes_do_remove_square").click().run()
    assert not at.exception and own.classes() == ["ring"]
    assert not texts(at, "error")


def test_one_press_trains_and_every_page_works_on_three_shapes(classes_dir, default_model_dir, tmp_path,
                                                               monkeypatch):
    shipped = tmp_path / "shipped"
    shutil.copytree(default_model_dir, shipped / "mnist-default")
    (shipped / "shipped.json").write_text(json.dumps({"models": ["mnist-default"]}))
    monkeypatch.setenv("CNN_SHIPPED_DIR", str(shipped))
    at = open_app("classes")
    for shape in SHAPES:
        add_class(at, shape)
    own = ClassSet(classes_dir)
    for shape in SHAPES:
        draw(own, shape, 8)
    at.run()
    assert not at.button(key="classes_train").disabled
    assert any("20 examples to learn from and 4 held out" in s for s in texts(at, "caption"))
    assert any("not calibrated" in s for s in texts(at, "caption"))  # 4 held out: too few to calibrate
    at.toggle(key="classes_transfer").set_value(True).run()  # start from the shipped model's filters
    stale = own.root / "snapshots" / ("0" * 16 + "-my-classes.zip")  # classes no saved model was trained on
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(own.zip_bytes())
    os.utime(stale, (time.time() - 3 * 3600,) * 2)  # made 3 hours ago: no queued training can still read it
    at.button(key="classes_train").click().run()
    assert not stale.exists() and len(list(stale.parent.iterdir())) == 1  # only what this training reads
    assert not at.exception, [e.value for e in at.exception]
    assert any("**Job:** my-classes" in s for s in texts(at, "markdown"))  # Train opened, the job on it
    at.switch_page("pages/train.py")  # AppTest reruns the page it was switched to last
    wait_for(at, finished, timeout=240)
    assert any("my-classes" in s for s in texts(at, "success"))
    tab = at.session_state["tab"]
    assert tab.active_model.startswith("my-classes") and tab.dataset.endswith("-my-classes.zip")
    assert tab.spec.train.start_from == "mnist-default" and tab.spec.layers[0].filters == 16  # the shipped layers
    for page in ("predict", "evaluate", "learn", "learned", "models", "configure", "home"):
        at.switch_page(f"pages/{page}.py")
        at.run()
        assert not at.exception, (page, [e.value for e in at.exception])
        assert not [e for e in texts(at, "error")], (page, texts(at, "error"))
    at.switch_page("pages/evaluate.py")
    at.run()
    assert "circle" in str(at.get("plotly_chart")[0].proto.spec)  # the confusion matrix names the classes
    at.switch_page("pages/learn.py")
    at.run()
    for chapter in range(1, 9):  # every chapter, the gradient step on the frozen (transferred) filters too
        at.segmented_control(key="learn_chapter").set_value(chapter).run()
        assert not at.exception, (chapter, [e.value for e in at.exception])
    at.switch_page("pages/classes.py")  # the model is listed beside the classes it learned from
    at.run()
    table = at.dataframe[0].value  # AppTest keeps no key for a dataframe
    assert list(table["Model"]) == [tab.active_model] and list(table["Started from"]) == ["mnist-default's filters"]
    assert list(table["Learned from"]) == [20] and list(table["Held out"]) == [4]
    assert any("Train again with the other start" in s for s in texts(at, "caption"))


def test_uploaded_pictures_are_prepared_once_and_a_repeat_is_kept_once(classes_dir, monkeypatch):
    own = ClassSet(classes_dir)
    own.add_class("circle")
    prepared, original = [], ClassSet.prepare

    def counting(self, source):
        prepared.append(1)
        return original(self, source)

    monkeypatch.setattr(ClassSet, "prepare", counting)
    pictures = [rasterise(vet_drawing(canvas_json(strokes), 280), 280) for strokes in drawings("circle", 2, 4)]
    files = []
    for i, picture in enumerate([*pictures, pictures[0]]):  # the third is the first again
        out = io.BytesIO()
        Image.fromarray(picture).save(out, format="PNG")
        files.append((f"c{i}.png", out.getvalue(), "image/png"))
    at = open_app("classes")
    at.segmented_control(key="classes_source").set_value("Upload").run()
    at.file_uploader(key="classes_files_0").set_value(files).run()
    assert len(prepared) == 3 and not at.exception
    at.run()  # any rerun (a click elsewhere): nothing is prepared again
    assert len(prepared) == 3
    at.button(key="classes_add_files").click().run()
    assert own.counts() == {"circle": 2}
    assert any("Added 2 examples" in t.value for t in at.toast) and any("1 was already in circle" in t.value
                                                                      for t in at.toast)


def test_the_zip_downloads_and_uploads_back(classes_dir):
    own = ClassSet(classes_dir)
    for shape in SHAPES[:2]:
        own.add_class(shape)
        draw(own, shape, 5)
    data = own.zip_bytes()
    assert len(zipfile.ZipFile(io.BytesIO(data)).namelist()) == 10
    at = open_app("classes")
    at.button(key="classes_clear").click().run()
    assert own.classes() == []
    at.file_uploader(key="classes_zip").set_value([("mine.zip", data, "application/zip")]).run()
    assert not at.exception
    assert own.counts() == {"circle": 5, "square": 5}
    assert any("Added 10 example(s) from mine.zip" in s for s in texts(at, "success"))
    at.file_uploader(key="classes_zip").set_value([("bad.zip", b"PK\x03\x04 broken", "application/zip")]).run()
    assert any("bad.zip" in s and "damaged" in s for s in texts(at, "error")) and own.counts()["circle"] == 5


def test_hosted_visitors_classes_stay_apart(monkeypatch, tmp_path):
    monkeypatch.delenv("CNN_CLASSES_DIR", raising=False)
    monkeypatch.setenv("CNN_WORKSPACES_DIR", str(tmp_path / "workspaces"))
    monkeypatch.setenv("CNN_HOSTED", "1")
    alice = open_app("classes")
    add_class(alice, "cat")
    bob = open_app("classes")
    assert any("Start with a class" in s for s in texts(bob, "info"))  # Alice's class is not his
    add_class(bob, "dog")
    alice.run()
    shown = " ".join(texts(alice, "markdown"))
    assert "**cat**" in shown and "dog" not in shown
    roots = sorted((tmp_path / "workspaces").glob("*/classes/classes"))
    assert sorted(sorted(p.name for p in r.iterdir()) for r in roots) == [["cat"], ["dog"]]

"""Your own classes (cnn/data/own.py): names that can never become paths, drawings prepared as Predict prepares
them, atomic one-file-per-example storage, the .zip round trip, hostile .zips, snapshots that train, and a small
drawn set that a model learns."""
import io
import json
import zipfile
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from app.drawing import rasterise, vet_drawing
from cnn.core.errors import CnnError, DatasetError, EmptyImageError
from cnn.data.load import load_dataset
from cnn.data.own import (MAX_CLASSES, MIN_EXAMPLES, ClassSet, check_class_name, spec_for, trained_models,
                          transfer_difference)
from cnn.data.uploads import store_upload
from cnn.model.spec import validate
from tests.shapes import SHAPES, canvas_json, drawings


def drawn(strokes, width=22.0) -> np.ndarray:
    """What Predict's canvas gives the page for these strokes: the vetted json_data, rasterised."""
    return rasterise(vet_drawing(canvas_json(strokes, width=width), 280), 280)


def filled(tmp_path, per_class=MIN_EXAMPLES, seed=0) -> ClassSet:
    own = ClassSet(tmp_path / "own")
    for shape in SHAPES:
        own.add_class(shape)
        for strokes in drawings(shape, per_class, seed):
            own.add_picture(shape, drawn(strokes))
    return own


@pytest.mark.parametrize("name", ["../models", "a/b", "..", ".hidden", "x\\y", "", "   ", "a" * 25, "dot.png",
                                  "new\nline", None, 3])
def test_a_class_name_never_becomes_a_path(name):
    with pytest.raises(DatasetError):
        check_class_name(name)


def test_class_names_are_trimmed_unique_and_capped(tmp_path):
    own = ClassSet(tmp_path)
    assert own.add_class("  circle ") == "circle"
    assert check_class_name("Kreis ü 2_b-c") == "Kreis ü 2_b-c"  # any script's letters
    with pytest.raises(DatasetError, match="already a class named 'Circle'"):
        own.add_class("Circle")  # one folder per name on every file system
    for i in range(MAX_CLASSES - 1):
        own.add_class(f"c{i}")
    with pytest.raises(DatasetError, match=f"at most {MAX_CLASSES} classes"):
        own.add_class("one more")
    assert own.classes()[:2] == ["c0", "c1"] and own.classes()[-1] == "circle"  # in the model's output order
    assert len(own.classes()) == MAX_CLASSES


def test_a_drawing_is_stored_as_the_input_predict_would_make(tmp_path):
    from cnn.data.preprocess import prepare_image

    own = ClassSet(tmp_path)
    own.add_class("circle")
    picture = drawn(drawings("circle", 1, 3)[0])
    example, new = own.add_picture("circle", picture)
    assert new and own.examples("circle") == [example]
    stored = own.pixels("circle", example)
    assert stored.shape == (28, 28, 1) and stored.dtype == np.uint8
    np.testing.assert_array_equal(stored, prepare_image(picture, (28, 28, 1)))
    assert own.add_picture("circle", picture) == (example, False) and len(own.examples("circle")) == 1  # kept once
    with pytest.raises(EmptyImageError):
        own.add_picture("circle", np.zeros((280, 280, 4), np.uint8))  # a blank canvas is no example
    assert len(own.examples("circle")) == 1
    assert not [p for p in (tmp_path / "classes" / "circle").iterdir() if p.name.startswith(".tmp")]


def test_rename_remove_and_delete_examples(tmp_path):
    own = filled(tmp_path)
    first = own.examples("circle")[0]
    own.remove_example("circle", first)
    assert first not in own.examples("circle") and len(own.examples("circle")) == MIN_EXAMPLES - 1
    with pytest.raises(DatasetError, match="not an example id"):
        own.remove_example("circle", "../../square")
    assert own.rename_class("circle", "ring") == "ring"
    assert own.classes() == ["ring", "square", "triangle"]
    with pytest.raises(DatasetError, match="already a class named"):
        own.rename_class("ring", "SQUARE")
    own.remove_class("ring")
    assert own.classes() == ["square", "triangle"]
    with pytest.raises(DatasetError, match="no class named 'ring'"):
        own.add_picture("ring", drawn(drawings("circle", 1, 0)[0]))


def test_readiness_says_what_is_missing_and_warns_of_imbalance(tmp_path):
    own = ClassSet(tmp_path)
    assert "at least 2 classes" in own.readiness().problems[0]
    own.add_class("circle")
    own.add_class("square")
    for strokes in drawings("circle", 12, 0):
        own.add_picture("circle", drawn(strokes))
    ready = own.readiness()
    assert any("'square' (0)" in p for p in ready.problems) and not ready.warnings  # empty: missing, not unbalanced
    own.add_class("triangle")
    own.add_picture("triangle", drawn(drawings("triangle", 1, 0)[0]))
    assert "'circle' has 12 examples and 'triangle' 1 (12.0×)" in own.readiness().warnings[0]
    own.remove_class("triangle")
    for strokes in drawings("square", MIN_EXAMPLES, 0):
        own.add_picture("square", drawn(strokes))
    ready = own.readiness()
    assert not ready.problems
    assert "unbalanced" in ready.warnings[0] and "2.4×" in ready.warnings[0]
    assert (ready.held_out, ready.trained_on) == (3, 14)


def test_kind_is_chosen_while_empty_and_photos_are_colour(tmp_path):
    own = ClassSet(tmp_path)
    own.set_kind("photos")
    assert own.input_shape == (32, 32, 3)
    own.add_class("red")
    photo = np.zeros((120, 90, 3), np.uint8)
    photo[..., 0] = 200
    photo[40:80, 20:70] = (30, 180, 40)
    example, _ = own.add_picture("red", photo)
    assert own.pixels("red", example).shape == (32, 32, 3)
    with pytest.raises(DatasetError, match="hold photos"):
        own.set_kind("drawings")
    (tmp_path / "classes.json").write_text('{"kind": "../../etc"}')  # a damaged manifest: the default, not a crash
    assert own.kind == "drawings"
    (tmp_path / "classes.json").write_text("[1, 2")
    assert own.kind == "drawings"


def test_a_snapshot_is_a_class_folder_dataset_with_a_fixed_split(tmp_path):
    own = filled(tmp_path, per_class=6)
    snap = own.snapshot()
    assert own.snapshot() == snap  # the same classes: the same file
    data = load_dataset(str(snap))
    assert data.name == "folder:my-classes" and data.class_names == list(SHAPES)
    assert data.input_shape == (28, 28, 1) and data.num_train + data.num_test == 18 and data.num_test == 3
    own.add_picture("circle", drawn(drawings("circle", 1, 9)[0]))
    assert own.snapshot() != snap and snap.is_file()  # the model trained on the old one can still be evaluated
    empty = ClassSet(tmp_path / "empty")
    with pytest.raises(DatasetError, match="cannot be trained on yet: add at least 2 classes"):
        empty.snapshot()


def test_the_zip_round_trips_and_is_what_configure_reads(tmp_path):
    own = filled(tmp_path, per_class=5)
    data = own.zip_bytes()
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert len(names) == 15 and all(n.startswith("my-classes/") for n in names)
    path, _ = store_upload(data, "my classes.zip")
    assert load_dataset(str(path)).class_names == list(SHAPES)  # Configure's upload path reads it as it is
    again = ClassSet(tmp_path / "again")
    added, notes = again.import_zip(path)
    assert added == 15 and notes == [] and again.counts() == own.counts()


def png(array) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


def test_a_hostile_zip_adds_only_what_is_safe(tmp_path):
    ink = np.zeros((40, 40), np.uint8)
    ink[10:30, 18:22] = 255
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("set/bad.name!/a.png", png(ink))
        archive.writestr("set/bad.name!/b.png", png(255 - ink))  # dark ink on paper: inverted as Predict does
        archive.writestr("set/blank/a.png", png(np.zeros((40, 40), np.uint8)))
        archive.writestr("set/blank/b.png", png(ink.T.copy()))
        archive.writestr("set/blank/c.png", b"not a png at all")
    path, _ = store_upload(out.getvalue(), "x.zip")
    own = ClassSet(tmp_path)
    added, notes = own.import_zip(path)
    assert added == 2 and own.classes() == ["bad-name", "blank"]  # ink on black and on paper make one example
    assert own.counts() == {"bad-name": 1, "blank": 1} and "1 picture(s) were already examples and were kept once" in notes
    assert any("'bad.name!' became the class 'bad-name'" in n for n in notes)
    assert any("1 file(s) were not usable" in n for n in notes) and any("1 picture(s) had nothing" in n for n in notes)
    traversal = io.BytesIO()
    with zipfile.ZipFile(traversal, "w") as archive:
        archive.writestr("../../evil/a.png", png(ink))
    with pytest.raises(CnnError, match="points outside the archive"):
        store_upload(traversal.getvalue(), "evil.zip")  # the upload is refused before it is kept
    (tmp_path / "evil.zip").write_bytes(traversal.getvalue())
    with pytest.raises(CnnError, match="points outside the archive"):
        own.import_zip(tmp_path / "evil.zip")  # and so is the same .zip handed to the set directly
    assert own.classes() == ["bad-name", "blank"]


def test_the_spec_for_a_small_set_augments_and_takes_enough_steps(tmp_path):
    spec = spec_for("drawings", 3, 36)
    validate(spec)
    assert spec.input_shape == (28, 28, 1) and spec.num_classes == 3
    for images in (8, 12, 36, 150, 600):  # from the fewest a set can have (2 classes × 4 to learn from)
        steps = spec_for("drawings", 3, images).train.epochs * -(-images // 16)
        assert 290 <= steps <= 420, (images, steps)  # about 300 steps however small the set
    assert not spec_for("photos", 2, 400).train.augmentation.active
    assert spec_for("photos", 2, 40).input_shape == (32, 32, 3)


@pytest.mark.timeout(300)
def test_fifteen_drawings_a_class_teach_three_shapes(tmp_path):
    """The goal of bench/own_classes.py on a small slice: 3 shapes × 15 drawings → ≥ 90% on new drawings."""
    from cnn.data.preprocess import prepare_image
    from cnn.model.spec import ModelSpec
    from cnn.run.train import train

    own = filled(tmp_path, per_class=15, seed=1)
    data = load_dataset(str(own.snapshot()))
    result = train(spec_for(own.kind, 3, data.num_train), data)
    new = [(prepare_image(drawn(s), (28, 28, 1)), k) for k, shape in enumerate(SHAPES) for s in drawings(shape, 20, 2)]
    x, y = np.stack([a for a, _ in new]), np.array([k for _, k in new])
    accuracy = float(np.mean(result.model.predict(x, verbose=0).argmax(axis=1) == y))
    assert accuracy >= 0.9, accuracy
    spec = spec_for(own.kind, 3, data.num_train)
    assert ModelSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec  # it is saved with the model as it is


@pytest.mark.timeout(300)
def test_starting_from_the_shipped_filters_copies_and_freezes_them(tmp_path, default_model_dir, monkeypatch):
    """Transfer learning: the shipped model's convs are copied and stay as they are; only the rest learns."""
    from cnn.core.errors import TrainingError
    from cnn.model.spec import ModelSpec
    from cnn.run.train import train
    from cnn.store.registry import load_model, model_info

    (tmp_path / "shipped").mkdir()
    import shutil

    shutil.copytree(default_model_dir, tmp_path / "shipped" / "mnist-default")
    (tmp_path / "shipped" / "shipped.json").write_text(json.dumps({"models": ["mnist-default"]}))
    monkeypatch.setenv("CNN_SHIPPED_DIR", str(tmp_path / "shipped"))
    donor = load_model(model_info("mnist-default"))
    layers = ModelSpec.from_dict(model_info("mnist-default").spec).layers
    own = filled(tmp_path, per_class=5)
    data = load_dataset(str(own.snapshot()))
    spec = spec_for(own.kind, 3, data.num_train, "mnist-default", layers)
    spec.train.epochs = 2
    model = train(spec, data).model
    convs = [layer for layer in model.layers if type(layer).__name__ == "Conv2D"]
    donor_convs = [layer for layer in donor.layers if type(layer).__name__ == "Conv2D"]
    assert len(convs) == 2 and all(not layer.trainable for layer in convs)
    for mine, theirs in zip(convs, donor_convs):
        np.testing.assert_array_equal(mine.get_weights()[0], theirs.get_weights()[0])  # unchanged by training
    from cnn.teach.learning import learning_step

    lesson = learning_step(model, data.x_test[0], int(data.y_test[0]))  # Learn's step reaches the frozen convs too
    assert np.abs(lesson.gradient).max() > 0 and lesson.loss_after != lesson.loss_before
    other = spec_for(own.kind, 3, data.num_train, "mnist-default", spec_for("drawings", 3, 10).layers)
    with pytest.raises(TrainingError, match="does not match mnist-default's"):
        train(other, data)
    from cnn.run.train import check_start_from

    check_start_from(spec)  # the shipped model's own layers pass before queueing…
    with pytest.raises(TrainingError, match=r"filters are in its layers before Flatten \(Conv2D 16 of 5×5, "
                                            r"BatchNormalization, Conv2D 32 of 5×5, BatchNormalization\); this model has "
                                            r"Conv2D 8 of 5×5"):
        check_start_from(other)  # …and other layers are refused then, before any wait in the queue
    from cnn.model.spec import Dropout

    loose = ModelSpec.from_dict(spec.to_dict())
    loose.layers.insert(1, Dropout(rate=0.1))  # a layer without weights changes nothing that is copied
    loose.layers[0].padding = "same" if loose.layers[0].padding == "valid" else "valid"
    check_start_from(loose)
    with pytest.raises(DatasetError, match="only drawings"):
        spec_for("photos", 3, 10, "mnist-default", layers)


def test_start_from_is_checked_like_every_spec_field():
    from cnn.core.errors import SpecError
    from cnn.model.spec import ModelSpec

    spec = spec_for("drawings", 3, 30)
    assert ModelSpec.from_dict(spec.to_dict()).train.start_from == "scratch"
    hostile = spec.to_dict()
    hostile["train"]["start_from"] = "../../etc/passwd"
    with pytest.raises(SpecError, match="start_from '../../etc/passwd' is not one of scratch, mnist-default"):
        validate(ModelSpec.from_dict(hostile))


def test_a_full_class_stops_only_its_own_pictures_in_an_import(tmp_path, monkeypatch):
    from cnn.data import own as module

    source = filled(tmp_path / "source", per_class=3)
    path, _ = store_upload(source.zip_bytes(), "three.zip")
    monkeypatch.setattr(module, "MAX_EXAMPLES", 2)
    target = ClassSet(tmp_path / "target")
    added, notes = target.import_zip(path)
    assert target.counts() == {"circle": 2, "square": 2, "triangle": 2} and added == 6
    assert [n for n in notes if "is full" in n] == [f"{shape!r} is full (2 examples): 1 of its pictures were left out"
                                                    for shape in SHAPES]


def test_another_tab_removing_a_class_or_an_example_is_no_crash(tmp_path):
    """Two tabs of one visitor: what one deletes, the other reads, renames, adds to or deletes again."""
    own = filled(tmp_path, per_class=5)
    other = ClassSet(own.root)
    gone = own.examples("circle")[0]
    other.remove_example("circle", gone)
    assert own.example_bytes("circle", gone) is None and len(own.examples("circle")) == 4
    other.remove_class("square")
    assert own.examples("square") == [] and own.example_bytes("square", gone) is None
    with pytest.raises(DatasetError, match="no class named 'square'"):
        own.add_picture("square", drawn(drawings("square", 1, 5)[0]))
    with pytest.raises(DatasetError, match="no class named 'square'"):
        own.rename_class("square", "box")
    with pytest.raises(DatasetError, match="no class named 'square'"):
        own.remove_class("square")
    other.clear()
    assert own.classes() == [] and own.counts() == {}


def test_a_zip_import_is_capped_before_any_image_is_prepared(tmp_path, monkeypatch):
    from cnn.data import own as own_module

    monkeypatch.setattr(own_module, "MAX_EXAMPLES", 2)
    ink = np.zeros((40, 40), np.uint8)
    ink[10:30, 18:22] = 255
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for c in range(MAX_CLASSES):
            for i in range(3):
                archive.writestr(f"set/c{c}/{i}.png", png(np.roll(ink, i * 3, axis=1)))
    path, _ = store_upload(out.getvalue(), "big.zip")
    own = ClassSet(tmp_path)
    with pytest.raises(DatasetError, match=f"holds 30 images; a class set holds at most {MAX_CLASSES} classes × 2 = "):
        own.import_zip(path)
    assert own.classes() == []  # nothing was added
    small = io.BytesIO()
    with zipfile.ZipFile(small, "w") as archive:
        for c in ("a", "b"):
            for i in range(4):
                bar = np.zeros((40, 40), np.uint8)
                bar[4:36, 16:18 + 4 * i] = 255  # wider each time: four different examples once centred
                archive.writestr(f"set/{c}/{i}.png", png(bar))
    prepared, original = [], ClassSet.prepare

    def counting(self, source):
        prepared.append(source)
        return original(self, source)

    monkeypatch.setattr(ClassSet, "prepare", counting)
    added, notes = own.import_zip(store_upload(small.getvalue(), "small.zip")[0])
    assert added == 4 and own.counts() == {"a": 2, "b": 2}
    assert len(prepared) == 4  # a full class's other pictures are counted, not prepared
    assert any("'a' is full (2 examples): 2 of its pictures were left out" in n for n in notes)


def test_snapshots_no_model_reads_are_deleted(tmp_path):
    own = filled(tmp_path, per_class=5)
    first = own.snapshot()
    own.add_picture("circle", drawn(drawings("circle", 1, 9)[0]))
    second = own.snapshot()
    own.add_picture("circle", drawn(drawings("circle", 1, 10)[0]))
    third = own.snapshot()
    assert own.prune_snapshots({str(first), None}) == 0  # made within the hour: a queued training may read them
    assert own.prune_snapshots({str(first), third, None}, older_than=0) == 1
    assert first.is_file() and not second.exists() and third.is_file()
    gone = own.examples("square")[0]
    real = own.examples

    def listed_then_deleted(name):  # another tab deletes an example between the listing and the reading
        found = real(name)
        if name == "square":
            own.remove_example("square", gone)
        return found

    own.examples = listed_then_deleted
    names = zipfile.ZipFile(io.BytesIO(own.zip_bytes())).namelist()
    assert len(names) == 16 and f"my-classes/square/{gone}.png" not in names  # what is left, no traceback


def test_the_held_out_images_are_spread_over_the_classes_and_old_models_keep_theirs(tmp_path):
    from cnn.data.folders import shuffled_split, split_by_class
    from cnn.run.workflows import train_and_save
    from cnn.store.registry import dataset_split, model_info, using_models_dir

    labels = np.repeat([0, 1, 2], [5, 5, 40])
    for seed in range(20):  # whatever the seed: each class tested on its share (1, 1 and 8 of 10)
        train_idx, test_idx = split_by_class(labels, 0.2, seed)
        assert np.bincount(labels[test_idx]).tolist() == [1, 1, 8]
        assert sorted([*train_idx, *test_idx]) == list(range(50))
    own = filled(tmp_path, per_class=5)
    data = load_dataset(str(own.snapshot()))
    assert np.bincount(data.y_test).tolist() == [1, 1, 1]  # 3 held out: one of each shape
    spec = spec_for(own.kind, 3, data.num_train)
    spec.train.epochs = 1
    with using_models_dir(tmp_path / "models"):
        info = train_and_save(spec, data, "shapes", film=False)[2]
        assert info.metrics["split"] == "by-class" and dataset_split(model_info("shapes")) == {"split": "by-class"}
        from cnn.store.export import export_model

        report = export_model("shapes", "tflite", tmp_path / "shapes.tflite")  # exports work on your classes too
        assert report.passed and report.images == 3 and report.dataset == "folder:my-classes", report
        metrics = tmp_path / "models" / "shapes" / "metrics.json"
        old = json.loads(metrics.read_text())
        del old["split"]  # a model saved before the split by class
        metrics.write_text(json.dumps(old))
        assert dataset_split(model_info("shapes")) == {"split": "shuffled"}
    before = load_dataset(str(own.snapshot()), split="shuffled")
    assert data.split == "by-class" and before.split == "shuffled"  # the dataset says how it was split
    _, test_idx = shuffled_split(15, 0.2, 0)
    assert before.num_test == 3 and sorted(before.y_test.tolist()) == sorted((test_idx // 5).tolist())


def test_models_on_the_same_examples_show_what_transfer_changed(tmp_path):
    own = ClassSet(tmp_path / "own")
    snaps = own.root / "snapshots"
    snaps.mkdir(parents=True)

    def info(name, snapshot, start, accuracy, created, folder=snaps):
        return SimpleNamespace(name=name, dataset_source=str(folder / snapshot), created=created,
                               spec={"train": {"start_from": start}}, test_accuracy=accuracy,
                               metrics={"num_train": 36, "num_test": 9, "train_seconds": 4.2})

    infos = [info("a", "1-my-classes.zip", "scratch", 8 / 9, "2026-12-07T10:00:00"),
             info("b", "1-my-classes.zip", "mnist-default", 1.0, "2026-12-07T10:01:00"),
             info("c", "2-my-classes.zip", "scratch", 7 / 9, "2026-12-07T10:02:00"),  # newer examples, one start
             info("elsewhere", "1-my-classes.zip", "scratch", 0.5, "2026-12-07T10:03:00", folder=tmp_path),
             SimpleNamespace(name="mnist", dataset_source=None, created="2026-12-07T10:04:00")]
    trained = trained_models(own.root, infos)
    assert [t.name for t in trained] == ["c", "b", "a"]  # only this set's snapshots, newest first
    assert (trained[1].start_from, trained[1].trained_on, trained[1].held_out) == ("mnist-default", 36, 9)
    sentence = transfer_difference(trained)
    assert sentence.startswith("On the same 36 examples, b (from mnist-default's filters) read 100% of the 9 held")
    assert "a (from scratch) 89%" in sentence and "one picture moves the accuracy by 11 points" in sentence
    assert "one picture" not in transfer_difference(trained, few=9)  # enough held out: no caution
    assert transfer_difference(trained[:1]) is None  # one start only: nothing to compare

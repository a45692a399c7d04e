"""The hostile-file corpus (tests/hostile.py) against the engine: every file gets a clear message or correct
handling, no traceback, no read outside the registry/cache, and nothing left on disk."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cnn.store import registry as reg
from cnn.store import bundles
from cnn.data.archive import ArchiveError, check_zip
from cnn.data.load import load_dataset
from cnn.data.uploads import store_upload
from cnn.core.errors import DatasetError, RegistryError
from tests import hostile
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def base_bundle(tmp_path_factory):
    """The bundle of a small real model (10 classes, 28×28×1), as the Models page offers for download."""
    from cnn.model.builder import build_model
    from cnn.model.spec import Conv2D, Flatten, ModelSpec

    saved = os.environ["CNN_MODELS_DIR"]
    os.environ["CNN_MODELS_DIR"] = str(tmp_path_factory.mktemp("base-models"))
    try:
        spec = ModelSpec(layers=[Conv2D(2, 3), Flatten()], preset="tiny")
        reg.save_model("base", build_model(spec), spec, {"epoch": [1], "loss": [0.5]},
                       {"dataset": "mnist", "class_names": list("0123456789"), "test_accuracy": 0.5, "epochs": 1})
        return bundles.bundle_bytes("base")
    finally:
        os.environ["CNN_MODELS_DIR"] = saved


@pytest.fixture
def clean_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CNN_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def assert_typed(info):
    """Every accessor gives its declared type, whatever the files held."""
    assert isinstance(info.dataset, str) and "/" not in info.dataset
    assert info.test_accuracy is None or 0 <= info.test_accuracy <= 1
    assert isinstance(info.epochs, int) and isinstance(info.params, int) and isinstance(info.created, str)
    assert all(isinstance(c, str) for c in info.class_names) and isinstance(info.preset, str)
    assert isinstance(info.history(), dict) and isinstance(info.problems, tuple)


# ---------------------------------------------------------------------------
# Metadata: uploaded bundles and tampered folders
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("case", sorted(hostile.HOSTILE_METRICS))
def test_hostile_metadata_in_a_bundle_is_dropped_with_a_note(registry, base_bundle, case):
    info = bundles.import_model(hostile.bundle_with(base_bundle, metrics=hostile.HOSTILE_METRICS[case],
                                                history={"loss": ["x"], "epoch": [1]}), f"{case}.zip")
    assert info.import_notes and all(isinstance(n, str) and len(n) <= 400 for n in info.import_notes)
    assert any("history.json: loss dropped" in n for n in info.import_notes)
    assert not info.damaged and info.usable  # what was saved fits the schema
    assert_typed(info)
    assert info.dataset_source is None and info.dataset == "mnist"  # guessed from 28×28×1, 10 classes
    assert [i.name for i in reg.list_models()] == [info.name]


def test_an_uploaded_path_is_never_a_dataset(registry, base_bundle):
    info = bundles.import_model(hostile.bundle_with(base_bundle, metrics={"dataset": "folder:shapes",
                                                                      "dataset_source": "/"}), "x.zip")
    notes = " ".join(info.import_notes)
    assert "dataset_source dropped (an uploaded model's data location is never used)" in notes
    assert "dataset 'folder:shapes' dropped" in notes and "dataset_source" not in info.metrics


def test_an_older_import_that_kept_a_server_path_is_not_trusted(registry, base_bundle):
    info = bundles.import_model(base_bundle, "old.zip")
    metrics = json.loads((info.path / "metrics.json").read_text())
    metrics.update(dataset="folder:secrets", dataset_source="/etc")  # as an older version kept them
    (info.path / "metrics.json").write_text(json.dumps(metrics))
    again = reg.model_info(info.name)
    assert again.dataset == "folder:secrets" and again.dataset_source is None
    assert "dataset_source" not in again.metrics and again.damaged  # pages reading metrics directly are safe too
    with pytest.raises(DatasetError, match="not available here \\(a model imported from a file never brings"):
        reg.dataset_to_load(again)


TAMPERED = {**{f"metrics {k}": ("metrics.json", json.dumps(v)) for k, v in hostile.HOSTILE_METRICS.items()},
            "metrics not json": ("metrics.json", "{nope"),
            "metrics not utf-8": ("metrics.json", b"\xff\xfe{"),
            "metrics deep": ("metrics.json", "[" * 100_000 + "]" * 100_000),
            "metrics huge int": ("metrics.json", '{"epochs": 1' + "0" * 5000 + "}"),
            "history garbage": ("history.json", '{"loss": "x", "batches": [1]}'),
            "spec garbage": ("spec.json", '{"layers": "Conv2D"}'),
            "spec not a dict": ("spec.json", "[]"),
            "spec missing": ("spec.json", None)}


@pytest.mark.parametrize("case", sorted(TAMPERED))
def test_a_tampered_folder_is_listed_as_damaged_and_never_breaks_the_listing(registry, base_bundle, case):
    good = bundles.import_model(base_bundle, "good.zip", name="good")
    bad = bundles.import_model(base_bundle, "bad.zip", name="bad")
    file, content = TAMPERED[case]
    if content is None:
        (bad.path / file).unlink()
    else:
        (bad.path / file).write_bytes(content if isinstance(content, bytes) else content.encode())
    infos = {i.name: i for i in reg.list_models()}
    assert set(infos) == {"good", "bad"} and not infos["good"].damaged
    info = infos["bad"]
    assert_typed(info)
    if case != "history garbage":  # history is read on demand, not by the listing
        assert info.damaged and info.problems
    if case.startswith("spec"):
        assert not info.usable
        with pytest.raises(RegistryError, match="cannot load model 'bad': it is damaged"):
            reg.load_model("bad")
    else:
        assert info.usable and good.usable


def test_cli_lists_damaged_models_and_refuses_to_use_them(registry, base_bundle):
    bundles.import_model(base_bundle, "good.zip", name="good")
    for name, (file, content) in [("created-int", ("metrics.json", '{"created": 12345, "test_accuracy": "high"}')),
                                  ("not-a-dict", ("metrics.json", "[1, 2]")), ("no-spec", ("spec.json", "5"))]:
        folder = bundles.import_model(base_bundle, f"{name}.zip", name=name).path
        (folder / file).write_text(content)
    env = {**os.environ, "CNN_MODELS_DIR": str(registry)}
    out = subprocess.run([sys.executable, "-m", "cnn", "models"], capture_output=True, text=True, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "good" in out.stdout and "unusable" in out.stdout and out.stdout.count("damaged") == 2
    assert "no-spec: unusable: spec.json is not a valid spec: a spec must be a JSON object, got a number" in out.stderr
    out = subprocess.run([sys.executable, "-m", "cnn", "export-script", "no-spec"], capture_output=True, text=True,
                         env=env, cwd=ROOT)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and out.stderr.startswith("error: model 'no-spec' is damaged")


# ---------------------------------------------------------------------------
# Archives checked to the bottom
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bomb_bundle():
    return hostile.nested_bomb_bundle(3_000_000_000)


def test_nested_zip_bomb_in_a_bundle_is_refused_from_the_directory(registry, bomb_bundle):
    assert len(bomb_bundle) < 3_500_000
    start = time.monotonic()
    with pytest.raises(RegistryError) as err:
        bundles.import_model(bomb_bundle, "bomb.zip")
    assert time.monotonic() - start < 2
    assert str(err.value) == ("bomb.zip: the model.keras inside it: its config.json unpacks to 3,000 MB; the limit is "
                              "16 MB — not a model file CNN Studio or Keras wrote (a zip bomb?); refusing it")
    assert files_under(registry) in ([], [])


def test_nested_bomb_probe_stays_small(tmp_path, bomb_bundle):
    """A separate process refuses the 3 GB config with its peak memory (VmHWM) far below the bomb's size."""
    path = tmp_path / "bomb.zip"
    path.write_bytes(bomb_bundle)
    code = ("import sys; from cnn.store.bundles import import_model; from cnn.core.errors import CnnError\n"
            f"data = open({str(path)!r}, 'rb').read()\n"
            "try:\n    import_model(data, 'bomb.zip')\nexcept CnnError as e:\n    print('refused', e)\n"
            "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "CNN_MODELS_DIR": str(tmp_path / "models")})
    assert out.returncode == 0, out.stderr
    refused, peak_kb = out.stdout.splitlines()
    assert refused.startswith("refused bomb.zip: the model.keras inside it: its config.json unpacks to 3,000 MB")
    assert int(peak_kb) < 200_000, f"peak RSS {int(peak_kb) / 1024:.0f} MiB"


def test_bare_keras_bombs_and_broken_files(registry, base_bundle, tmp_path):
    import io
    import zipfile

    inner = zipfile.ZipFile(io.BytesIO(base_bundle)).read("base/model.keras")
    cases = [
        ("bomb.keras", hostile.nested_bomb_keras(100_000_000), "bomb.keras: its config.json unpacks to 100 MB"),
        ("many.keras", hostile.many_entries_keras(200), "the zip holds 201 files; the limit is 16"),
        ("cut.keras", hostile.truncated(inner), "cut.keras is truncated or damaged"),
        ("cut.zip", hostile.truncated(base_bundle), "cut.zip is truncated or damaged"),
        ("notes.keras", b"just text", "notes.keras is not a Keras model"),
        ("traversal.zip", hostile.zip_of({"../../evil/model.keras": inner}), "points outside the archive"),
        ("lambda.keras", hostile.lambda_model_keras(tmp_path / "lambda.keras"), "contains code"),
        ("custom.keras", hostile.custom_class_keras(inner),
         "uses a custom class 'HostileCustomLayer' that is not part of Keras"),
        ("x/../../../../tmp/PWNED.keras", b"nope", "PWNED.keras is not a Keras model"),
    ]
    for filename, data, message in cases:
        with pytest.raises(RegistryError) as err:
            bundles.import_model(data, filename)
        assert message in str(err.value), (filename, str(err.value))
        assert len(str(err.value)) < 400 and "\n" not in str(err.value)
    assert files_under(registry) == [] and not Path("/tmp/PWNED.keras").exists()


def test_a_damaged_model_keras_on_disk_is_not_loaded(registry, base_bundle):
    info = bundles.import_model(base_bundle, "x.zip", name="x")
    (info.path / "model.keras").write_bytes(hostile.nested_bomb_keras(100_000_000))
    with pytest.raises(RegistryError, match="cannot load model 'x': its config.json unpacks to 100 MB"):
        reg.load_model("x")
    data = (info.path / "model.keras").read_bytes()
    (info.path / "model.keras").write_bytes(data[: len(data) // 2])
    with pytest.raises(RegistryError, match="truncated or damaged"):
        reg.load_model("x")


# ---------------------------------------------------------------------------
# Dataset uploads: names, zips, images
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("filename", hostile.TRAVERSAL_NAMES)
def test_an_upload_name_never_becomes_a_path(clean_cache, filename):
    data = hostile.class_zip()
    path, label = store_upload(data, filename)
    assert path.parent == clean_cache / "uploads" and path.name == f"{path.stem}.zip" and len(path.stem) == 32
    assert all(c.isalnum() or c in " ._-" for c in label) and 1 <= len(label) <= 40
    assert files_under(clean_cache) == ["uploads", f"uploads/{path.stem}.json", f"uploads/{path.stem}.zip"]
    assert not Path("/tmp/PWNED.zip").exists()
    dataset = load_dataset(str(path))
    assert dataset.name == f"folder:{label}" and dataset.class_names == ["a", "b"]


def test_the_upload_label_names_the_dataset(clean_cache):
    path, label = store_upload(hostile.class_zip(), "My shapes (v2).zip")
    assert label == "My shapes -v2" and load_dataset(str(path)).name == "folder:My shapes -v2"


def test_a_huge_png_in_a_dataset_is_skipped_from_its_header(clean_cache):
    path, _ = store_upload(hostile.class_zip(extra={"a/huge.png": hostile.huge_png(13_300)}), "huge.zip")
    dataset = load_dataset(str(path))
    assert dataset.num_train + dataset.num_test == 12
    assert dataset.skipped == (("a/huge.png", "The image is 13300×13300 pixels (177 megapixels); the limit is 40 "
                                              "megapixels"),)
    assert dataset.notes[0].startswith("skipped 1 of 13 image files that cannot be used: a/huge.png (The image is "
                                       "13300×13300")


def test_misnamed_truncated_and_empty_images_are_skipped_and_counted(clean_cache):
    extra = {"a/webp.png": hostile.image_as("WEBP"), "b/tiff.png": hostile.image_as("TIFF"),
             "a/cut.png": hostile.truncated(hostile.png_bytes((64, 64))), "b/empty.png": b"",
             "a/svg.png": b"<svg xmlns='http://www.w3.org/2000/svg'/>", "__MACOSX/a/._0.png": b"\0\5\26\7",
             "a/.hidden.png": b"junk"}
    path, _ = store_upload(hostile.class_zip(extra=extra), "mixed.zip")
    dataset = load_dataset(str(path))
    reasons = dict(dataset.skipped)
    assert set(reasons) == {"a/webp.png", "b/tiff.png", "a/cut.png", "b/empty.png", "a/svg.png"}
    assert reasons["a/webp.png"] == "a WEBP image named .png; use PNG, JPEG, BMP or GIF"
    assert reasons["b/tiff.png"] == "a TIFF image named .png; use PNG, JPEG, BMP or GIF"
    assert reasons["a/cut.png"].startswith("truncated or corrupt PNG")
    assert reasons["b/empty.png"].startswith("The file is empty")
    assert dataset.notes[0].startswith("skipped 5 of 17 image files") and dataset.num_train + dataset.num_test == 12
    # Every image the training stream gives decodes: no TensorFlow error later.
    assert sum(1 for _ in dataset.train_stream) == dataset.num_train


def test_a_class_with_only_bad_images_refuses_the_dataset_and_leaves_nothing(clean_cache):
    bad = {f"c/{i}.png": hostile.image_as("WEBP") for i in range(3)}
    path, _ = store_upload(hostile.class_zip(extra=bad), "bad.zip")
    with pytest.raises(DatasetError) as err:
        load_dataset(str(path))
    assert "'c' (0) has fewer" in str(err.value) and "c/0.png (a WEBP image named .png" in str(err.value)
    assert files_under(clean_cache / "datasets") == [] and files_under(clean_cache / "uploads") == []


@pytest.mark.parametrize("wrapper", ["", "wrapper/"])
def test_a_one_class_zip_says_it_found_one_class_folder(clean_cache, wrapper):
    path, _ = store_upload(hostile.class_zip(classes=("cats",), wrapper=wrapper), "one.zip")
    with pytest.raises(DatasetError, match=r"found 1 class folder \('cats'(, 6 images)?\) and needs at least 2"):
        load_dataset(str(path))
    assert files_under(clean_cache / "datasets") == []


def test_many_all_zero_entries_are_refused_before_extraction(clean_cache, tmp_path):
    data = hostile.zero_entries_zip(269, 1_000_000)
    with pytest.raises(ArchiveError, match=r"the zip's 269 entries unpack to 269 MB from 0\.\d+ MB .*a zip bomb"):
        store_upload(data, "zeros.zip")
    assert files_under(clean_cache) in ([], ["uploads"])
    # Given as a path (the CLI), the same refusal, and nothing extracted.
    (tmp_path / "zeros.zip").write_bytes(data)
    with pytest.raises(ArchiveError, match="a zip bomb"):
        load_dataset(str(tmp_path / "zeros.zip"))
    assert files_under(clean_cache / "datasets") == []


def test_size_messages_tell_the_size_from_the_limit():
    import io
    import zipfile

    from cnn.core.text import limit_text

    assert limit_text(200_400_000, 200_000_000) == "200.4 MB; the limit is 200 MB"
    archive = zipfile.ZipFile(io.BytesIO(hostile.zip_of({"a": b"x" * 200_400}, zipfile.ZIP_STORED)))
    with pytest.raises(ArchiveError, match=r"unpacks to 200,400 bytes; the limit is 0.2 MB"):
        check_zip(archive, max_bytes=200_000)


def test_the_cache_evicts_least_recently_used_and_refuses_when_all_is_in_use(clean_cache, monkeypatch):
    from cnn.data import uploads as data

    zips = [hostile.class_zip(per_class=30 + i) for i in range(3)]  # ~40 kB each
    monkeypatch.setenv("CNN_CACHE_MB", str(2.5 * len(zips[0]) / 1e6))
    first, _ = store_upload(zips[0], "first.zip")
    second, _ = store_upload(zips[1], "second.zip")
    old = time.time() - 3600
    os.utime(first, (old, old))
    os.utime(second, (old + 60, old + 60))
    third, _ = store_upload(zips[2], "third.zip")  # evicts the least recently used: first
    assert not first.exists() and not first.with_suffix(".json").exists() and second.exists() and third.exists()
    os.utime(second, None)  # just used: protected for CACHE_GRACE_SECONDS
    with pytest.raises(DatasetError, match="upload cache is full.*CNN_CACHE_MB"):
        store_upload(hostile.class_zip(per_class=40), "fourth.zip")
    assert data.cache_entries() and sum(size for _, size, _ in data.cache_entries()) <= data.cache_limit()


# ---------------------------------------------------------------------------
# Start-up clean-up
# ---------------------------------------------------------------------------

def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_clean_up_removes_orphans_and_spares_live_saves(registry, clean_cache):
    from cnn.store.housekeeping import clean_up_at_start

    registry.mkdir(parents=True)
    (clean_cache / "datasets").mkdir(parents=True)
    dead, live = dead_pid(), os.getppid()
    orphans = [registry / f".tmp-m-{dead}-abc_12", registry / f".trash-m-2-{dead}-1f2e3d4c",
               clean_cache / "datasets" / f".tmp-0123-{dead}-xyz"]
    old = registry / ".tmp-legacy-k3j_x9z2"
    alive = [registry / f".tmp-m-{live}-abc_12", registry / "m", clean_cache / "datasets" / "0123"]
    for path in orphans + alive + [old]:
        path.mkdir()
        (path / "model.keras").write_bytes(b"x")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    removed = clean_up_at_start()
    assert sorted(removed) == sorted(orphans + [old])
    assert all(p.exists() for p in alive) and not any(p.exists() for p in orphans + [old])

"""Dataset loading: CNN_DATA_DIR, the embedded sample, Keras downloads (offline), folders and zips, limits."""
import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from cnn.data.archive import ArchiveError, extract_zip
from cnn.data.datasets import CATALOG, apply_limit, stratified_first
from cnn.data.load import load_dataset
from cnn.core.errors import DatasetError


def write_npz(folder, name, n_train=50, n_test=20, shape=(28, 28), classes=10, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {"x_train": rng.integers(0, 256, (n_train, *shape), dtype=np.uint8),
              "y_train": rng.integers(0, classes, n_train).astype(np.uint8),
              "x_test": rng.integers(0, 256, (n_test, *shape), dtype=np.uint8),
              "y_test": rng.integers(0, classes, n_test).astype(np.uint8)}
    np.savez(folder / f"{name}.npz", **arrays)
    return arrays


def test_cnn_data_dir_is_used_and_nothing_downloaded(tmp_path, monkeypatch):
    arrays = write_npz(tmp_path, "fashion_mnist")
    monkeypatch.setenv("CNN_DATA_DIR", str(tmp_path))
    import keras

    monkeypatch.setattr(keras.datasets.fashion_mnist, "load_data",
                        lambda: pytest.fail("must not download when CNN_DATA_DIR has the file"))
    ds = load_dataset("fashion_mnist")
    assert ds.x_train.shape == (50, 28, 28, 1) and ds.x_train.dtype == np.uint8
    assert np.array_equal(ds.x_train[..., 0], arrays["x_train"]) and np.array_equal(ds.y_test, arrays["y_test"])
    assert ds.class_names[0] == "T-shirt/top" and ds.input_shape == (28, 28, 1)
    assert "CNN_DATA_DIR" in ds.source


def test_cifar_layout_labels_are_flattened(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "cifar10.npz", x_train=rng.integers(0, 256, (30, 32, 32, 3), dtype=np.uint8),
             y_train=rng.integers(0, 10, (30, 1)), x_test=rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8),
             y_test=rng.integers(0, 10, (10, 1)))
    monkeypatch.setenv("CNN_DATA_DIR", str(tmp_path))
    ds = load_dataset("cifar10")
    assert ds.y_train.shape == (30,) and ds.input_shape == (32, 32, 3) and ds.num_classes == 10


def test_full_mnist_from_shared(full_mnist, monkeypatch):
    monkeypatch.setenv("CNN_DATA_DIR", str(full_mnist.parent))
    ds = load_dataset("mnist")
    assert (ds.num_train, ds.num_test) == (60_000, 10_000)
    assert ds.x_train.dtype == np.uint8 and not ds.x_train.flags.writeable  # shared cache is read-only


def test_embedded_sample_is_stratified_and_small():
    ds = load_dataset("mnist-sample")
    assert (ds.num_train, ds.num_test) == (10_000, 2_000)
    assert np.bincount(ds.y_train).tolist() == [1000] * 10 and np.bincount(ds.y_test).tolist() == [200] * 10
    from cnn.data.datasets import EMBEDDED_DIR

    assert (EMBEDDED_DIR / "mnist-sample.npz").stat().st_size < 3_000_000


def test_offline_download_gives_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("CNN_DATA_DIR", str(tmp_path))  # empty: no local file
    import keras

    def offline():
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(keras.datasets.cifar10, "load_data", offline)
    with pytest.raises(DatasetError) as err:
        load_dataset("cifar10")
    assert "CNN_DATA_DIR" in str(err.value) and "mnist-sample" in str(err.value)


def test_download_progress_goes_to_stderr(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CNN_DATA_DIR", str(tmp_path))  # empty: "download" through the (faked) Keras loader
    import keras

    def download():
        print("Downloading data from https://example.invalid/fashion-mnist")  # what Keras prints
        x = np.zeros((4, 28, 28), np.uint8)
        return (x, np.arange(4) % 10), (x[:2], np.arange(2))

    monkeypatch.setattr(keras.datasets.fashion_mnist, "load_data", download)
    data = load_dataset("fashion_mnist")
    out, err = capsys.readouterr()
    assert data.x_train.shape == (4, 28, 28, 1)
    assert out == "" and "Downloading data" in err  # `--json` output on stdout stays JSON


def test_unknown_name_lists_choices():
    with pytest.raises(DatasetError, match="unknown dataset 'mnsit'.*mnist-sample"):
        load_dataset("mnsit")


def test_bad_npz_is_named(tmp_path, monkeypatch):
    np.savez(tmp_path / "mnist.npz", x_train=np.zeros((3, 28, 28), np.uint8))
    monkeypatch.setenv("CNN_DATA_DIR", str(tmp_path))
    with pytest.raises(DatasetError, match="lacks array\\(s\\) x_test, y_test, y_train"):
        load_dataset("mnist")


def test_limit_is_first_n_per_split_stratified():
    ds = load_dataset("mnist-sample", limit=(100, 30))
    assert (ds.num_train, ds.num_test) == (100, 30)
    assert np.bincount(ds.y_train).tolist() == [10] * 10
    full = load_dataset("mnist-sample")
    first_zeros = np.flatnonzero(full.y_train == 0)[:10]
    assert np.array_equal(ds.x_train[ds.y_train == 0], full.x_train[first_zeros])  # the FIRST ones, in order
    assert load_dataset("mnist-sample", limit=40).num_test == 40


def test_stratified_first_gives_scarce_classes_share_to_others():
    labels = np.array([0] * 50 + [1] * 2 + [2] * 50)
    picked = stratified_first(labels, 12)
    assert np.bincount(labels[picked]).tolist() == [5, 2, 5]
    assert stratified_first(labels, 1000).size == labels.size


def make_class_folders(root, classes=("cat", "dog", "eel"), per_class=6, size=(20, 16), mode="RGB"):
    rng = np.random.default_rng(0)
    for i, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for j in range(per_class):
            pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            pixels[..., i] = 255  # each class has its own dominant colour
            Image.fromarray(pixels).convert(mode).save(root / name / f"{j}.png")
    return root


def test_image_folder_streams_training_split(tmp_path):
    root = make_class_folders(tmp_path / "animals")
    ds = load_dataset(str(root))
    assert ds.name == "folder:animals" and ds.class_names == ["cat", "dog", "eel"]
    assert ds.input_shape == (16, 20, 3) and ds.streamed
    assert ds.num_train + ds.num_test == 18 and ds.x_test.dtype == np.uint8
    images = [(x.numpy(), int(y)) for x, y in ds.train_stream]
    assert len(images) == ds.num_train and images[0][0].dtype == np.uint8 and images[0][0].shape == (16, 20, 3)


def test_grayscale_folder_inside_a_zip_with_a_wrapper_folder(tmp_path):
    root = make_class_folders(tmp_path / "src" / "wrapper", classes=("a", "b"), mode="L", size=(28, 28))
    archive = tmp_path / "digits.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in root.rglob("*.png"):
            zf.write(path, path.relative_to(tmp_path / "src"))
    ds = load_dataset(str(archive))
    assert ds.input_shape == (28, 28, 1) and ds.class_names == ["a", "b"]


def test_folder_needs_two_classes(tmp_path):
    make_class_folders(tmp_path / "one", classes=("only",))
    with pytest.raises(DatasetError, match=r"found 1 class folder \('only', 6 images\) and needs at least 2"):
        load_dataset(str(tmp_path / "one"))


def test_folder_with_a_broken_image_skips_and_names_it(tmp_path):
    root = make_class_folders(tmp_path / "x", classes=("a", "b"))
    (root / "a" / "broken.png").write_bytes(b"not a png")
    ds = load_dataset(str(root))
    assert ds.num_train + ds.num_test == 12 and [path for path, _ in ds.skipped] == ["a/broken.png"]
    assert ds.notes[0].startswith("skipped 1 of 13 image files that cannot be used: a/broken.png (")


def zip_bytes(entries: dict) -> io.BytesIO:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    buf.seek(0)
    return buf


@pytest.mark.parametrize("entries, message", [
    ({"../evil.txt": b"x"}, "outside the archive"),
    ({"/etc/evil": b"x"}, "outside the archive"),
    ({"a/../../evil": b"x"}, "outside the archive"),
    ({"bomb.bin": b"\0" * 20_000_000}, "zip bomb"),
])
def test_unsafe_zips_are_refused_and_leave_nothing(tmp_path, entries, message):
    dest = tmp_path / "out"
    with pytest.raises(ArchiveError, match=message):
        extract_zip(zip_bytes(entries), dest)
    assert not dest.exists() and list(tmp_path.iterdir()) == []


def test_zip_limits_on_count_and_size(tmp_path):
    with pytest.raises(ArchiveError, match="holds 3 files; the limit is 2"):
        extract_zip(zip_bytes({"a": b"1", "b": b"2", "c": b"3"}), tmp_path / "o", max_files=2)
    with pytest.raises(ArchiveError, match="unpacks to"):
        extract_zip(zip_bytes({"a": b"x" * 3_000_000}), tmp_path / "o", max_bytes=1_000_000)
    with pytest.raises(ArchiveError, match="not a readable .zip"):
        extract_zip(io.BytesIO(b"PK nope"), tmp_path / "o")


def test_catalog_shapes():
    assert CATALOG["cifar10"].input_shape == (32, 32, 3) and len(CATALOG["fashion_mnist"].class_names) == 10


def test_apply_limit_rejects_zero():
    with pytest.raises(DatasetError, match="at least 1"):
        apply_limit(load_dataset("mnist-sample"), 0)


@pytest.mark.parametrize("name, label", [("folder:shapes", "shapes"),
                                         ("/tmp/x/cache/uploads/479c96f8fc427e15-shapes.zip", "shapes"),
                                         ("/tmp/c/datasets/shapes-0123456789abcdef", "shapes"),
                                         ("/data/my digits", "my digits")])
def test_class_folder_datasets_are_named_for_people(name, label):
    from cnn.data.datasets import dataset_slug, dataset_title, folder_label

    assert folder_label(name) == label
    assert dataset_title(name) == f"class folders: {label}"
    assert dataset_slug(name) == label.replace(" ", "-")
    assert dataset_title("mnist") == "MNIST digits" and dataset_slug("mnist-sample") == "mnist-sample"

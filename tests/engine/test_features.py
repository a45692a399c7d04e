"""What the network learned (cnn.explain and cnn.teach.hierarchy): receptive fields, activation maximisation, top patches, the
embedding map, the training film and the hierarchy walk — each checked against a direct computation."""
import threading
import time

import numpy as np
import pytest

from cnn.core.errors import CnnError, RegistryError
from cnn.explain.maximise import Ascent, maximise, model_fields, receptive_fields
from cnn.explain.film import Film, film_from_bytes, load_film
from cnn.explain.embedding import TsneJob, _ThreadStdout, embedding_map, project_tsne, stratified_sample
from cnn.teach.hierarchy import coherence, hierarchy, likeness, spatial_frequency
from cnn.explain.patches import top_patches
from cnn.model.layers import LAYER_TYPES, AveragePooling2D, Conv2D, Dense, Flatten, GlobalAveragePooling2D
from cnn.model.spec import ModelSpec, TrainConfig, preset, validate


@pytest.fixture(scope="module")
def default_model(default_model_dir):
    import keras

    return keras.saving.load_model(default_model_dir / "model.keras", compile=False, safe_mode=True)


@pytest.fixture(scope="module")
def sample():
    """1,000 test images of the embedded MNIST sample (100 per class) — real digits the model never trained on."""
    from cnn.data.load import load_dataset

    data = load_dataset("mnist-sample", limit=(10, 1000))
    return data.x_test, data.y_test


def sub_model(model, name):
    import keras

    return keras.Model(model.inputs[0], model.get_layer(name).output)


# ---------------------------------------------------------------------------
# Receptive fields
# ---------------------------------------------------------------------------

def linear_spec() -> ModelSpec:
    """Linear layers only (average pooling, no ReLU), so every input pixel in a field moves the output:
    'same' and 'valid' padding, strides, an even kernel, a non-square input."""
    return ModelSpec(input_shape=(13, 11, 1), num_classes=3, layers=[
        Conv2D(3, 3, 2, "same", "linear"), AveragePooling2D(2, 1, "same"), Conv2D(3, 4, 1, "valid", "linear"),
        AveragePooling2D(3, 2, "same"), Conv2D(2, 2, 1, "same", "linear"), GlobalAveragePooling2D()])


def test_receptive_fields_are_exactly_the_pixels_each_value_depends_on():
    import tensorflow as tf

    from cnn.model.builder import build_model

    spec = linear_spec()
    model = build_model(spec)
    x = tf.constant(np.random.default_rng(0).uniform(0, 255, (1, 13, 11, 1)).astype("float32"))
    for field in receptive_fields(spec)[1:]:
        layer = model.get_layer(field.name)
        rows, cols = field.positions
        if len(layer.output.shape) == 4:
            assert tuple(layer.output.shape[1:3]) == (rows, cols)
        for row, col in {(0, 0), (rows - 1, cols - 1), (rows // 2, cols // 2)}:
            with tf.GradientTape() as tape:
                tape.watch(x)
                out = sub_model(model, field.name)(x)
                # A map's value at (row, col), all channels; a flat layer's first unit (softmax outputs sum to 1).
                value = tf.reduce_sum(out[0, row, col]) if len(out.shape) == 4 else out[0, 0]
            touched = np.argwhere(np.abs(tape.gradient(value, x).numpy()[0, ..., 0]) > 0)
            top, left, h, w = field.box(row, col)
            # The field, clipped to the image, is exactly the pixels with a non-zero gradient.
            assert touched.min(axis=0).tolist() == [max(top, 0), max(left, 0)], (field.name, row, col)
            assert touched.max(axis=0).tolist() == [min(top + h, 13) - 1, min(left + w, 11) - 1], (field.name, row, col)


def test_the_default_presets_fields_by_hand():
    fields = {f.name: f for f in receptive_fields(preset("default"))}
    # conv 5×5 → 5; pool 2 → 5+1 = 6, stride 2; conv 3×3 → 6+2·2 = 10; pool 2 → 10+1·2 = 12, stride 4.
    assert [(fields[n].size, fields[n].jump) for n in ("conv1", "maxpool1", "conv2", "maxpool2")] == \
        [(5, 1), (6, 2), (10, 2), (12, 4)]
    assert fields["conv2"].offset == (0, 0) and fields["conv2"].positions == (10, 10)
    assert fields["dense1"].size == 28 and fields["output"].share == 1.0  # dense layers see everything
    # LeNet-5's first conv pads 2 zeros before: its fields begin 2 px outside the image.
    assert {f.name: f for f in receptive_fields(preset("lenet5"))}["conv1"].offset == (-2, -2)


@pytest.mark.parametrize("kind", list(LAYER_TYPES))
def test_every_layer_kind_has_field_arithmetic(kind):
    layer = LAYER_TYPES[kind]()
    before = [Conv2D(4, 3), Flatten()] if layer.needs == "flat" else [Conv2D(4, 3)]
    after = [] if layer.needs == "flat" or kind.startswith("Global") or kind == "Flatten" else [Flatten()]
    spec = ModelSpec(input_shape=(12, 12, 1), num_classes=3, layers=[*before, layer, *after])
    fields = receptive_fields(spec)
    assert len(fields) == len(validate(spec).layers)
    assert all(b.size >= a.size for a, b in zip(fields, fields[1:]))  # a field never shrinks with depth


# ---------------------------------------------------------------------------
# Activation maximisation
# ---------------------------------------------------------------------------

def test_each_last_conv_filters_image_beats_1000_real_digits(default_model, sample):
    x, _ = sample
    last = "conv2"  # the default model's last conv layer
    result = maximise(default_model, last)
    assert result.images.dtype == np.uint8 and result.images.shape == (32, 28, 28, 1)
    # Measured directly: each filter's mean activation over its map, on the uint8 images the engine returned.
    maps = sub_model(default_model, last)
    theirs = np.asarray(maps(x.astype("float32"), training=False)).mean(axis=(1, 2))  # (1000, 32)
    ours = np.asarray(maps(result.images.astype("float32"), training=False)).mean(axis=(1, 2))  # (32, 32)
    own = ours[np.arange(32), np.arange(32)]
    np.testing.assert_allclose(own, result.values, rtol=1e-4, atol=1e-5)
    wins = own > theirs.max(axis=0)
    assert wins.mean() >= 0.9, f"only {wins.sum()} of 32 filters beat every real digit"
    assert np.all(result.values > result.start_values)  # the ascent climbed for every filter


def test_maximising_is_deterministic_and_a_filter_alone_starts_as_in_its_layer(default_model):
    short = Ascent(steps=20)
    a, b = maximise(default_model, "conv1", ascent=short), maximise(default_model, "conv1", ascent=short)
    np.testing.assert_array_equal(a.images, b.images)
    c = maximise(default_model, "conv1", units=[3], ascent=short)
    assert c.units.tolist() == [3]
    np.testing.assert_allclose(c.start_values[0], a.start_values[3], rtol=1e-5)
    other = maximise(default_model, "conv1", ascent=Ascent(steps=20, seed=1))
    assert not np.array_equal(other.images, a.images)


def test_class_images_raise_their_own_logit(default_model):
    result = maximise(default_model, "output", ascent=Ascent(steps=60))
    assert result.images.shape[0] == 10
    assert np.all(result.values > result.start_values + 5)
    from cnn.analysis.inference import predict_proba

    assert (predict_proba(default_model, result.images).argmax(axis=1) == np.arange(10)).all()


def test_maximise_refuses_layers_and_units_that_do_not_exist(default_model):
    with pytest.raises(CnnError, match="not a conv layer.*conv1, conv2"):
        maximise(default_model, "dense1")
    with pytest.raises(CnnError, match="not a conv layer of this model"):
        maximise(default_model, "conv9")
    with pytest.raises(CnnError, match="units 0…15"):
        maximise(default_model, "conv1", units=[16])
    with pytest.raises(CnnError, match="not a conv layer.*its conv layers: conv1, conv2"):
        top_patches(default_model, np.zeros((2, 28, 28, 1), np.uint8), layers=["dense1"])
    with pytest.raises(CnnError, match="28×28×1 images, got an array of shape \\(2, 32, 32, 3\\)"):
        top_patches(default_model, np.zeros((2, 32, 32, 3), np.uint8))
    with pytest.raises(CnnError, match="no images"):
        embedding_map(default_model, np.zeros((0, 28, 28, 1), np.uint8), [])


# ---------------------------------------------------------------------------
# Top patches
# ---------------------------------------------------------------------------

def test_top_patches_are_the_argmax_of_a_direct_computation(default_model, sample):
    x, _ = sample
    k = 5
    result = top_patches(default_model, x, k=k, batch_size=300)  # batches of 300, 300, 300, 100
    assert list(result) == ["conv1", "conv2"]
    for name, patches in result.items():
        acts = np.asarray(sub_model(default_model, name)(x.astype("float32"), training=False))
        n, h, w, filters = acts.shape
        flat = acts.reshape(n, h * w, filters)
        for f in range(filters):
            strongest = flat[:, :, f].max(axis=1)
            images = np.argsort(-strongest, kind="stable")[:k]  # ties: the lower index first
            where = flat[images, :, f].argmax(axis=1)  # ties: the first position
            assert patches.images[f].tolist() == images.tolist(), (name, f)
            assert patches.positions[f].tolist() == np.stack(np.divmod(where, w), axis=1).tolist(), (name, f)
            np.testing.assert_allclose(patches.values[f], strongest[images], rtol=1e-5, atol=1e-6)
        # Each patch is the field's square of the input image.
        size = patches.field.size
        top, left = patches.boxes[0, 0, :2]
        assert patches.patches.shape == (filters, k, size, size, 1)
        np.testing.assert_array_equal(patches.patches[0, 0], x[patches.images[0, 0], top:top + size, left:left + size])


def test_patches_reaching_past_the_border_are_zero_padded():
    from cnn.model.builder import build_model

    spec = ModelSpec(input_shape=(10, 10, 1), num_classes=2, layers=[Conv2D(2, 5, 1, "same"), Flatten()])
    model = build_model(spec)
    x = np.random.default_rng(1).integers(1, 256, (20, 10, 10, 1)).astype(np.uint8)  # no zero pixel
    result = top_patches(model, x, k=20)["conv1"]
    assert result.field.offset == (-2, -2) and result.field.size == 5
    padded = np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)))
    for f, j in [(0, 0), (1, 3), (0, 19)]:
        row, col = result.positions[f, j]
        np.testing.assert_array_equal(result.patches[f, j], padded[result.images[f, j], row:row + 5, col:col + 5])


# ---------------------------------------------------------------------------
# The embedding map
# ---------------------------------------------------------------------------

def test_pca_coordinates_match_scikit_learn(default_model, sample):
    import keras
    from sklearn.decomposition import PCA

    x, y = sample
    emap = embedding_map(default_model, x, y, "pca")
    head = default_model.layers[-1]
    features = np.asarray(keras.Model(default_model.inputs[0], head.input)(x.astype("float32"), training=False))
    expected = PCA(n_components=2).fit_transform(features.astype(np.float64))
    np.testing.assert_allclose(emap.coords, expected, rtol=1e-3, atol=1e-3 * np.abs(expected).max())
    probabilities = np.asarray(default_model(x.astype("float32"), training=False))
    assert emap.indices.tolist() == list(range(len(y))) and emap.labels.tolist() == y.tolist()
    assert emap.predictions.tolist() == probabilities.argmax(axis=1).tolist()
    assert emap.misclassified.sum() == (probabilities.argmax(axis=1) != y).sum()
    assert sum(emap.explained) < 1


def test_stratified_sample_keeps_each_class_share():
    labels = np.repeat(np.arange(4), [400, 300, 200, 100])
    keep = stratified_sample(labels, 100, seed=3)
    assert len(keep) == 100 and np.all(np.diff(keep) > 0)
    assert np.bincount(labels[keep]).tolist() == [40, 30, 20, 10]
    assert stratified_sample(labels, 5000).tolist() == list(range(1000))


def test_tsne_reports_progress_to_the_end():
    rng = np.random.default_rng(0)
    features = np.concatenate([rng.normal(c * 5, 1, (60, 8)) for c in range(3)]).astype(np.float32)
    reports = []
    coords = project_tsne(features, max_iter=300, on_progress=lambda f, m: reports.append((f, m)))
    assert coords.shape == (180, 2)
    fractions = [f for f, _ in reports]
    assert fractions == sorted(fractions) and fractions[0] == 0 and fractions[-1] == 1.0
    assert any("iteration 250" in m for _, m in reports)  # one report every 50 iterations
    # Well-separated clusters stay apart: each point's nearest neighbour is of its own cluster.
    d = np.linalg.norm(coords[:, None] - coords[None], axis=-1) + np.eye(180) * 1e9
    assert (d.argmin(axis=1) // 60 == np.arange(180) // 60).mean() > 0.95


def test_tsne_stops_at_its_next_report_when_asked():
    features = np.random.default_rng(1).normal(size=(400, 8)).astype(np.float32)
    stop, reports = threading.Event(), []

    def on_progress(fraction, message):
        reports.append(fraction)
        if "iteration 100" in message:
            stop.set()

    with pytest.raises(CnnError, match="stopped before it finished"):
        project_tsne(features, on_progress=on_progress, stop=stop)
    assert max(reports) < 0.15  # it ended at the report after iteration 100 (of 1,000), not at the end


def test_tsne_job_runs_in_a_thread_and_stops_on_request(default_model, sample, capsys):
    x, y = sample
    job = TsneJob(default_model, x[:300], y[:300], size=200).start()
    fractions = []
    while job.snapshot().running:
        fractions.append(job.snapshot().fraction)
        time.sleep(0.05)
    done = job.snapshot()
    assert done.state == "done" and done.fraction == 1.0, done.message
    assert done.result.coords.shape == (200, 2)
    # Stratified: each class keeps its share of the 300 images (to within one point of rounding).
    assert np.abs(np.bincount(done.result.labels, minlength=10) - np.bincount(y[:300], minlength=10) * 2 / 3).max() <= 1
    assert fractions == sorted(fractions)
    assert "[t-SNE]" not in capsys.readouterr().out  # its chatter became progress, not output
    stopped = TsneJob(default_model, x[:300], y[:300], size=300)
    stopped.stop()
    stopped.start().join(30)
    assert stopped.snapshot().state == "stopped" and stopped.snapshot().result is None


def test_only_the_routed_thread_stdout_is_captured(capsys):
    seen = []

    def worker():
        _ThreadStdout.route(seen.append)
        try:
            print("from the worker")
        finally:
            _ThreadStdout.unroute()

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    print("from the main thread")
    assert "".join(seen) == "from the worker\n"
    assert capsys.readouterr().out == "from the main thread\n"


# ---------------------------------------------------------------------------
# The film of training
# ---------------------------------------------------------------------------

TINY = ModelSpec(layers=[Conv2D(4, 3), AveragePooling2D(2), Conv2D(6, 3), Flatten(), Dense(16)],
                 train=TrainConfig(epochs=3, batch_size=64, learning_rate=3e-3, validation_split=0.0),
                 preset="test-tiny")


def test_film_frames_equal_the_weights_at_each_epoch(registry, small_data):
    import keras

    from cnn.store.registry import load_model
    from cnn.run.workflows import train_and_save

    class Checkpoint(keras.callbacks.Callback):
        """What ModelCheckpoint would save at each epoch end (and the starting weights)."""

        def on_train_begin(self, logs=None):
            self.saved = [[w.copy() for w in self.model.get_weights()]]

        def on_epoch_end(self, epoch, logs=None):
            self.saved.append([w.copy() for w in self.model.get_weights()])

    checkpoint = Checkpoint()
    result, _, info = train_and_save(TINY, small_data, "filmed", callbacks=[checkpoint])
    film = load_film(info)
    assert film.epochs.tolist() == [0, 1, 2, 3] and film.kernel_layer == "conv1"
    assert film.batches.tolist() == [0, 32, 32, 32]  # ceil(2,000 / 64): no validation split
    names = [layer.name for layer in result.model.layers for _ in layer.get_weights()]
    for frame, weights in enumerate(checkpoint.saved):
        by_layer = {}
        for name, w in zip(names, weights):
            by_layer.setdefault(name, w)  # the first weight of a layer is its kernel
        np.testing.assert_array_equal(film.kernels[frame], np.transpose(by_layer["conv1"], (3, 0, 1, 2)))
        for name, counts in film.histograms.items():
            edges = film.edges[name]
            expected = np.histogram(np.clip(by_layer[name].ravel(), edges[0], edges[-1]), edges)[0]
            assert counts[frame].tolist() == expected.tolist(), (name, frame)
    # The last frame is the saved model; its probe activations are the saved model's on the probe image.
    saved = load_model("filmed")
    np.testing.assert_array_equal(film.kernels[-1], np.transpose(saved.get_layer("conv1").kernel.numpy(), (3, 0, 1, 2)))
    np.testing.assert_array_equal(film.probe, small_data.x_test[0])
    for name, frames in film.activations.items():
        expected = np.asarray(sub_model(saved, name)(film.probe[None].astype("float32"), training=False))[0]
        np.testing.assert_allclose(frames[-1].astype(np.float32), expected, rtol=2e-3, atol=2e-3)
    assert not np.array_equal(film.kernels[0], film.kernels[-1])  # training moved the kernels


def test_training_job_shows_the_film_live_and_can_go_without(registry, small_data):
    from cnn.run.jobs import TrainingJob

    job = TrainingJob(TINY, small_data, "live").start()
    counts = []
    while job.snapshot().running:
        film = job.snapshot().film
        counts.append(0 if film is None else len(film))
        time.sleep(0.05)
    final = job.snapshot()
    assert final.state == "completed", final.message
    assert len(final.film) == 4 and counts == sorted(counts) and len(set(counts)) >= 2
    from cnn.store.registry import model_info

    assert (model_info("live").path / "film.npz").is_file()
    plain = TrainingJob(TINY, small_data, "plain", film=False).start()
    plain.join()
    assert plain.snapshot().film is None and not (model_info("plain").path / "film.npz").exists()
    assert load_film(model_info("plain")) is None


def test_a_broken_film_file_is_refused_with_a_message(registry, small_data, tmp_path):
    with pytest.raises(RegistryError, match="cannot be read.*retrain"):
        film_from_bytes(b"not a zip at all")
    good = Film(np.array([0, 1]), np.array([0, 5]), "conv1", np.zeros((2, 4, 3, 3, 1), np.float32),
                np.zeros((28, 28, 1), np.uint8), 7, {"conv1": np.zeros((2, 26, 26, 4), np.float16)},
                {"conv1": np.zeros((2, 41), np.int32)}, {"conv1": np.linspace(-1, 1, 42).astype(np.float32)},
                {"conv1": np.zeros(2, np.int32)})
    again = film_from_bytes(good.to_bytes())
    assert again.probe_label == 7 and again.kernels.shape == (2, 4, 3, 3, 1) and list(again.activations) == ["conv1"]
    bad = Film(*[getattr(good, f) for f in ("epochs", "batches", "kernel_layer")], np.zeros((3, 4, 3, 3, 1)),
               *[getattr(good, f) for f in ("probe", "probe_label", "activations", "histograms", "edges", "outside")])
    with pytest.raises(RegistryError, match="inconsistent.*kernels"):
        film_from_bytes(bad.to_bytes())


# ---------------------------------------------------------------------------
# The hierarchy walk and its measures
# ---------------------------------------------------------------------------

def test_measures_on_images_whose_answer_is_known():
    rows, cols = np.mgrid[0:28, 0:28]
    stripes = (127 + 127 * np.sin(2 * np.pi * cols / 4))[None, ..., None]  # vertical, period 4 px
    noise = np.random.default_rng(0).uniform(0, 255, (1, 28, 28, 1))
    flat = np.full((1, 28, 28, 1), 80.0)
    assert coherence(stripes)[0] > 0.95 and coherence(noise)[0] < 0.2 and coherence(flat)[0] == 0
    assert spatial_frequency(stripes)[0] == pytest.approx(0.25, abs=0.02) and np.isnan(spatial_frequency(flat)[0])
    means = np.concatenate([stripes[..., 0], noise[..., 0]])
    best, corr = likeness(np.concatenate([stripes, flat]), means)
    assert best[0] == pytest.approx(1.0) and best[1] == 0 and corr.shape == (2, 2)


def test_hierarchy_walks_the_default_model_and_checks_the_lesson(default_model, sample):
    x, y = sample
    walk = hierarchy(default_model, x, y, k=4, ascent=Ascent(steps=40))
    assert [v.name for v in walk.layers] == ["conv1", "conv2"] and [v.depth for v in walk.layers] == [1, 2]
    assert [v.field.size for v in walk.layers] == [5, 14]
    assert walk.layers[1].patches.images.shape == (32, 4) and walk.classes.images.shape[0] == 10
    assert len(walk.checks) == 4 and all(c.verdict and c.measure for c in walk.checks)
    # A field of 14×14 px holds more of a digit than one of 5×5: measured on the real top patches.
    grows = walk.checks[0]
    assert grows.holds is True and grows.values["conv2 ink share"] > grows.values["conv1 ink share"]
    assert "conv1 sees 5×5 px" in grows.verdict
    assert all(isinstance(c.holds, bool) for c in walk.checks)


def test_one_conv_layer_has_nothing_deeper_to_compare(small_data):
    from cnn.model.builder import build_model

    spec = ModelSpec(layers=[Conv2D(4, 3), Flatten()])
    walk = hierarchy(build_model(spec), small_data.x_test[:100], small_data.y_test[:100], k=2,
                     ascent=Ascent(steps=5))
    assert walk.checks[0].holds is None and walk.checks[2].holds is None
    with pytest.raises(CnnError, match="no conv layer"):
        hierarchy(build_model(ModelSpec(layers=[Flatten(), Dense(8)])), small_data.x_test[:10],
                  small_data.y_test[:10])


def test_model_fields_read_the_spec_back_from_the_model(default_model):
    fields = model_fields(default_model)
    assert fields["conv2"].text == "receptive field 14×14 px (25% of the 28×28 image), stride 2"


# ---------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------

def test_figures_show_images_as_one_image_and_carry_what_a_click_needs(default_model, sample):
    from cnn.figures.pictures import embedding_scatter, filters_grid, film_frame, patches_grid

    x, y = sample
    images = np.random.default_rng(0).integers(0, 256, (12, 28, 28, 1)).astype(np.uint8)
    grid = filters_grid(images, np.arange(12.0), "conv2", note="receptive field 14×14 px")
    kinds = [type(t).__name__ for t in grid.data]
    assert kinds == ["Image", "Scatter"] and grid.data[0].source.startswith("data:image/png;base64,")
    assert list(grid.data[1].customdata) == list(range(12)) and "filter 3: reaches 3" in grid.data[1].hovertext[3]
    assert any("14×14" in a.text for a in grid.layout.annotations)

    patches = top_patches(default_model, x[:200], k=3, layers=["conv2"])["conv2"]
    fig = patches_grid(patches.patches, patches.values, patches.images)
    assert [list(c) for c in fig.data[1].customdata[:3]] == [[0, int(i)] for i in patches.images[0]]

    emap = embedding_map(default_model, x, y)
    scatter = embedding_scatter(emap.coords, emap.labels, emap.predictions, emap.indices, list("0123456789"),
                                emap.confidence)
    shown = np.concatenate([np.asarray(t.customdata)[:, 0] for t in scatter.data])
    assert sorted(shown.tolist()) == list(range(len(y)))  # every test image once, by its index
    wrong = [t for t in scatter.data if t.marker.symbol == "x"]
    assert sum(len(t.x) for t in wrong) == int(emap.misclassified.sum())

    film = Film(np.array([0, 1]), np.array([0, 5]), "conv1", np.stack([np.full((4, 3, 3, 1), -0.1),
                                                                       np.full((4, 3, 3, 1), 0.4)]).astype(np.float32),
                np.zeros((28, 28, 1), np.uint8), 7, {"conv1": np.ones((2, 26, 26, 4), np.float16)},
                {"conv1": np.array([[36] + [0] * 40, [0] * 40 + [36]], np.int32)},
                {"conv1": np.linspace(-1, 1, 42).astype(np.float32)}, {"conv1": np.zeros(2, np.int32)})
    first, second = film_frame(film, 0), film_frame(film, 1)
    assert first.data[0].zmax == second.data[0].zmax == pytest.approx(0.4)  # one scale for the whole film
    assert "before training" in first.layout.title.text and "after epoch 1" in second.layout.title.text

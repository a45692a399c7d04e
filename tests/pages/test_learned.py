"""AppTest for "What it learned" (the filters of every conv layer beside their top real patches, the classes,
the test-set map with its click and t-SNE) and Learn's walk through the hierarchy, on a copy of the committed
default model."""
import shutil

import numpy as np
import pytest

from app import resources, session
from tests.apptest import open_app, texts, wait_for
from tests.plotly_specs import annotations, array, chart, png

FILTERS, CLASSES, MAP = ("Filters, layer by layer", "The classes", "The test set as it sees it")


@pytest.fixture(scope="module")
def shared_registry(tmp_path_factory, default_model_dir):
    """One copy of the committed default model for this module's tests that only read it: the page's results
    (maximised images, top patches, the hierarchy; kept per model folder) carry over from test to test, as
    they do from visitor to visitor on a server."""
    folder = tmp_path_factory.mktemp("learned") / "models"
    shutil.copytree(default_model_dir, folder / "mnist-default")
    return folder


@pytest.fixture
def default_in_registry(shared_registry, monkeypatch):
    """The committed default model in the module's shared registry (and active)."""
    monkeypatch.setenv("CNN_MODELS_DIR", str(shared_registry))
    return "mnist-default"


@pytest.fixture
def default_of_its_own(registry, default_model_dir):
    """The committed default model, copied into this test's own registry: a t-SNE run is kept per model folder,
    so each t-SNE test starts from none."""
    shutil.copytree(default_model_dir, registry / "mnist-default")
    return "mnist-default"


def chart_keys(at) -> list[str]:
    return [c.proto.id for c in at.get("plotly_chart")]


def test_filters_of_every_conv_layer_beside_their_top_patches(default_in_registry):
    at = open_app("learned")
    assert at.title[0].value == "What it learned"
    ids = chart_keys(at)
    # One picture per layer for the filters and one for the patches, in depth order; nothing else is computed.
    assert [i.rsplit("-", 1)[-1] for i in ids] == ["learned_filters_conv1", "learned_patches_conv1",
                                                  "learned_filters_conv2", "learned_patches_conv2"]
    for name, size, share, filters in (("conv1", 5, "3%", 16), ("conv2", 14, "25%", 32)):
        grid = chart(at, f"learned_filters_{name}")
        assert [t["type"] for t in grid["data"]] == ["image", "scatter"]  # one image; invisible hover markers
        assert len(grid["data"][1]["customdata"]) == filters
        assert f"Receptive field {size}×{size} px ({share} of the 28×28 image)" in annotations(grid)
        patches = chart(at, f"learned_patches_{name}")
        assert [t["type"] for t in patches["data"]] == ["image", "scatter"]
        assert f"the {size}×{size} px each value sees" in annotations(patches)
        # The first row of filters: 8 filters × 9 patches, numbered by their filter.
        assert [c[0] for c in patches["data"][1]["customdata"]][::9] == list(range(8))
    # The picture is the engine's maximised images, tile by tile (upscaled 4×, 2 px apart).
    from cnn.explain.maximise import maximise
    from cnn.store.registry import load_model

    maxed = maximise(load_model("mnist-default"), "conv2")
    pixels = png(chart(at, "learned_filters_conv2"))[::4, ::4, 0]
    for i in (0, 1, 9):
        top, left = (i // 8) * 30, (i % 8) * 30
        np.testing.assert_array_equal(pixels[top:top + 28, left:left + 28], maxed.images[i, ..., 0])
    assert not at.exception and not at.error


def test_a_click_on_a_filter_shows_its_rows_patches(default_in_registry):
    at = open_app("learned")
    picker = at.segmented_control(key="learned_row_conv2")
    assert picker.value == 0 and len(picker.options) == 4
    # What clicking filter 21 of conv2 does: its row (filters 16–23) is shown on the right.
    at.session_state["learned_filters_conv2"] = {"selection": {"points": [{"customdata": 21}]}}
    at.run()
    assert at.segmented_control(key="learned_row_conv2").value == 2
    frame = chart(at, "learned_filters_conv2")["layout"]["shapes"]
    assert len(frame) == 1 and frame[0]["y0"] == 2 * 30 - 0.5  # the third row of tiles is framed
    rows = [c[0] for c in chart(at, "learned_patches_conv2")["data"][1]["customdata"]][::9]
    assert rows == list(range(16, 24))
    assert "filters 16–23" in chart(at, "learned_patches_conv2")["layout"]["title"]["text"]
    # The picker still works by itself afterwards.
    at.segmented_control(key="learned_row_conv2").set_value(3).run()
    assert [c[0] for c in chart(at, "learned_patches_conv2")["data"][1]["customdata"]][::9] == list(range(24, 32))


def test_the_classes_tab(default_in_registry):
    at = open_app("learned", **{session.LEARNED_VIEW: CLASSES})
    assert [i.rsplit("-", 1)[-1] for i in chart_keys(at)] == ["learned_classes"]
    grid = chart(at, "learned_classes")
    hovers = grid["data"][1]["hovertext"]
    assert len(hovers) == 10 and hovers[3].startswith("class 3 — the model says ")
    assert "100.0%" not in " ".join(hovers)
    assert any("of 10" in m and "median probability" in m for m in texts(at, "markdown"))


def test_the_map_and_a_click_on_a_point_shows_that_image(default_in_registry):
    from cnn.data.load import load_dataset

    at = open_app("learned", **{session.LEARNED_VIEW: MAP})
    figure = chart(at, "learned_map_pick_pca")
    assert "principal axis" in figure["layout"]["xaxis"]["title"]["text"]
    points = np.concatenate([array(t["customdata"]) for t in figure["data"]])
    data = load_dataset("mnist")
    assert len(points) == len(data.y_test)  # every test image, once
    assert any("Click a point" in c for c in texts(at, "caption"))
    # A misclassified point (drawn as ✕): what clicking it does.
    wrong = next(t for t in figure["data"] if t["marker"]["symbol"] == "x")
    index, label, predicted = (int(v) for v in array(wrong["customdata"])[0])
    at.session_state["learned_map_pick_pca"] = {"selection": {"points": [{"customdata": [index, label, predicted]}]}}
    at.run()
    assert not at.exception
    assert [c for image in at.image for c in image.captions] == [f"test image {index}"]
    line = next(m for m in texts(at, "markdown") if m.startswith("True label"))
    assert f"True label **{label}**" in line and f"predicted **{predicted}**" in line and "wrong" in line
    # The probabilities shown are the model's on that very test image.
    from cnn.analysis.inference import predict_proba
    from cnn.store.registry import load_model

    bars = array(chart(at, "learned_pick_probs")["data"][0]["y"])
    np.testing.assert_allclose(bars, predict_proba(load_model("mnist-default"), data.x_test[index]), atol=1e-5)
    # A point of a trace sent as a typed array arrives from the browser as {"0": …, "1": …, "2": …}.
    other = int(points[5, 0])
    at.session_state["learned_map_pick_pca"] = {"selection": {"points": [
        {"customdata": {"0": other, "1": int(points[5, 1]), "2": int(points[5, 2])}}]}}
    at.run()
    assert [c for image in at.image for c in image.captions] == [f"test image {other}"]


def test_tsne_runs_in_the_background_with_progress_and_stop(default_of_its_own, monkeypatch):
    monkeypatch.setattr(resources, "TSNE_POINTS", 300)
    at = open_app("learned", **{session.LEARNED_VIEW: MAP})
    at.segmented_control(key=session.LEARNED_MAP_METHOD).set_value("t-SNE (about half a minute)").run()
    assert any("places 300 test images" in m for m in texts(at, "markdown"))
    at.button(key="learned_tsne_start").click().run()
    assert not at.exception
    # Running: progress and Stop (or already done on a fast machine); then the map of 300 points.
    wait_for(at, lambda a: any(c.proto.id.endswith("-learned_map_pick_tsne") for c in a.get("plotly_chart")),
             timeout=240, every=1)
    figure = chart(at, "learned_map_pick_tsne")
    assert sum(len(array(t["customdata"])) for t in figure["data"]) == 300
    assert figure["layout"]["xaxis"]["title"]["text"] == "t-SNE 1"


def test_stopping_tsne_says_so_and_offers_to_start_again(default_of_its_own, monkeypatch):
    monkeypatch.setattr(resources, "TSNE_POINTS", 2000)  # long enough to be stopped
    at = open_app("learned", **{session.LEARNED_VIEW: MAP, session.LEARNED_MAP_METHOD: "t-SNE (about half a minute)"})
    at.button(key="learned_tsne_start").click().run()
    assert at.button(key="learned_tsne_stop") is not None and at.get("progress")
    at.button(key="learned_tsne_stop").click().run()
    wait_for(at, lambda a: any("stopped" in t for t in texts(a, "info")), timeout=120, every=1)
    assert at.button(key="learned_tsne_start") is not None


def test_learn_walks_the_hierarchy_and_checks_the_lesson_on_this_model(default_in_registry):
    from cnn.data.load import load_dataset
    from cnn.teach.hierarchy import hierarchy
    from cnn.store.registry import load_model

    at = open_app("learn", learn_chapter=8)  # 9 · The hierarchy
    assert not at.exception and not at.error
    ids = [i.rsplit("-", 1)[-1] for i in chart_keys(at)]
    walk = [i for i in ids if i.startswith("learn_hier_")]
    assert walk == ["learn_hier_filters_conv1", "learn_hier_patches_conv1", "learn_hier_filters_conv2",
                    "learn_hier_patches_conv2"]
    assert "Receptive field 14×14 px (25% of the 28×28 image)" in annotations(chart(at, "learn_hier_filters_conv2"))
    assert {"learn_arch_model", "learn_arch_lenet"} <= set(ids)  # the architecture diagrams stay
    # The checks are the engine's, on this model and its test split, each with its verdict.
    data = load_dataset("mnist")
    expected = hierarchy(load_model("mnist-default"), data.x_test, data.y_test).checks
    lines = [m for m in texts(at, "markdown") if m.startswith((":green[", ":red[", ":gray["))]
    assert len(lines) == len(expected) == 4
    for line, check in zip(lines, expected):
        mark = {True: ":green[", False: ":red[", None: ":gray["}[check.holds]
        assert line.startswith(mark) and check.verdict in line and check.claim[1:] in line

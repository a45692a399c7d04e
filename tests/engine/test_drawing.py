"""Predict's canvas (streamlit-drawable-canvas): what the browser sends is checked by schema, rasterised like the
browser draws it, and the drawing is put back when Draw is opened again.

tests/data/canvas_seven.json and .png are what the real `st_canvas` 0.13 sent from Chromium for one stroke of a
7 (its `json_data`, and its PNG with `return_image_data=True`)."""
import copy
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.drawing import MAX_OBJECTS, MAX_POINTS, rasterise, vet_drawing, vet_png
from app.session import Tab
from cnn.data.preprocess import prepare_image
from tests.apptest import open_app, texts

DATA = Path(__file__).parents[1] / "data"
SIDE = 280
pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def seven():
    return json.loads((DATA / "canvas_seven.json").read_text())


@pytest.fixture(scope="module")
def browser_png():
    return (DATA / "canvas_seven.png").read_bytes()


def test_the_strokes_are_rasterised_as_the_browser_draws_them(seven, browser_png):
    ours = rasterise(vet_drawing(seven, SIDE), SIDE)
    theirs = vet_png(browser_png, SIDE)
    assert ours.shape == theirs.shape == (SIDE, SIDE, 4) and ours.dtype == np.uint8
    a, b = ours[..., 0] > 127, theirs[..., 0] > 127
    assert (a & b).sum() / (a | b).sum() > 0.93  # the same stroke, to a pixel's antialiasing
    # …and the model sees the same digit either way.
    x, y = prepare_image(ours, (28, 28, 1)).astype(int), prepare_image(theirs, (28, 28, 1)).astype(int)
    assert np.abs(x - y).mean() < 6


def test_a_moved_scaled_or_rotated_stroke_lands_where_fabric_puts_it(seven):
    drawing = vet_drawing(seven, SIDE)
    moved = copy.deepcopy(drawing)
    moved["objects"][0]["left"] += 30
    a, b = rasterise(drawing, SIDE)[..., 0].astype(float), rasterise(moved, SIDE)[..., 0].astype(float)
    cols = np.arange(SIDE)
    assert (b.sum(axis=0) @ cols) / b.sum() - (a.sum(axis=0) @ cols) / a.sum() == pytest.approx(30, abs=1)
    # Turned half a circle about its own centre (fabric's origin here): same centre, upside down.
    turned = copy.deepcopy(drawing)
    turned["objects"][0]["angle"] = 180.0
    c = rasterise(turned, SIDE)[..., 0].astype(float)
    rows = np.arange(SIDE)
    centre = lambda img: ((img.sum(axis=1) @ rows) / img.sum(), (img.sum(axis=0) @ rows) / img.sum())  # noqa: E731
    box_a, box_c = np.flatnonzero(a.sum(axis=1)), np.flatnonzero(c.sum(axis=1))
    assert np.allclose(centre(a)[1], 2 * path_centre(drawing)[0] - centre(c)[1], atol=3)
    assert box_a[0] + box_a[-1] == pytest.approx(box_c[0] + box_c[-1], abs=3)  # the same box, mirrored


def path_centre(drawing):
    """(x, y) of the first object's origin point: where fabric centres it."""
    obj = drawing["objects"][0]
    return obj["left"], obj["top"]


def test_only_a_freehand_drawing_passes(seven):
    vetted = vet_drawing(seven, SIDE)
    assert [o["type"] for o in vetted["objects"]] == ["path"] and "lockMovementX" not in vetted["objects"][0]
    assert vet_drawing({"objects": []}, SIDE) == {"version": "", "objects": [], "background": "#000000"}
    path = seven["objects"][0]

    def with_(**changes):
        return {"objects": [{**path, **changes}]}

    for bad in (None, "x", [], {"objects": "x"}, {"objects": [1]},
                with_(type="Image", src="http://example.com/x.png"), with_(path="M 0 0"),
                with_(path=[["Z"]]), with_(path=[["M", 1]]), with_(path=[["M", "1", 2]]),
                with_(path=[["M", float("nan"), 2]]), with_(path=[["M", 1e12, 2]]), with_(left=True),
                with_(strokeWidth=0), with_(strokeWidth=1e6), with_(originX="nowhere"), with_(stroke=["red"]),
                {"objects": [path] * (MAX_OBJECTS + 1)},
                with_(path=[["M", 1, 2]] + [["L", 3, 4]] * MAX_POINTS)):
        assert vet_drawing(bad, SIDE) is None, bad


def test_a_png_is_checked_before_it_is_decoded(browser_png):
    assert vet_png(browser_png, SIDE).shape == (SIDE, SIDE, 4)
    buffer = io.BytesIO()
    Image.new("RGB", (100, 100)).save(buffer, format="PNG")
    assert vet_png(buffer.getvalue(), SIDE) is None  # not this canvas's size
    buffer = io.BytesIO()
    Image.new("RGB", (5000, 5000)).save(buffer, format="PNG")
    assert vet_png(buffer.getvalue(), SIDE) is None  # refused from its header
    assert vet_png(b"GIF89a....", SIDE) is None and vet_png(None, SIDE) is None
    assert vet_png(b"\x89PNG\r\n\x1a\n" + b"\0" * 100, SIDE) is None  # truncated


def test_predict_puts_the_last_drawing_back_and_reads_it(seven, registry, default_model_dir):
    """Reopening Draw: the kept drawing is what the canvas starts from (initial_drawing) and what is predicted
    until the canvas sends again (AppTest renders the component but it sends nothing)."""
    shutil.copytree(default_model_dir, registry / "mnist-default")
    tab = Tab(active_model="mnist-default")
    at = open_app("predict", tab=tab, predict_drawing=vet_drawing(seven, SIDE), predict_source="Draw")
    assert not at.exception
    assert [m.value for m in at.metric] == ["7"], texts(at, "info") + texts(at, "warning")
    assert any("ink pixels" in c for c in texts(at, "caption"))
    # Nothing kept: the page asks for a drawing.
    at = open_app("predict", tab=tab, predict_source="Draw")
    assert any("Draw something on the canvas" in i for i in texts(at, "info"))

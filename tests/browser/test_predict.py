"""In real Chromium, Predict as a person uses it: draw, upload, sample, switch inputs and come back to the
drawing, open every view, pick Grad-CAM's class and layer, switch preprocessing steps off; then Learn follows
the same drawing. The `page` fixture fails a test on any exception or error box."""
import re
import time

import numpy as np
from PIL import Image
from playwright.sync_api import expect

from tests.chromium import choose, click, combobox, draw, expect_metric, go, nav, open_tab, select, wait_idle

ONE = [[(0.5, 0.15), (0.5, 0.85)]]  # a vertical stroke
SEVEN = [[(0.25, 0.2), (0.75, 0.2), (0.45, 0.85)]]


def test_draw_switch_inputs_and_come_back_to_the_drawing(page, app_server, tmp_path):
    go(page, app_server, "predict")
    page.get_by_text("Draw something on the canvas").wait_for()
    draw(page, SEVEN)
    expect_metric(page, "Prediction", "7")
    confidence = page.locator('[data-testid="stMetric"]').filter(has_text="Prediction").inner_text()
    assert "100.0%" not in confidence and "confident" in confidence

    # A test image of the model's dataset, and another one.
    choose(page, "Sample")
    page.get_by_text(re.compile(r"Test image #\d+ of MNIST")).first.wait_for()
    page.get_by_text(re.compile(r"True label \d: (right|wrong)")).wait_for()
    page.get_by_role("button", name="Next sample").click()
    wait_idle(page)
    page.get_by_text(re.compile(r"True label \d: (right|wrong)")).wait_for()

    # An upload: a dark "1" on white paper, which the preprocessing inverts.
    choose(page, "Upload")
    paper = np.full((120, 90), 235, np.uint8)
    paper[15:105, 40:52] = 20
    path = tmp_path / "one.png"
    Image.fromarray(paper).save(path)
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(path))
    wait_idle(page)
    expect_metric(page, "Prediction", "1")

    # Back to Draw: the seven is still on the canvas and still predicted.
    choose(page, "Draw")
    expect_metric(page, "Prediction", "7")
    ink = page.get_by_text(re.compile(r"model input .* ink pixels")).inner_text()
    draw(page, [[(0.3, 0.55), (0.6, 0.55)]])  # a bar across keeps it a seven and proves the canvas is live
    expect(page.get_by_text(re.compile(r"model input .* ink pixels"))).not_to_have_text(ink)
    expect_metric(page, "Prediction", "7")


def test_every_view_and_its_pickers(page, app_server):
    go(page, app_server, "predict")
    draw(page, SEVEN)
    expect_metric(page, "Prediction", "7")

    # The preprocessing inspector: switching the centring off changes the model input.
    page.get_by_text("Preprocessing inspector").click()
    page.get_by_text("centre of mass centred").first.wait_for()
    page.locator('[data-testid="stCheckbox"], [data-testid="stToggle"]').filter(has_text="centre").first.click()
    wait_idle(page)
    page.get_by_text("(off)").first.wait_for()

    open_tab(page, "Activation maps")
    select(page, "Layer", "conv2 — 8 × 8 × 32")
    page.get_by_text("conv2: 32 feature maps").first.wait_for()
    open_tab(page, "Filters")
    page.get_by_text(re.compile("kernels of")).first.wait_for()
    open_tab(page, "Grad-CAM & saliency")
    assert combobox(page, "Explain class").input_value() == "the predicted class (7)"  # not "Choose an option"
    page.get_by_text("Grad-CAM for '7'").first.wait_for()
    select(page, "Explain class", "3")
    page.get_by_text("Grad-CAM for '3'").first.wait_for()
    select(page, "Layer", "conv1")
    page.get_by_text("Grad-CAM for '3' at conv1").first.wait_for()
    open_tab(page, "Robustness")
    choose(page, "horizontal shift (pixels)")
    page.get_by_text(re.compile(r"The prediction stays '7' for \d+ of 17 settings")).wait_for()


def test_learn_follows_the_drawing(page, app_server):
    go(page, app_server, "predict")
    draw(page, ONE)
    expect_metric(page, "Prediction", "1")
    ink = int(re.search(r"(\d+) ink pixels", page.get_by_text(re.compile(r"model input .* ink pixels")).inner_text()).group(1))
    assert ink > 20
    nav(page, "Learn")
    page.get_by_text("your image from Predict").first.wait_for(timeout=60_000)
    page.get_by_text(f"{ink} ink pixels").first.wait_for()
    click(page, "2 · Convolution")  # Next: the drawing, convolved by the model's own first filter
    page.get_by_text("NumPy and Keras agree").first.wait_for()


def test_first_visit_of_a_fresh_server_shows_the_canvas_at_once_then_predicts(chromium, tmp_path):
    """A person opens the app the moment it has started and goes to Predict: the canvas is there while TensorFlow
    still loads in the background, a digit drawn at once is predicted when the model is ready, and the page stops
    looking again every second afterwards."""
    from tests.chromium import check_page, new_page, start_server

    server = start_server(tmp_path)
    tab = new_page(chromium)
    frames = []  # when the server sent something (a rerun sends at least its script-finished message)
    tab.on("websocket", lambda ws: ws.on("framereceived", lambda payload: frames.append(time.monotonic())))
    try:
        go(tab, server)
        nav(tab, "Predict")
        tab.locator("canvas").last.wait_for()
        draw(tab, SEVEN)
        expect_metric(tab, "Prediction", "7", timeout=120_000)
        wait_idle(tab)
        assert frames, "no websocket frames seen: the check below would prove nothing"
        quiet_from = time.monotonic()
        tab.wait_for_timeout(3000)
        late = [t for t in frames if t > quiet_from]
        assert not late, f"the page still reruns on its own: {len(late)} messages in 3 s"
        check_page(tab)
    finally:
        tab.context.close()
        server.stop()


def test_a_tight_cropped_real_digit_is_read(page, app_server, tmp_path):
    """A teacher's upload: a real MNIST test digit cut out of a worksheet scan, cropped to its ink, dark on
    grey paper, as a JPEG — read, never "blank", and the inspector shows its steps."""
    from cnn.data.load import load_dataset
    from tests import real_digits

    data = load_dataset("mnist-sample", limit=(10, 50))
    three = data.x_test[np.flatnonzero(data.y_test == 3)[1]][..., 0]  # the first the model misreads even raw
    picture = real_digits.on_paper(lambda d, _: real_digits.crop_tight(d, 0))(three, np.random.default_rng(0))
    path = tmp_path / "worksheet-3.jpg"
    Image.fromarray(picture).resize((picture.shape[1] * 2, picture.shape[0] * 2)).save(path, quality=30)
    go(page, app_server, "predict")
    choose(page, "Upload")
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(path))
    wait_idle(page)
    expect_metric(page, "Prediction", "3")
    assert page.get_by_text(re.compile("blank", re.I)).count() == 0
    page.get_by_text("Preprocessing inspector").click()
    page.get_by_text(re.compile(r"stretched: background \(border median")).first.wait_for()
    page.get_by_text(re.compile(r"edges sharpened")).first.wait_for()

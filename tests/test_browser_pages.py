"""In real Chromium: draw a digit and get it right, see inside the network, follow it on Learn;
click a mistake cell of the confusion matrix and see those images."""
import re

import numpy as np

from tests.browser import draw, go, nav, wait_idle

ONE = [[(0.5, 0.15), (0.5, 0.85)]]  # a vertical stroke
SEVEN = [[(0.25, 0.2), (0.75, 0.2), (0.45, 0.85)]]


def prediction(page) -> str:
    metric = page.locator('[data-testid="stMetric"]').filter(has_text="Prediction")
    metric.wait_for(timeout=60_000)
    return metric.locator('[data-testid="stMetricValue"]').inner_text().strip()


def test_draw_a_digit_and_look_inside(page, app_server):
    go(page, app_server, "predict")
    page.get_by_text("Draw something on the canvas").wait_for()
    draw(page, ONE)
    assert prediction(page) == "1"
    page.get_by_text("Activation maps").first.wait_for()
    assert page.locator('[data-testid="stPlotlyChart"]').count() >= 3  # input, probabilities, maps
    ink = int(re.search(r"(\d+) ink pixels", page.get_by_text(re.compile(r"\d+ ink pixels")).inner_text()).group(1))
    assert ink > 20

    # Learn walks through the same drawing.
    nav(page, "Learn")
    page.get_by_text("your image from Predict").first.wait_for(timeout=60_000)
    page.get_by_text(f"{ink} ink pixels").first.wait_for()
    page.get_by_text("NumPy and Keras agree").first.wait_for()


def test_draw_a_seven(page, app_server):
    go(page, app_server, "predict")
    draw(page, SEVEN)
    assert prediction(page) == "7"


def test_click_a_mistake_cell(page, app_server, default_model_dir):
    import keras

    from cnn.data import load_dataset
    from cnn.metrics import evaluate

    model = keras.saving.load_model(default_model_dir / "model.keras", safe_mode=True)
    data = load_dataset("mnist")
    cm = evaluate(model, data.x_test, data.y_test, data.class_names).confusion
    off = cm - np.diag(np.diag(cm))
    true, pred = np.unravel_index(off.argmax(), off.shape)

    go(page, app_server, "evaluate")
    page.get_by_text("Click a cell to see those images").wait_for(timeout=120_000)
    plot = page.locator('[data-testid="stPlotlyChart"]').first
    area = plot.locator(".nsewdrag").first.bounding_box()
    k = len(cm)
    page.mouse.click(area["x"] + (pred + 0.5) * area["width"] / k, area["y"] + (true + 0.5) * area["height"] / k)
    wait_idle(page)
    page.get_by_text(f"True {true} predicted as {pred}: {off[true, pred]} image(s)").wait_for(timeout=30_000)
    assert page.locator('[data-testid="stImage"] img, [data-testid="stImage"]').count() >= 1

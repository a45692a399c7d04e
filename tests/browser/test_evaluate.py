"""In real Chromium, Evaluate as a person uses it: click a diagonal cell and two mistake cells of the confusion
matrix, pick an image in each gallery for a closer look, and still find the CSV download."""
import numpy as np

from tests.chromium import combobox, go, open_tab, pick_nth, wait_idle


def default_confusion(default_model_dir):
    import keras

    from cnn.data.load import load_dataset
    from cnn.analysis.metrics import evaluate

    model = keras.saving.load_model(default_model_dir / "model.keras", safe_mode=True)
    data = load_dataset("mnist")
    return evaluate(model, data.x_test, data.y_test, data.class_names).confusion


def click_cell(page, true: int, pred: int, k: int = 10) -> None:
    # As a person does, click once the last click's images have finished drawing: a click while the page is
    # still running can be lost (the chart is redrawn as the run ends, and the new selection with it).
    wait_idle(page)
    # The main area scrolls inside its own container (a gallery below may have scrolled it): bring the grid into
    # view so that the click lands on the cell, as a person would scroll to it.
    grid = page.locator('[data-testid="stPlotlyChart"]').first.locator(".nsewdrag").first
    grid.scroll_into_view_if_needed()
    area = grid.bounding_box()
    page.mouse.click(area["x"] + (pred + 0.5) * area["width"] / k, area["y"] + (true + 0.5) * area["height"] / k)
    wait_idle(page)


def test_cells_galleries_and_the_csv(page, app_server, default_model_dir):
    cm = default_confusion(default_model_dir)
    off = cm - np.diag(np.diag(cm))
    mistakes = np.dstack(np.unravel_index(np.argsort(-off, axis=None)[:2], off.shape))[0]

    go(page, app_server, "evaluate")
    page.get_by_text("Click a cell to see those images").wait_for(timeout=120_000)
    cells = [(3, 3), *[tuple(int(v) for v in m) for m in mistakes]]
    for true, pred in cells:
        click_cell(page, true, pred)
        page.get_by_text(f"True {true} predicted as {pred}: {cm[true, pred]} image(s)").wait_for(timeout=30_000)
        page.get_by_text("Grad-CAM for").first.wait_for()  # the first image's closer look, under the gallery

    # Pick the second image of the cell's gallery, then the third in each tab's gallery: each gets its closer look.
    picked = pick_nth(page, "Look closer at", 1)
    assert combobox(page, "Look closer at").input_value() == picked
    page.get_by_text(f"{picked.split(' ')[0]}: Grad-CAM for").first.wait_for()
    for tab in ("Misclassified", "Hardest examples"):
        open_tab(page, tab)
        panel = page.get_by_role("tabpanel", name=tab)
        picked = pick_nth(page, "Look closer at", 2, within=panel)
        assert combobox(page, "Look closer at", panel).input_value() == picked
        panel.get_by_text(f"{picked.split(' ')[0]}: Grad-CAM for").first.wait_for()
    open_tab(page, "Dead filters")
    page.get_by_text("filters dead").first.wait_for()
    assert page.get_by_role("button", name="Download predictions (CSV)").is_visible()

"""In real Chromium, drawing on Predict's canvas (streamlit-drawable-canvas) as a person does: with the mouse,
then its toolbar's Undo and clear; and with a finger on a phone. The `page` fixture fails a test on any
exception or error box."""
import re


from tests.chromium import check_page, draw, expect_metric, go, new_page, wait_idle

ONE = [[(0.5, 0.12), (0.5, 0.88)]]
BAR = [[(0.2, 0.12), (0.5, 0.12)]]  # a bar to the left of the one's top: now a seven
CANVAS = "canvas.upper-canvas"  # fabric.js's drawing layer (the lower ones show the drawing)


def test_draw_undo_and_clear_with_the_mouse(page, app_server):
    go(page, app_server, "predict")
    page.get_by_text("Draw something on the canvas").wait_for()
    draw(page, ONE, CANVAS)
    expect_metric(page, "Prediction", "1")
    draw(page, BAR, CANVAS)
    expect_metric(page, "Prediction", "7")
    # Undo takes the bar away again: a one.
    page.get_by_role("button", name="Undo").click()
    expect_metric(page, "Prediction", "1")
    # Redo puts it back.
    page.get_by_role("button", name="Redo").click()
    expect_metric(page, "Prediction", "7")
    # Clear (the bin): nothing to predict.
    page.get_by_role("button", name="Reset canvas & history").click()
    page.get_by_text("Draw something on the canvas").wait_for()
    expect_metric(page, "Prediction", "—")


def touch_stroke(page, cdp, points) -> None:
    """One finger stroke through `points` (0…1 of the canvas), as a phone's touch events."""
    box = page.locator(CANVAS).last.bounding_box()
    at = [{"x": box["x"] + x * box["width"], "y": box["y"] + y * box["height"]} for x, y in points]
    cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [at[0]]})
    for a, b in zip(at, at[1:]):
        for k in range(1, 13):
            t = k / 12
            cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [
                {"x": a["x"] + t * (b["x"] - a["x"]), "y": a["y"] + t * (b["y"] - a["y"])}]})
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})


def test_draw_with_a_finger_on_a_phone(chromium, app_server):
    phone = new_page(chromium, 390, 1400, has_touch=True, is_mobile=True)
    try:
        go(phone, app_server, "predict")
        phone.get_by_text("Draw something on the canvas").wait_for()
        phone.locator(CANVAS).last.scroll_into_view_if_needed()
        cdp = phone.context.new_cdp_session(phone)
        touch_stroke(phone, cdp, ONE[0])
        expect_metric(phone, "Prediction", "1")
        touch_stroke(phone, cdp, BAR[0])
        expect_metric(phone, "Prediction", "7")
        wait_idle(phone)
        check_page(phone)
        assert re.search(r"\d+ ink pixels", phone.get_by_text(re.compile("ink pixels")).first.inner_text())
    finally:
        phone.context.close()

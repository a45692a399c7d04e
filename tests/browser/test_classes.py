"""In real Chromium, on a hosted server, the whole of Your classes as a person does it: name three classes, draw
examples of each with the mouse, train with one press, draw a new example on Predict and see its class; a
second visitor sees none of it."""
import re

import pytest

from tests.chromium import (add_class, check_page, draw, draw_examples, expect_metric, go, need_chromium, new_page,
                            start_server, wait_idle)
from tests.shapes import SHAPES, drawings

CANVAS = "canvas.upper-canvas"  # fabric.js's drawing layer
EXAMPLES = 6  # per class: the page's minimum is 5


@pytest.fixture(scope="module")
def hosted_server(tmp_path_factory):
    need_chromium()
    server = start_server(tmp_path_factory.mktemp("classes"), CNN_HOSTED="1")
    yield server
    server.stop()


def test_draw_three_classes_train_and_predict_then_another_visitor_sees_none(chromium, hosted_server):
    page = new_page(chromium, 1400, 1600)
    other = new_page(chromium, 1400, 1000)
    try:
        go(page, hosted_server, "classes")
        page.get_by_text("Start with a class").wait_for()
        for shape in SHAPES:
            add_class(page, shape)
        for shape in SHAPES:  # examples, drawn with the mouse
            draw_examples(page, shape, drawings(shape, EXAMPLES, seed=1))
        page.get_by_text(f"{len(SHAPES) * EXAMPLES - 3} examples to learn from and 3 held out").wait_for()

        # Another visitor on the same server has no classes at all.
        go(other, hosted_server, "classes")
        other.get_by_text("Start with a class").wait_for()
        assert other.get_by_role("radio", name=re.compile(r"^circle \(")).count() == 0

        # One press: Train opens with the job, and the model is saved.
        page.get_by_role("button", name="Train a model on these classes").click()
        page.get_by_text(re.compile(r"Job: my-classes")).wait_for(timeout=60_000)
        # .first: for a moment the run that replaces the message still shows the old copy beside it
        page.get_by_text(re.compile(r"saved as")).first.wait_for(timeout=180_000)
        wait_idle(page)

        # Predict draws with the new model: a new circle is a circle.
        page.get_by_role("link", name=re.compile("Try my-classes")).click()
        wait_idle(page)
        page.locator(CANVAS).last.wait_for()
        draw(page, drawings("circle", 1, seed=7)[0], CANVAS, steps=2)
        expect_metric(page, "Prediction", "circle", timeout=60_000)
    finally:
        for tab in (page, other):
            tab.wait_for_timeout(300)
            try:
                check_page(tab)
            finally:
                tab.context.close()

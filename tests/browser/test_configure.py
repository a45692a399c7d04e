"""In real Chromium, Configure on a laptop, a narrow window and a phone: the layer buttons show their icons,
no label breaks in the middle of a word, no metric is cut short — and editing still works."""
import re

import pytest
from playwright.sync_api import expect

from cnn.model.spec import preset
from tests.chromium import go, layout_problems, new_page, wait_idle


@pytest.mark.parametrize("width", [1400, 800, 390])
def test_configure_at_every_width(chromium, app_server, width):
    from tests.chromium import check_page

    page = new_page(chromium, width=width, height=2400)
    try:
        go(page, app_server, "configure")
        page.get_by_text("Shapes, parameters, cost").wait_for(timeout=60_000)
        page.locator('[data-testid="stMetric"]').first.wait_for(timeout=60_000)
        wait_idle(page)
        # Every move/remove button shows its icon, at a usable size.
        for icon in ("arrow_upward", "arrow_downward", "close"):
            buttons = page.locator('[data-testid="stBaseButton-secondary"]').filter(
                has=page.locator('[data-testid="stIconMaterial"]', has_text=re.compile(f"^{icon}$"))).filter(
                visible=True)
            expect(buttons).to_have_count(9)  # one per layer of the default preset
            first = buttons.first
            assert first.locator('[data-testid="stIconMaterial"]').inner_text() == icon
            box = first.bounding_box()
            assert box["width"] >= 28 and box["height"] >= 28
        assert layout_problems(page) == []
        # The editor still works at this width: remove the first layer, and the layer list follows.
        page.locator('[data-testid="stBaseButton-secondary"]').filter(
            has=page.locator('[data-testid="stIconMaterial"]', has_text=re.compile("^close$"))).filter(
            visible=True).first.click()
        wait_idle(page)
        # The default's second layer moves up to the first place.
        page.get_by_text(f"1 · {type(preset('default').layers[1]).__name__}").first.wait_for()
        check_page(page)
    finally:
        page.context.close()


def test_a_refused_zip_leaves_a_usable_page(page, app_server, tmp_path):
    from tests.chromium import expect_error, select, set_number
    from tests.hostile import class_zip

    go(page, app_server, "configure")
    page.get_by_text("Shapes, parameters, cost").wait_for(timeout=60_000)
    select(page, "Dataset", "Upload class folders (.zip)")
    zip_path = tmp_path / "cats.zip"
    zip_path.write_bytes(class_zip(classes=("cats",)))
    with expect_error(page, r"found 1 class folder \('cats', 6 images\) and needs at least 2"):
        page.get_by_role("region", name="A .zip with one sub-folder").get_by_test_id(
            "stFileUploaderDropzoneInput").set_input_files(str(zip_path))
        wait_idle(page)
    # The page still works: edits go on, and a refresh shows no traceback and no stale error.
    set_number(page, "epochs", 4)
    page.reload()
    wait_idle(page)
    page.get_by_text("Shapes, parameters, cost").wait_for(timeout=60_000)
    assert page.locator('[data-testid="stAlertContentError"]').count() == 0

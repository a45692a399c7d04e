"""In real Chromium: configure, train with live curves, leave and come back (and refresh), find the model."""
from tests.browser import go, nav, set_number, wait_idle


def test_train_in_the_browser_and_come_back(page, app_server):
    go(page, app_server, "configure")
    page.get_by_text("Shapes, parameters, cost").wait_for()
    set_number(page, "epochs", 8)
    nav(page, "Train")
    page.get_by_role("textbox", name="Save as").fill("browser-run")
    page.get_by_role("textbox", name="Save as").press("Enter")
    set_number(page, "Use at most this many training images (0 = all)", 6000)
    page.get_by_role("button", name="Start training").click()
    page.get_by_text("A training job is running").wait_for(timeout=30_000)
    page.locator('[data-testid="stPlotlyChart"]').first.wait_for(timeout=60_000)
    page.get_by_text("epoch 1/8").first.wait_for(timeout=60_000)

    # Leave while it trains, come back: the same job is shown, still going.
    nav(page, "Models")
    page.get_by_role("heading", name="🗂️ Models").wait_for()
    nav(page, "Train")
    page.get_by_text("A training job is running").wait_for(timeout=10_000)
    assert "sid=" in page.url

    # A browser refresh reattaches to this tab's job (the URL carries the session id).
    page.reload()
    wait_idle(page)
    page.get_by_text("browser-run").first.wait_for(timeout=10_000)  # the job's name is back on the page
    page.get_by_text("saved as 'browser-run'").wait_for(timeout=180_000)
    assert page.locator('[data-testid="stPlotlyChart"] .js-plotly-plot').count() >= 1

    nav(page, "Models")
    page.locator('[data-testid="stDataFrame"]').first.wait_for()
    assert page.get_by_text("browser-run").count() >= 1
    assert (app_server.models_dir / "browser-run" / "model.keras").is_file()

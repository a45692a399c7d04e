"""In real Chromium: configure, train with live curves, leave and come back (and refresh), find the model;
stop a run and keep the active model; the next run is offered a fresh name."""
import re

from playwright.sync_api import expect

from tests.chromium import go, nav, set_number, wait_idle


def test_train_in_the_browser_and_come_back(page, app_server):
    go(page, app_server, "configure")
    page.get_by_text("Shapes, parameters, cost").wait_for()
    set_number(page, "epochs", 30)  # with 3,000 images, long enough (~20 s) to leave and come back while it runs
    nav(page, "Train")
    set_number(page, "Use at most this many training images (0 = all)", 3000)
    page.get_by_role("textbox", name="Save as").fill("browser-run")
    page.get_by_role("textbox", name="Save as").press("Enter")
    page.get_by_role("button", name="Start training").click()
    page.get_by_text("A training job is running").wait_for(timeout=30_000)
    page.locator('[data-testid="stPlotlyChart"]').first.wait_for(timeout=60_000)
    page.get_by_text(re.compile(r"epoch \d+/30")).first.wait_for(timeout=60_000)

    # Leave while it trains, come back: the same job is shown, still going.
    nav(page, "Models")
    page.get_by_role("heading", name="Models").wait_for()
    nav(page, "Train")
    page.get_by_text("A training job is running").wait_for(timeout=10_000)
    assert "sid=" in page.url

    # A browser refresh reattaches to this tab's job (the URL carries the session id).
    page.reload()
    wait_idle(page)
    page.get_by_text("browser-run").first.wait_for(timeout=10_000)  # the job's name is back on the page
    page.get_by_text("saved as 'browser-run'").first.wait_for(timeout=300_000)
    assert page.locator('[data-testid="stPlotlyChart"] .js-plotly-plot').count() >= 1
    # The finished model is active: the sidebar picker shows it.
    picker = page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"] input')
    expect(picker).to_have_value("browser-run", timeout=15_000)

    nav(page, "Models")
    page.locator('[data-testid="stDataFrame"]').first.wait_for()
    assert page.get_by_text("browser-run").count() >= 1
    assert (app_server.models_dir / "browser-run" / "model.keras").is_file()


def test_stop_a_run_keeps_the_active_model_and_offers_a_fresh_name(page, app_server):
    go(page, app_server, "configure")
    set_number(page, "epochs", 200)  # far more than the seconds before Stop is pressed
    nav(page, "Train")
    picker = page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"] input')
    active = picker.input_value()
    name_box = page.get_by_role("textbox", name="Save as")
    used = name_box.input_value()
    assert re.fullmatch(r"[\w.-]+", used) and "tmp" not in used and "/" not in used
    set_number(page, "Use at most this many training images (0 = all)", 2000)
    page.get_by_role("button", name="Start training").click()
    page.get_by_text("A training job is running").wait_for(timeout=30_000)
    page.get_by_text(re.compile(r"epoch \d+/\d+ · batch")).first.wait_for(timeout=60_000)
    page.get_by_role("button", name="Stop").click()
    page.get_by_text(re.compile(r"stopped on request.*saved as")).first.wait_for(timeout=120_000)
    wait_idle(page)
    expect(picker).to_have_value(active)  # a stopped run does not replace the active model…
    assert name_box.input_value() != used  # …and the next run gets a free name
    use = page.get_by_role("button", name=f"Use {used} as the active model")
    use.click()
    wait_idle(page)
    expect(picker).to_have_value(used)

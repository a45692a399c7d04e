"""In real Chromium, Models as a person uses it: download a model, upload it back, rename the copy (the
Manage tab stays open), and delete it. The shipped model itself is read-only. (The table is drawn on a canvas: its formats are checked by AppTest.)"""
import re
import zipfile

from playwright.sync_api import expect

from tests.chromium import click, go, open_tab, select, wait_idle


def test_download_upload_rename_delete(page, app_server, tmp_path):
    go(page, app_server, "models")
    table = page.locator('[data-testid="stDataFrame"]').first
    table.wait_for()
    select(page, "Model", "mnist-default")
    open_tab(page, "Manage")

    # Download: a zip of the model's folder, and the page does not rerun or leave the Manage tab.
    with page.expect_download() as download:
        page.get_by_role("button", name="Download .zip").click()
    bundle = tmp_path / download.value.suggested_filename
    download.value.save_as(bundle)
    assert zipfile.ZipFile(bundle).namelist() == [f"mnist-default/{f}" for f in (
        "model.keras", "spec.json", "history.json", "metrics.json", "calibration.json", "film.npz")]
    # The shipped model is read-only: no Rename, and the page says why.
    expect(page.get_by_text("This model ships with CNN Studio, so it is read-only")).to_be_visible()
    expect(page.get_by_role("button", name="Rename")).to_have_count(0)

    # Upload it back: imported under a free name and made the active model.
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(bundle))
    wait_idle(page)
    page.get_by_text(re.compile(r"Imported mnist-default\.zip as 'mnist-default-2'")).wait_for(timeout=60_000)
    picker = page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"] input')
    expect(picker).to_have_value("mnist-default-2")

    # Rename the copy: the Manage tab stays open.
    select(page, "Model", "mnist-default-2")
    open_tab(page, "Manage")
    box = page.get_by_role("textbox", name="New name")
    box.fill("my-copy")
    box.press("Enter")
    wait_idle(page)
    click(page, "Rename")
    page.get_by_text("Renamed 'mnist-default-2' to 'my-copy'.").wait_for()
    expect(page.get_by_role("button", name="Rename")).to_be_visible()
    expect(picker).to_have_value("my-copy")

    # Delete it, after confirming.
    page.get_by_text("Delete this model").click()
    page.get_by_text("Yes, delete 'my-copy' and its files").click()
    expect(page.get_by_role("checkbox", name="Yes, delete 'my-copy' and its files")).to_be_checked()
    wait_idle(page)
    expect(page.get_by_role("button", name="Delete", exact=True)).to_be_enabled()
    click(page, "Delete")
    page.get_by_text("Deleted 'my-copy'.").wait_for()
    assert not (app_server.models_dir / "my-copy").exists()
    expect(picker).to_have_value("mnist-default")


"""In real Chromium, one hosted server (CNN_HOSTED=1, at most one training at a time) and several visitors,
each in a browser context of their own: nobody sees, renames, deletes or stops another's models and jobs —
even with their link; nobody can delete the shipped model; four trainings queue fairly and all complete."""
import re
import time

import pytest
from playwright.sync_api import expect

from tests.chromium import go, need_chromium, new_page, open_tab, set_number, start_server, wait_idle


@pytest.fixture(scope="module")
def hosted_server(tmp_path_factory):
    need_chromium()
    server = start_server(tmp_path_factory.mktemp("hosted"), CNN_HOSTED="1", CNN_MAX_JOBS="1")
    yield server
    server.stop()


@pytest.fixture
def visitor(chromium, hosted_server):
    """A function that opens one more visitor (a browser context of their own, watched for exceptions)."""
    pages = []

    def open_visitor():
        page = new_page(chromium)
        pages.append(page)
        return page

    yield open_visitor
    from tests.chromium import check_page

    try:
        for page in pages:
            check_page(page)
    finally:
        for page in pages:
            page.context.close()


def model_names(page) -> list[str]:
    select_box = page.get_by_role("combobox", name="Model", exact=True)
    select_box.click()
    names = [o.strip() for o in page.get_by_role("option").all_inner_texts()]
    page.keyboard.press("Escape")
    return names


def test_visitors_are_kept_apart_even_with_each_others_links(visitor, hosted_server, tmp_path):
    from cnn.store.bundles import bundle_bytes
    from cnn.store.registry import using_models_dir
    from tests.conftest import ROOT

    with using_models_dir(ROOT / "models"):
        bundle = tmp_path / "mine.zip"
        bundle.write_bytes(bundle_bytes("mnist-default"))
    alice, bob = visitor(), visitor()
    go(alice, hosted_server, "models")
    alice.get_by_text("Your private workspace").wait_for()
    alice.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(bundle))
    wait_idle(alice)
    alice.get_by_text("Imported mine.zip as 'mine'").wait_for(timeout=60_000)
    assert "mine" in model_names(alice)

    go(bob, hosted_server, "models")
    assert model_names(bob) == ["mnist-default"]
    bob.goto(alice.url)  # Alice's link, with her tab's id
    wait_idle(bob)
    assert model_names(bob) == ["mnist-default"]
    # The shipped model: read-only for everyone.
    open_tab(bob, "Manage")
    bob.get_by_text("ships with CNN Studio, so it is read-only").wait_for()
    assert bob.get_by_role("button", name="Delete", exact=True).count() == 0
    assert bob.get_by_role("button", name="Rename", exact=True).count() == 0


def test_four_visitors_queue_fairly_and_all_finish(visitor, hosted_server):
    visitors = [visitor() for _ in range(4)]
    for page in visitors:  # everyone gets ready first…
        go(page, hosted_server, "configure")
        page.get_by_text("Shapes, parameters, cost").wait_for(timeout=60_000)
        set_number(page, "epochs", 6)
        go(page, hosted_server, "train")
        set_number(page, "Use at most this many training images (0 = all)", 2000)
    for page in visitors:  # …then all press Start within a few seconds
        page.get_by_role("button", name="Start training").click()
    for page in visitors:
        wait_idle(page)
    seen_queue, deadline = set(), time.monotonic() + 600
    while time.monotonic() < deadline:
        states = []
        for page in visitors:
            text = page.locator('[data-testid="stMain"]').inner_text()
            if "saved as" in text:
                states.append("done")
            elif match := re.search(r"number (\d) in the queue", text):
                states.append("queued")
                seen_queue.add(int(match.group(1)))
            else:
                states.append("running")
        assert states.count("running") <= 1, states  # the cap: one training at a time
        if states.count("done") == 4:
            break
        visitors[0].wait_for_timeout(1000)
    else:
        raise AssertionError(f"not all trainings finished: {states}")
    assert {1, 2} <= seen_queue  # waiting visitors were told their place
    for page in visitors:  # each finished model is its owner's alone
        expect(page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"] input')).to_have_value(
            re.compile(r"default-mnist-sample"))

"""In real Chromium with a fake camera (a video of a digit written on paper, played as the webcam): Predict's
Camera input takes a picture and the model reads the digit, through the same preprocessing as uploads."""
import io
import re

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import expect

from tests.chromium import CHROMIUM, CHROMIUM_ARGS, check_page, choose, go, metric_value, new_page, wait_idle


@pytest.fixture(scope="module")
def digit_video(tmp_path_factory):
    """(a .y4m video of a camera-like photo of a written test digit, the digit's label)."""
    from cnn.data.load import load_dataset
    from tests.engine.test_camera import camera_frame
    from tests.fake_camera import write_y4m

    data = load_dataset("mnist-sample", limit=(10, 30))
    digit, label = data.x_test[7][..., 0], int(data.y_test[7])
    frame = np.asarray(Image.open(io.BytesIO(camera_frame(digit, seed=3, quality=90))).convert("RGB"))
    return write_y4m(tmp_path_factory.mktemp("camera") / "digit.y4m", [frame] * 5), label


@pytest.fixture
def camera_page(chromium, digit_video):
    """A watched tab (see tests/chromium.py) in a second Chromium (from the session's Playwright: one per
    process) whose camera plays the video, camera allowed."""
    video, _ = digit_video
    browser = chromium.browser_type.launch(executable_path=CHROMIUM, headless=True, args=[
        *CHROMIUM_ARGS, "--use-fake-device-for-media-stream", f"--use-file-for-fake-video-capture={video}"])
    tab = new_page(browser, 1400, 1200, permissions=["camera"])
    yield tab
    tab.wait_for_timeout(300)
    try:
        check_page(tab)
    finally:
        browser.close()


def test_a_photo_from_the_camera_is_predicted(camera_page, digit_video, app_server):
    page = camera_page
    _, label = digit_video
    go(page, app_server, "predict")
    choose(page, "Camera")
    page.get_by_text("asks for permission to use the camera").wait_for()
    camera = page.locator('[data-testid="stCameraInput"]')
    # The fake camera is playing: its frames have the video's size and one has been painted (a photo taken
    # before the first frame is drawn is black, and is rightly read as blank).
    playing = ("(v => v && v.videoWidth === 640 && v.readyState >= 3 && v.currentTime > 0.2)"
               "(document.querySelector('[data-testid=stCameraInput] video'))")
    try:
        page.wait_for_function(playing, timeout=30_000)
    except PlaywrightTimeout:
        # Seen once with the server still warming up on a loaded machine: the fake device never started.
        # A person would switch the camera off and on again; so does the test (once).
        choose(page, "Upload")
        choose(page, "Camera")
        page.wait_for_function(playing, timeout=45_000)
    camera.get_by_role("button", name="Take Photo").click()
    wait_idle(page)
    expect(metric_value(page, "Prediction")).to_have_text(str(label), timeout=30_000)
    # The inspector walks the same steps as for an upload, from the 640×480 photo.
    page.get_by_text("Preprocessing inspector").click()
    page.get_by_text(re.compile("640×480")).first.wait_for()

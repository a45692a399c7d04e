"""In real Chromium with a fake camera (a video of a red ball rolling over a table, played as the webcam): Your
classes made of photos, as a person makes them — choose Photos, take pictures of one class with the camera, upload
a few files for the other, train with one press, then upload a new photo on Predict and see its class."""
import re

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.chromium import (CHROMIUM, CHROMIUM_ARGS, add_class, check_page, choose, expect_metric, go, need_chromium,
                            new_page, start_server, wait_idle)

TAKES = 5  # camera photos of the ball: the page's minimum a class


def scene(thing: str, seed: int, size=(480, 640)) -> np.ndarray:
    """A camera-like photo: a wooden-ish table with noise and uneven light, and a red ball or a blue box on it
    (placed and sized at random)."""
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[:h, :w]
    light = 0.8 + 0.2 * np.cos(xx / w * 2.5 + rng.uniform(0, 3))[..., None]
    image = np.array([150, 120, 90]) * light + rng.normal(0, 10, (h, w, 3))
    cy, cx, r = rng.uniform(0.35, 0.65) * h, rng.uniform(0.35, 0.65) * w, rng.uniform(0.18, 0.3) * h
    if thing == "ball":
        inside = (yy - cy) ** 2 + (xx - cx) ** 2 < r ** 2
        image[inside] = np.array([200, 30, 35]) + rng.normal(0, 8, (inside.sum(), 3))
    else:
        inside = (abs(yy - cy) < r * 0.9) & (abs(xx - cx) < r * 0.9)
        image[inside] = np.array([40, 60, 190]) + rng.normal(0, 8, (inside.sum(), 3))
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def ball_video(tmp_path_factory):
    from tests.fake_camera import write_y4m

    frames = [scene("ball", seed) for seed in range(20)]  # 2 s at 10 fps: every photo taken is another frame
    return write_y4m(tmp_path_factory.mktemp("camera") / "ball.y4m", frames)


@pytest.fixture(scope="module")
def photo_server(tmp_path_factory):
    need_chromium()
    server = start_server(tmp_path_factory.mktemp("photos"), CNN_HOSTED="1")
    yield server
    server.stop()


@pytest.fixture
def camera_page(chromium, ball_video):
    """A watched tab in a second Chromium (from the session's Playwright: one per process) whose camera plays
    the video, camera allowed."""
    browser = chromium.browser_type.launch(executable_path=CHROMIUM, headless=True, args=[
        *CHROMIUM_ARGS, "--use-fake-device-for-media-stream", f"--use-file-for-fake-video-capture={ball_video}"])
    tab = new_page(browser, 1400, 1800, permissions=["camera"])
    yield tab
    tab.wait_for_timeout(300)
    try:
        check_page(tab)
    finally:
        browser.close()


def take_photo(page, after: float = 0.2) -> None:
    """Wait until the fake camera has played `after` seconds (a photo taken before its first frame is black;
    each new camera widget plays the video from its start), then take one."""
    playing = (f"(v => v && v.videoWidth === 640 && v.readyState >= 3 && v.currentTime > {after})"
               "(document.querySelector('[data-testid=stCameraInput] video'))")
    try:
        page.wait_for_function(playing, timeout=30_000)
    except PlaywrightTimeout:  # the fake device did not start (seen on a loaded machine): off and on again
        choose(page, "Upload")
        choose(page, "Camera")
        page.wait_for_function(playing, timeout=45_000)
    page.locator('[data-testid="stCameraInput"]').get_by_role("button", name="Take Photo").click()
    wait_idle(page)


def test_photos_from_the_camera_and_files_train_a_model_that_reads_a_new_photo(camera_page, photo_server,
                                                                                tmp_path):
    page = camera_page
    go(page, photo_server, "classes")
    choose(page, "Photos")
    page.get_by_text(re.compile("32×32 colour")).first.wait_for()
    add_class(page, "red ball")
    add_class(page, "blue box")

    # The ball, photographed with the camera: each photo is shown as the model will see it, then added.
    page.get_by_role("radio", name=re.compile(r"^red ball \(")).click()
    wait_idle(page)
    choose(page, "Camera")
    count, takes = 0, 0
    while count < TAKES:  # a photo of a frame taken before is kept once (the page says so): take another
        takes += 1
        assert takes <= 3 * TAKES, f"{takes} photos taken and only {count} kept"
        take_photo(page, after=0.2 + 0.25 * (takes % 7))  # another moment of the video: another frame
        page.get_by_text("What the model will see").wait_for()
        page.get_by_role("button", name="Add this photo to red ball").click()
        wait_idle(page)
        label = page.get_by_role("radio", name=re.compile(r"^red ball \(")).inner_text()
        count = int(re.search(r"\((\d+)\)", label).group(1))

    # The box, from files on disk.
    files = []
    for seed in range(6):
        path = tmp_path / f"box-{seed}.jpg"
        Image.fromarray(scene("box", 100 + seed)).save(path, quality=85)
        files.append(str(path))
    page.get_by_role("radio", name=re.compile(r"^blue box \(")).click()
    wait_idle(page)
    choose(page, "Upload")
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(files)
    wait_idle(page)
    page.get_by_role("button", name="Add 6 pictures to blue box").click()
    wait_idle(page)
    page.get_by_role("radio", name="blue box (6)").wait_for()
    page.get_by_text(re.compile(r"\d+ examples to learn from and 2 held out")).wait_for()

    page.get_by_role("button", name="Train a model on these classes").click()
    # .first: for a moment the run that replaces the message still shows the old copy beside it
    page.get_by_text(re.compile(r"saved as")).first.wait_for(timeout=180_000)
    wait_idle(page)

    # Predict, with a photo of a ball it has never seen.
    page.get_by_role("link", name=re.compile("Try my-classes")).click()
    wait_idle(page)
    choose(page, "Upload")
    new = tmp_path / "new-ball.jpg"
    Image.fromarray(scene("ball", 999)).save(new, quality=85)
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(str(new))
    expect_metric(page, "Prediction", "red ball", timeout=60_000)

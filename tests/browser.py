"""Browser-test harness: a real `streamlit run` on a free loopback port and Debian's Chromium via Playwright.

Fixtures (registered in conftest.py): `app_server` (session: the server, with its own registry holding a
copy of the committed default model) and `page` (a fresh browser tab). Helpers below wait for Streamlit.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def need_chromium() -> None:
    """Skip browser tests where Chromium is missing — except in CI, where that is a failure."""
    if not Path(CHROMIUM).exists():
        message = f"{CHROMIUM} not found (Debian: apt-get install chromium)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class AppServer:
    url: str
    process: subprocess.Popen
    models_dir: Path
    log: Path

    def stop(self) -> None:
        """Stop the server by its own process id."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def start_server(workdir: Path, with_default_model: bool = True) -> AppServer:
    models = workdir / "models"
    models.mkdir(parents=True, exist_ok=True)
    default = ROOT / "models" / "mnist-default"
    if with_default_model and default.is_dir() and not (models / "mnist-default").exists():
        shutil.copytree(default, models / "mnist-default")
    port = free_port()
    env = {**os.environ, "CNN_MODELS_DIR": str(models), "CNN_CACHE_DIR": str(workdir / "cache"),
           "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
    log = workdir / "streamlit.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true", "--server.fileWatcherType", "none"],
        cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    server = AppServer(f"http://127.0.0.1:{port}", process, models, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"streamlit exited early:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(server.url + "/_stcore/health", timeout=2) as response:
                if response.read().strip() == b"ok":
                    return server
        except OSError:
            time.sleep(0.3)
    server.stop()
    raise RuntimeError(f"streamlit did not become healthy:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="session")
def app_server(tmp_path_factory):
    need_chromium()
    server = start_server(tmp_path_factory.mktemp("app"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def chromium():
    need_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium, app_server):
    context = chromium.new_context(viewport={"width": 1400, "height": 1000})
    tab = context.new_page()
    tab.set_default_timeout(60_000)
    yield tab
    context.close()


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

def wait_idle(page, timeout: float = 60_000) -> None:
    """Wait until Streamlit has finished running the script (its running icon is gone)."""
    page.wait_for_selector('[data-testid="stApp"]', timeout=timeout)
    page.wait_for_timeout(300)  # a run starts a moment after the event that causes it
    page.wait_for_selector('[data-testid="stStatusWidgetRunningIcon"]', state="detached", timeout=timeout)


def go(page, server: AppServer, path: str = "") -> None:
    page.goto(f"{server.url}/{path}")
    wait_idle(page)


def nav(page, title: str) -> None:
    """Click a page in the sidebar navigation (by its title, e.g. 'Train')."""
    page.locator('[data-testid="stSidebarNavLink"]').filter(has_text=title).first.click()
    wait_idle(page)


def set_number(page, label: str, value) -> None:
    box = page.get_by_role("spinbutton", name=label)
    box.fill(str(value))
    box.press("Enter")
    wait_idle(page)


def draw(page, strokes, canvas_selector: str = "canvas") -> None:
    """Draw polylines (lists of (x, y) in 0…1 of the canvas) with the mouse on the drawing canvas."""
    canvas = page.locator(canvas_selector).last
    canvas.wait_for()
    box = canvas.bounding_box()
    for stroke in strokes:
        (x0, y0), rest = stroke[0], stroke[1:]
        page.mouse.move(box["x"] + x0 * box["width"], box["y"] + y0 * box["height"])
        page.mouse.down()
        for x, y in rest:
            page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"], steps=12)
        page.mouse.up()
    wait_idle(page)

"""Browser-test harness: a real `streamlit run` on a free loopback port and Debian's Chromium via Playwright.

Fixtures (registered in conftest.py): `app_server` (session: the server, with its own registry holding a
copy of the committed default model) and `page` (a fresh browser tab). Helpers below wait for Streamlit.

Every `page` is watched: an exception element (`stException`) or an error box (`stAlertContentError`) that
appears at any moment — even one a later rerun replaces — fails the test at the next `wait_idle` and at the
end. A test that expects an error box says so with `expect_error(page, pattern)`.
"""
from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
import urllib.request
import weakref
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import expect

from tests.machine import free_port

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


def start_server(workdir: Path, with_default_model: bool = True, **settings) -> AppServer:
    """`streamlit run` with its own registry, cache and workspaces under `workdir`; the project's shipped models
    (models/shipped.json) ship with it unless `with_default_model` is False; `settings` are more environment
    variables (e.g. CNN_HOSTED="1")."""
    models = workdir / "models"
    models.mkdir(parents=True, exist_ok=True)
    shipped = ROOT / "models" if with_default_model else workdir / "no-shipped-models"
    port = free_port()
    env = {**os.environ, "CNN_MODELS_DIR": str(models), "CNN_CACHE_DIR": str(workdir / "cache"),
           "CNN_SHIPPED_DIR": str(shipped), "CNN_WORKSPACES_DIR": str(workdir / "workspaces"),
           "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false", **settings}
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


# Injected into every document: report each exception element and error box once, as soon as it appears.
WATCH_SCRIPT = """
(() => {
  const seen = new WeakSet();
  const scan = () => {
    for (const [kind, selector] of [["exception", '[data-testid="stException"]'],
                                    ["error box", '[data-testid="stAlertContentError"]']]) {
      for (const el of document.querySelectorAll(selector)) {
        if (seen.has(el)) continue;
        seen.add(el);
        window.__cnnFault(kind, (el.innerText || "").trim().slice(0, 600), location.pathname);
      }
    }
  };
  new MutationObserver(scan).observe(document, {childList: true, subtree: true, characterData: true});
  // Scroll at once, not smoothly: a click must land where the element is, not where it is gliding to.
  const style = document.createElement("style");
  style.textContent = "* { scroll-behavior: auto !important; }";
  document.addEventListener("DOMContentLoaded", () => document.head.appendChild(style));
})();
"""


class Watch:
    """The faults one page has shown, and the error boxes the test said to expect."""

    def __init__(self):
        self.faults: list[str] = []
        self.expected: list[re.Pattern] = []
        self.matched: list[str] = []

    def report(self, kind: str, text: str, path: str) -> None:
        if kind == "error box" and any(p.search(text) for p in self.expected):
            self.matched.append(text)
        else:
            self.faults.append(f"{kind} on /{path.lstrip('/')}: {text}")

    def check(self) -> None:
        if self.faults:
            faults, self.faults = self.faults, []
            raise AssertionError("the page showed " + "; ".join(faults))


WATCHES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def new_page(chromium, width: int = 1400, height: int = 1000, permissions=(), **options):
    """A tab in its own browser context (granted `permissions`, e.g. ["camera"]; `options` such as has_touch
    for a phone), watched for exceptions and error boxes."""
    context = chromium.new_context(viewport={"width": width, "height": height}, permissions=list(permissions),
                                   **options)
    watch = Watch()
    context.expose_function("__cnnFault", watch.report)
    context.add_init_script(WATCH_SCRIPT)
    tab = context.new_page()
    tab.set_default_timeout(60_000)
    WATCHES[tab] = watch
    return tab


def check_page(page) -> None:
    """Fail now if the page has shown an exception or an unexpected error box."""
    WATCHES[page].check()


@contextlib.contextmanager
def expect_error(page, pattern: str):
    """Inside the block, an error box matching `pattern` is what the test wants (and must appear)."""
    watch = WATCHES[page]
    compiled = re.compile(pattern)
    watch.expected.append(compiled)
    before = len(watch.matched)
    try:
        yield
        deadline = time.monotonic() + 10
        while not any(compiled.search(t) for t in watch.matched[before:]) and time.monotonic() < deadline:
            page.wait_for_timeout(200)
        assert any(compiled.search(t) for t in watch.matched[before:]), f"no error box matching {pattern!r}"
    finally:
        watch.expected.remove(compiled)


@pytest.fixture
def page(chromium, app_server, request):
    tab = new_page(chromium)
    yield tab
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:  # keep what the page looked like, for whoever reads the failure
        shot = Path(os.environ.get("CNN_TEST_SHOTS", "/tmp")) / f"{request.node.name}.png"
        try:
            tab.screenshot(path=str(shot), full_page=True)
            print(f"screenshot of the failed page: {shot}")
        except Exception:  # noqa: BLE001 — the failure itself matters more than its picture
            pass
    try:
        tab.wait_for_timeout(300)  # let the last reports arrive
        check_page(tab)
    finally:
        tab.context.close()


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

def wait_idle(page, timeout: float = 60_000) -> None:
    """Wait until Streamlit has finished running the script (its running icon is gone); fail if the page
    showed an exception or an error box meanwhile."""
    page.wait_for_selector('[data-testid="stApp"]', timeout=timeout)
    page.wait_for_timeout(300)  # a run starts a moment after the event that causes it
    page.wait_for_selector('[data-testid="stStatusWidgetRunningIcon"]', state="detached", timeout=timeout)
    if page in WATCHES:
        check_page(page)


def go(page, server: AppServer, path: str = "") -> None:
    """Open a page by its address and wait until it has run. Until the entry script has run, Streamlit shows a
    default list of the files in pages/ and no running icon yet: wait for the app's own navigation first."""
    page.goto(f"{server.url}/{path}")
    page.locator('[data-testid="stSidebarNavLink"]').filter(
        has_text="What it learned").first.wait_for(timeout=120_000)
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


def draw(page, strokes, canvas_selector: str = "canvas", steps: int = 12) -> None:
    """Draw polylines (lists of (x, y) in 0…1 of the canvas) with the mouse on the drawing canvas, `steps` mouse
    moves from one point to the next (dense points, such as tests.shapes's, need few)."""
    canvas = page.locator(canvas_selector).last
    canvas.wait_for()
    box = canvas.bounding_box()
    # A person's pointer is over the canvas a moment before the first stroke. streamlit-drawable-canvas's
    # toolbar waits there invisibly (opacity 0, top −1rem: it covers the top ~2 rem of the canvas's right side)
    # and slides above the canvas 0.1–0.2 s after the pointer enters; a stroke begun sooner in that corner is lost.
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_timeout(300)
    for stroke in strokes:
        (x0, y0), rest = stroke[0], stroke[1:]
        page.mouse.move(box["x"] + x0 * box["width"], box["y"] + y0 * box["height"])
        page.mouse.down()
        for x, y in rest:
            page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"], steps=steps)
        page.mouse.up()
    wait_idle(page)


def combobox(page, label: str, within=None):
    """The selectbox labelled `label` (its input: `.input_value()` is the shown choice)."""
    return (within or page).get_by_role("combobox", name=label, exact=True).first


def open_options(page, label: str, within=None) -> None:
    """Open the option list of the selectbox labelled `label` (with its arrow button, as a person does)."""
    options = page.get_by_role("option").first
    for attempt in range(3):  # a rerun that lands just after the click redraws the box and closes its list
        combobox(page, label, within).click()
        try:
            options.wait_for(timeout=3000)
            return
        except PlaywrightTimeout:
            wait_idle(page)
    options.wait_for()


def pick_nth(page, label: str, n: int, within=None) -> str:
    """Pick the n-th option (0-based) of the selectbox labelled `label`; returns the option's text."""
    open_options(page, label, within)
    option = page.get_by_role("option").nth(n)
    text = option.inner_text().strip()
    option.click()
    wait_idle(page)
    return text


def select(page, label: str, option: str, within=None) -> None:
    """Pick `option` in the selectbox labelled `label` (the first one on the page, or in `within`)."""
    open_options(page, label, within)
    page.get_by_role("option", name=option, exact=True).click()
    wait_idle(page)


def choose(page, option: str, within=None) -> None:
    """Click an option of a segmented control (a visible 'radio' button) or of an st.radio (its label)."""
    scope = within or page
    segment = scope.locator('[data-testid="stButtonGroup"]').get_by_role("radio", name=option, exact=True)
    labels = scope.locator("label") if within is not None else page.locator('[data-testid="stRadio"] label')
    segment.or_(labels.filter(has_text=re.compile(f"^{re.escape(option)}$"))).first.click()
    wait_idle(page)


def radio_group(page, label: str):
    """The st.radio labelled `label` (to choose within when several share option names)."""
    return page.locator('[data-testid="stRadio"]').filter(
        has=page.locator('[data-testid="stWidgetLabel"]', has_text=label))


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name, exact=True).first.click()
    wait_idle(page)


def click(page, name: str) -> None:
    page.get_by_role("button", name=name, exact=True).first.click()
    wait_idle(page)


def nudge_slider(page, label: str, presses: int = 1, key: str = "ArrowRight") -> None:
    """Move the slider labelled `label` by `presses` steps with the keyboard."""
    thumb = page.locator('[data-testid="stSlider"]').filter(
        has=page.locator('[data-testid="stWidgetLabel"]', has_text=label)).first.get_by_role("slider")
    thumb.focus()
    for _ in range(presses):
        thumb.press(key)
    wait_idle(page)


def metric_value(page, label: str):
    """The value element of the st.metric labelled `label` (for expect(...).to_have_text)."""
    box = page.locator('[data-testid="stMetric"]').filter(
        has=page.locator('[data-testid="stMetricLabel"]', has_text=label)).first
    return box.locator('[data-testid="stMetricValue"]')


def metric(page, label: str) -> str:
    """The value of the st.metric labelled `label`, once the page has stopped running."""
    value = metric_value(page, label)
    value.wait_for()
    wait_idle(page)
    return value.inner_text().strip()


def expect_metric(page, label: str, text: str, timeout: float = 30_000) -> None:
    """Wait until the st.metric labelled `label` shows `text` (a rerun may still be on its way)."""
    expect(metric_value(page, label)).to_have_text(text, timeout=timeout)


# Words split across two lines in any widget label, and metric values cut short with an ellipsis.
LAYOUT_PROBLEMS = """
() => {
  const problems = [];
  for (const label of document.querySelectorAll('[data-testid="stWidgetLabel"]')) {
    const box = label.getBoundingClientRect();  // skip what is not on screen (e.g. a collapsed sidebar)
    if (box.width < 20 || box.right <= 0 || box.left >= window.innerWidth) continue;
    const walker = document.createTreeWalker(label, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      const re = /\\S+/g;
      let m;
      while ((m = re.exec(node.textContent))) {
        const range = document.createRange();
        range.setStart(node, m.index);
        range.setEnd(node, m.index + m[0].length);
        const lines = new Set([...range.getClientRects()].map(r => Math.round(r.top)));
        if (lines.size > 1) problems.push(`label word broken across lines: ${m[0]}`);
      }
    }
  }
  for (const value of document.querySelectorAll('[data-testid="stMetricValue"]')) {
    const inner = value.querySelector('div') || value;
    if (inner.scrollWidth > inner.clientWidth + 1) problems.push(`metric value cut: ${value.innerText}`);
  }
  return problems;
}
"""


def layout_problems(page) -> list[str]:
    return page.evaluate(LAYOUT_PROBLEMS)


def add_class(page, name: str) -> None:
    """Your classes: name a new class (it then appears among the classes to add examples to)."""
    page.get_by_role("textbox", name="New class").fill(name)
    page.get_by_role("button", name="Add class").click()
    wait_idle(page)
    page.get_by_role("radio", name=f"{name} (0)").wait_for()


def draw_examples(page, name: str, drawings) -> None:
    """Your classes: pick class `name`, then draw each drawing (strokes) with the mouse and press Add, as a
    person does; each Add clears the canvas for the next one."""
    page.get_by_role("radio", name=re.compile(rf"^{re.escape(name)} \(\d+\)$")).click()
    wait_idle(page)
    before = int(re.search(r"\((\d+)\)", page.get_by_role("radio", name=re.compile(rf"^{re.escape(name)} \(")).inner_text()).group(1))
    for n, strokes in enumerate(drawings, start=before + 1):
        draw(page, strokes, "canvas.upper-canvas", steps=2)
        page.get_by_text("What the model will see").wait_for()
        page.get_by_role("button", name=f"Add to {name}").click()
        wait_idle(page)
        page.get_by_role("radio", name=f"{name} ({n})").wait_for()

"""What the browser benchmarks share: a `streamlit run` of a checkout on a free loopback port with a
throw-away registry, Debian's Chromium flags, waiting for Streamlit to go idle, and the host's CPU steal."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the project: tests.machine
from tests.machine import free_port  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def steal() -> float:
    """Seconds of CPU the host has stolen from this VM so far (from /proc/stat)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


class Server:
    """`streamlit run` of a checkout on a free loopback port, with a throw-away registry."""

    def __init__(self, root: Path, **settings):
        self.root, self.work = root, Path(tempfile.mkdtemp(prefix="ui-bench-"))
        shutil.copytree(root / "models" / "mnist-default", self.work / "models" / "mnist-default")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "CNN_MODELS_DIR": str(self.work / "models"), "CNN_CACHE_DIR": str(self.work / "cache"),
               "CNN_WORKSPACES_DIR": str(self.work / "workspaces"),
               "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false", **settings}
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(self.port),
             "--server.address", "127.0.0.1", "--server.headless", "true", "--server.fileWatcherType", "none"],
            cwd=root, env=env, stdout=(self.work / "log").open("w"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        while time.monotonic() - self.started < 90:
            try:
                if urllib.request.urlopen(self.url + "/_stcore/health", timeout=2).read().strip() == b"ok":
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"the server in {root} did not start: {(self.work / 'log').read_text()[-2000:]}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
        shutil.rmtree(self.work, ignore_errors=True)

    def rss(self) -> int:
        """Resident memory of the server and every process it started (e.g. a training worker), in bytes."""
        return sum(_rss(pid) for pid in _tree(self.process.pid))


def _tree(pid: int) -> list[int]:
    """pid and its descendants (from /proc/<pid>/task/*/children)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for children in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                todo += [int(c) for c in children.read_text().split()]
            except (OSError, ValueError):
                pass
    return found


def _rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def idle(page, timeout: float = 120_000) -> None:
    page.wait_for_timeout(250)
    page.wait_for_selector('[data-testid="stStatusWidgetRunningIcon"]', state="detached", timeout=timeout)

"""Many visitors on one hosted server (not a timed test): memory, makespan and waiting.

    python bench/visitors.py [--visitors 1 4 8 30] [--training process|thread] [--json]

For each N, a fresh `streamlit run` in hosted mode (CNN_HOSTED=1, the default cap on concurrent trainings)
and N visitors in real Chromium, each in a browser context of their own: each opens Train, trains the
default preset on the embedded MNIST sample (all of it), then draws a digit on Predict, then leaves. Reported:
the server's peak RSS (polled every 0.2 s), the makespan, each visitor's wait in the queue, and the idle RSS
after everyone left, against the same server's RSS after its first prediction (the "fresh server" figure).
RSS is the server's and its children's (a training worker's) together. `--training thread` trains inside the
server process instead of the hosted default, a worker process (CNN_TRAINING_PROCESS), for comparison.
The queue's promise is checked too: each waiting visitor's page says "number P in the queue, starting in
about M:SS"; the estimate the visitor saw first is compared with when their training really started (the
first "epoch … · batch" line on their page), as a share of the real wait (waits under WAIT_FLOOR s are not
compared: nobody waited). Goals (issue 24, a class of 30): the last model saved ≤ 3 min after all pressed
Train; every first estimate within 30% of the real wait; peak RSS ≤ 2.2 GB; idle ≤ 1.2× fresh.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import ARGS, CHROMIUM, ROOT, Server, idle  # noqa: E402

SEVEN = [[(0.27, 0.2), (0.75, 0.2), (0.45, 0.85)]]
GB = 1e9
WAIT_FLOOR = 5.0  # seconds: a shorter wait is not compared with its estimate
ESTIMATE = re.compile(r"number (\d+) in the queue, starting in about (\d+):(\d\d)")


class Peak:
    """Polls the server's RSS in a thread; .peak is the largest seen."""

    def __init__(self, server: Server):
        self.server, self.peak, self._stop = server, 0, threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.server.rss())
            time.sleep(0.2)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def draw(page, strokes) -> None:
    box = page.locator("canvas").last.bounding_box()
    for stroke in strokes:
        page.mouse.move(box["x"] + stroke[0][0] * box["width"], box["y"] + stroke[0][1] * box["height"])
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"], steps=6)
        page.mouse.up()


def predict_once(page, server) -> None:
    page.goto(server.url + "/predict")
    page.wait_for_selector("canvas", timeout=180_000)
    idle(page)
    draw(page, SEVEN)
    page.locator('[data-testid="stMetric"]').filter(has_text="Prediction").wait_for(timeout=120_000)


def run(chromium, n: int, training: str) -> dict:
    # The warm training worker retires after 15 s idle here (300 s by default), so "idle" below is measured after it.
    server = Server(ROOT, CNN_HOSTED="1", CNN_TRAINING_PROCESS="1" if training == "process" else "0",
                    CNN_WORKER_IDLE_SECONDS="15")
    try:
        # The "fresh server" figure: its RSS once a first visitor has had a first prediction.
        first = chromium.new_context(viewport={"width": 1300, "height": 1200})
        predict_once(first.new_page(), server)
        time.sleep(3)
        fresh = server.rss()
        first.close()
        peak = Peak(server)
        visitors = [chromium.new_context(viewport={"width": 1300, "height": 1200}).new_page() for _ in range(n)]
        for page in visitors:
            page.goto(server.url + "/train")
            page.get_by_role("button", name="Start training").wait_for(timeout=180_000)
            idle(page)
        start = time.monotonic()
        for page in visitors:  # everyone presses Start at (nearly) the same moment
            page.get_by_role("button", name="Start training").click()
        began, done = [None] * n, [None] * n
        promised = [None] * n  # (when the visitor first saw an estimate, its seconds, their place)
        while None in done and time.monotonic() - start < 3600:
            for i, page in enumerate(visitors):
                if done[i] is not None:
                    continue
                text = page.locator('[data-testid="stMain"]').inner_text()
                found = ESTIMATE.search(text)
                if found and promised[i] is None and began[i] is None:
                    promised[i] = (time.monotonic() - start, int(found[2]) * 60 + int(found[3]), int(found[1]))
                if began[i] is None and re.search(r"epoch \d+/\d+ · batch", text):
                    began[i] = time.monotonic() - start
                if "saved as" in text:
                    done[i] = time.monotonic() - start
                    began[i] = began[i] if began[i] is not None else done[i]
            time.sleep(0.5)
        makespan = time.monotonic() - start
        errors = []  # (place, seen at, estimated wait, real wait, error as a share of the real wait)
        for promise, b in zip(promised, began):
            if promise is not None and b is not None and b - promise[0] >= WAIT_FLOOR:
                seen, estimate, place = promise
                errors.append((place, round(seen, 1), estimate, round(b - seen, 1),
                               round(abs(estimate - (b - seen)) / (b - seen), 3)))
        for page in visitors:
            predict_once(page, server)
            page.context.close()
        time.sleep(20)  # sessions close; finished jobs release their models; the idle warm worker retires
        idle_rss = server.rss()
        return {"visitors": n, "training": training, "peak_rss_gb": peak.stop() / GB, "fresh_rss_gb": fresh / GB, "idle_rss_gb": idle_rss / GB,
                "idle_vs_fresh": idle_rss / fresh, "makespan_s": makespan,
                "waits_s": [round(b, 1) if b is not None else None for b in began],
                "trained_s": [round(d - b, 1) if d is not None and b is not None else None for b, d in zip(began, done)],
                "saved": sum(d is not None for d in done), "estimates": errors,
                "unestimated": sum(p is None and b is not None and b >= WAIT_FLOOR for p, b in zip(promised, began))}
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--visitors", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--training", choices=["process", "thread"], default="process",
                        help="where trainings run: a worker process (the hosted default) or a server thread")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        results = [run(chromium, n, args.training) for n in args.visitors]
        chromium.close()
    if args.json:
        print(json.dumps(results, indent=2))
    print(f"trainings in a {args.training}")
    print(f"{'visitors':>8} {'peak RSS':>9} {'fresh':>7} {'idle':>7} {'idle/fresh':>10} {'makespan':>9}  waits (s)")
    for r in results:
        print(f"{r['visitors']:>8} {r['peak_rss_gb']:>7.2f}GB {r['fresh_rss_gb']:>5.2f}GB {r['idle_rss_gb']:>5.2f}GB "
              f"{r['idle_vs_fresh']:>10.2f} {r['makespan_s']:>8.0f}s  {r['waits_s']}")
    for r in results:
        errors = sorted(e[-1] for e in r["estimates"])
        if errors:
            within = sum(e <= 0.30 for e in errors)
            print(f"{r['visitors']} visitors: {r['saved']} models saved; first estimates of the start vs the real wait "
                  f"(waits ≥ {WAIT_FLOOR:.0f} s): median error {errors[len(errors) // 2]:.0%}, largest {errors[-1]:.0%}, "
                  f"{within}/{len(errors)} within 30%; {r['unestimated']} visitor(s) waited without an estimate")
            worst = max(r["estimates"], key=lambda e: e[-1])
            print(f"   worst: place {worst[0]}, shown at {worst[1]} s: about {worst[2]} s, really {worst[3]} s")
    print("goals: makespan ≤ 180 s for 30 visitors; every first estimate within 30% of the real wait; "
          "peak RSS ≤ 2.2 GB; idle ≤ 1.20× fresh")


if __name__ == "__main__":
    main()

"""Peak memory of each hostile-file probe: every bomb of tests/hostile.py fed to the engine in a fresh
process, with the probe's peak RSS (VmHWM, reset just before the probe) against the RSS it started from.

    python bench/hostile_probes.py

What each probe must show: a clear refusal (or the bad file skipped) and a peak far below what the bomb
would unpack to. Memory does not depend on how busy the machine is; the times printed do.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROBES = {
    "bundle whose model.keras holds a 3 GB config.json": "nested_bundle",
    "bare .keras whose config.json is 3 GB": "nested_keras",
    "model folder on disk whose model.keras is a 3 GB bomb": "folder_bomb",
    "dataset upload: 269 all-zero 1 MB entries (store_upload)": "zeros_upload",
    "dataset path: the same zip given to load_dataset (CLI)": "zeros_path",
    "dataset upload with one 13,300² PNG among 12 small ones": "huge_png",
    "the same dataset without the huge PNG (reference)": "reference_dataset",
}


def status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def probe(kind: str) -> dict:
    """Run one probe in this process: (outcome, RSS before, peak during, seconds)."""
    from cnn.store import registry
    from cnn.store import bundles
    from cnn.data.load import load_dataset
    from cnn.data.uploads import store_upload
    from cnn.core.errors import CnnError
    from tests import hostile

    tmp = Path(tempfile.mkdtemp(prefix="probe-"))
    os.environ["CNN_MODELS_DIR"], os.environ["CNN_CACHE_DIR"] = str(tmp / "models"), str(tmp / "cache")
    if kind in ("huge_png", "reference_dataset"):
        from cnn.core.quiet import import_tensorflow

        import_tensorflow()  # loading a dataset uses TensorFlow: count only what the probe adds
    payload = {
        "nested_bundle": lambda: hostile.nested_bomb_bundle(),
        "nested_keras": lambda: hostile.nested_bomb_keras(),
        "folder_bomb": lambda: hostile.nested_bomb_keras(),
        "zeros_upload": lambda: hostile.zero_entries_zip(269, 1_000_000),
        "zeros_path": lambda: hostile.zero_entries_zip(269, 1_000_000),
        "huge_png": lambda: hostile.class_zip(extra={"a/huge.png": hostile.huge_png(13_300)}),
        "reference_dataset": lambda: hostile.class_zip(),
    }[kind]()
    if kind == "folder_bomb":
        import keras  # noqa: F401 — load_model imports it first; keep it out of the probe's peak

        folder = tmp / "models" / "bomb"
        folder.mkdir(parents=True)
        from cnn.model.spec import preset

        for name, text in (("spec.json", preset("default").to_json()), ("metrics.json", "{}"), ("history.json", "{}")):
            (folder / name).write_text(text)
        (folder / "model.keras").write_bytes(payload)
    if kind == "zeros_path":
        (tmp / "zeros.zip").write_bytes(payload)
    before = status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS now
    start = time.monotonic()
    try:
        if kind in ("nested_bundle", "nested_keras"):
            bundles.import_model(payload, "bomb.zip" if kind == "nested_bundle" else "bomb.keras")
        elif kind == "folder_bomb":
            registry.load_model("bomb")
        elif kind == "zeros_upload":
            store_upload(payload, "zeros.zip")
        elif kind == "zeros_path":
            load_dataset(str(tmp / "zeros.zip"))
        else:
            path, _ = store_upload(payload, "images.zip")
            data = load_dataset(str(path))
            outcome = f"loaded {data.num_train + data.num_test} images; " + (data.notes[0] if data.notes else "no notes")
        outcome = locals().get("outcome", "accepted (!)")
    except CnnError as exc:
        outcome = f"refused: {exc}"
    seconds = time.monotonic() - start
    left = [p for p in tmp.rglob("*") if p.is_file() and "models/bomb" not in str(p) and p.name != "zeros.zip"]
    left = f"{len(left)} files, {sum(p.stat().st_size for p in left) / 1e6:.2f} MB" if left else "none"
    peak = status("VmHWM")
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    return {"outcome": outcome, "before": before, "peak": peak, "seconds": seconds, "payload": len(payload),
            "left": left}


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--one":
        print(json.dumps(probe(sys.argv[2])))
        return
    mib = 2 ** 20
    for label, kind in PROBES.items():
        out = subprocess.run([sys.executable, __file__, "--one", kind], capture_output=True, text=True, cwd=ROOT,
                             env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        if out.returncode:
            print(f"{label}: probe crashed\n{out.stderr[-1500:]}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{label}\n    file {r['payload'] / 1e6:.2f} MB · RSS before {r['before'] / mib:.0f} MiB · peak "
              f"{r['peak'] / mib:.0f} MiB (+{(r['peak'] - r['before']) / mib:.0f} MiB) · {r['seconds']:.2f} s · "
              f"left in cache/registry: {r['left']}\n    {r['outcome'][:300]}")


if __name__ == "__main__":
    main()

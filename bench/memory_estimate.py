"""Calibrate cnn.model.memory's training estimate against reality: train a few specs of different sizes (small
batches, on the embedded mnist-sample) each in a fresh process, and compare the estimate with the peak RSS
the run added to a process that has already imported TensorFlow.

    python bench/memory_estimate.py            # the table (about 4 minutes on 2 cores)
    python bench/memory_estimate.py --quick    # two small runs

Peak RSS is VmHWM from /proc/self/status, reset after TensorFlow's import (write 5 to /proc/self/clear_refs),
so 'measured' = peak during load + train + evaluate + save − RSS before. Memory, unlike time, does not depend on
how busy the machine is; allocator behaviour may still vary by a few percent between runs.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RUNS = [
    # (label, preset name or layers, batch size, training images, test images)
    ("default preset", "default", 64, 2000, 1000),
    ("keras-mnist-convnet", "keras-mnist-convnet", 128, 2000, 1000),
    ("keras-mnist-convnet, 100 test images", "keras-mnist-convnet", 32, 1000, 100),
    ("2×Conv2D(64, same) + Dense(128)", [{"type": "Conv2D", "filters": 64, "padding": "same"},
                                         {"type": "Conv2D", "filters": 64, "padding": "same"},
                                         {"type": "MaxPooling2D"}, {"type": "Flatten"},
                                         {"type": "Dense", "units": 128}], 128, 1500, 1000),
    ("2×Conv2D(64, same), GAP", [{"type": "Conv2D", "filters": 64, "padding": "same"},
                                 {"type": "Conv2D", "filters": 64, "padding": "same"},
                                 {"type": "GlobalAveragePooling2D"}], 512, 2048, 100),
    ("3×Conv2D(128, same), GAP", [{"type": "Conv2D", "filters": 128, "padding": "same"},
                                  {"type": "Conv2D", "filters": 128, "padding": "same"}, {"type": "MaxPooling2D"},
                                  {"type": "Conv2D", "filters": 128, "padding": "same"},
                                  {"type": "GlobalAveragePooling2D"}], 256, 1024, 1000),
    ("Dense(2048)×2 (5.8 M params)", [{"type": "Flatten"}, {"type": "Dense", "units": 2048},
                                      {"type": "Dense", "units": 2048}], 64, 2000, 1000),
    ("Dense(3000)×2 (11.4 M params)", [{"type": "Flatten"}, {"type": "Dense", "units": 3000},
                                       {"type": "Dense", "units": 3000}], 32, 1000, 200),
    ("tiny-vgg at batch 512", "tiny-vgg", 512, 2048, 1000),
]
QUICK = [RUNS[0], RUNS[3]]


def status(key: str) -> int:
    """A /proc/self/status value in bytes (VmRSS, VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def one_run(layers, batch: int, images: int, test_images: int = 1000) -> dict:
    """In this process: train, evaluate and save one spec; estimate and measured bytes."""
    from cnn.core.quiet import import_tensorflow

    import_tensorflow()
    import keras  # noqa: F401

    from cnn.data.load import load_dataset
    from cnn.model.memory import estimate_for
    from cnn.model.spec import ModelSpec, preset
    from cnn.run.workflows import train_and_save

    before = status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    dataset = load_dataset("mnist-sample", limit=(images, test_images))
    spec = preset(layers) if isinstance(layers, str) else ModelSpec.from_dict({"layers": layers})
    spec = spec.with_data(dataset.input_shape, dataset.num_classes)
    spec.train.batch_size, spec.train.epochs = batch, 1
    estimate = estimate_for(spec, dataset)
    with tempfile.TemporaryDirectory() as models:
        os.environ["CNN_MODELS_DIR"] = models
        train_and_save(spec, dataset)
    return {"estimate": estimate.total, "activations": estimate.activations, "parameters": estimate.parameters,
            "data": estimate.data, "evaluation": estimate.evaluation, "measured": status("VmHWM") - before}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two small runs only")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: one run, JSON in and out
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_run(*json.loads(args.one))))
        return
    mib = 2 ** 20
    print(f"{'run':38} {'batch':>5} {'train':>5} {'test':>5} {'estimate':>9} {'measured':>9} {'ratio':>6}   parts of "
          "the estimate (MiB): activations / parameters / evaluation / data")
    for label, layers, batch, images, tests in (QUICK if args.quick else RUNS):
        out = subprocess.run([sys.executable, __file__, "--one", json.dumps([layers, batch, images, tests])],
                             capture_output=True, text=True, cwd=ROOT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        if out.returncode:
            print(f"{label}: failed\n{out.stderr[-2000:]}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{label:38} {batch:5} {images:5} {tests:5} {r['estimate'] / mib:8.0f}M {r['measured'] / mib:8.0f}M "
              f"{r['estimate'] / max(r['measured'], 1):6.2f}   {r['activations'] / mib:.0f} / "
              f"{r['parameters'] / mib:.0f} / {r['evaluation'] / mib:.0f} / {r['data'] / mib:.0f}", flush=True)


if __name__ == "__main__":
    main()

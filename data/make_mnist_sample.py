"""Make data/mnist-sample.npz, the embedded offline dataset, from the full MNIST.

    CNN_DATA_DIR=../shared/datasets python data/make_mnist_sample.py

Keeps the first 1,000 training and 200 test images of each digit (stratified_first, in original order),
so the file is reproducible byte for byte from the same mnist.npz.
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from cnn.data.datasets import EMBEDDED_DIR, SAMPLE, data_dir, stratified_first  # noqa: E402

TRAIN_PER_CLASS, TEST_PER_CLASS = 1000, 200


def main() -> None:
    source = (data_dir() or Path("../shared/datasets")) / "mnist.npz"
    with np.load(source) as full:
        x_train, y_train, x_test, y_test = (full[k] for k in ("x_train", "y_train", "x_test", "y_test"))
    train = stratified_first(y_train, 10 * TRAIN_PER_CLASS)
    test = stratified_first(y_test, 10 * TEST_PER_CLASS)
    out = EMBEDDED_DIR / f"{SAMPLE}.npz"
    np.savez_compressed(out, x_train=x_train[train], y_train=y_train[train], x_test=x_test[test], y_test=y_test[test])
    print(f"wrote {out}: {len(train)} train + {len(test)} test images, {out.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()

"""One worker of the multi-worker test (tests/engine/test_distribute.py), run as its own process:

    python -m tests.distributed_worker OUT.npz --workers localhost:P0,localhost:P1 --worker-index I [--stop-after N] [--folder PATH]

It trains `spec()` on `data()` through train_and_save (as the CLI does) under MultiWorkerMirroredStrategy
and writes its final weights to OUT.npz; the chief also saves the model as 'distributed'. Without --workers
it is the single-process reference, started fresh like the workers (a class folder's own shuffle takes
its seed from TensorFlow's global seed state when it is loaded, which a long-lived test process has changed).
"""
import argparse
import os
import sys
import threading

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def spec():
    """A small CNN without dropout or augmentation, so a step's result does not depend on how the global
    batch is split between workers."""
    from cnn.model.spec import Conv2D, Dense, Flatten, MaxPooling2D, ModelSpec, TrainConfig

    return ModelSpec(layers=[Conv2D(4, 3), MaxPooling2D(2), Flatten(), Dense(16)],
                     train=TrainConfig(epochs=2, batch_size=64, learning_rate=3e-3, validation_split=0.2, seed=3),
                     preset="test-distributed")


def data(folder=None):
    """600 training images → 480 after the validation split: 8 steps per epoch, the last one of 32 images;
    or a class folder, whose training split is streamed from disk."""
    from cnn.data.load import load_dataset

    return load_dataset(folder) if folder else load_dataset("mnist-sample", limit=(600, 200))


def spec_for(dataset):
    return spec().with_data(dataset.input_shape, dataset.num_classes)


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--workers", help="the cluster; without it, one process under the default strategy")
    parser.add_argument("--worker-index", type=int, default=0)
    parser.add_argument("--stop-after", type=int, help="ask this worker (only) to stop after this many batches")
    parser.add_argument("--folder", help="train on this class folder instead of the embedded sample")
    args = parser.parse_args(argv)

    from cnn.core.quiet import import_tensorflow

    import_tensorflow()
    from cnn.run.distribute import make_strategy, parse_workers, set_tf_config
    from cnn.run.workflows import train_and_save

    if args.workers:
        set_tf_config(parse_workers(args.workers), args.worker_index)
    strategy = make_strategy("multi-worker" if args.workers else "one")  # before any other TensorFlow work
    stop, batches = threading.Event(), []

    def on_progress(report):
        if report.phase == "batch":
            batches.append(report.batch)
            if args.stop_after and report.batch >= args.stop_after:
                stop.set()

    dataset = data(args.folder)
    result, evaluation, info = train_and_save(spec_for(dataset), dataset, name="distributed", strategy=strategy,
                                              on_progress=on_progress, stop=stop, progress_interval=0)
    np.savez(args.out, *result.model.get_weights())
    print(f"status={result.status} chief={result.chief} saved={info.name if info else None} "
          f"batches={len(batches)}", flush=True)
    return 0 if result.status in ("completed", "stopped") else 1


if __name__ == "__main__":
    sys.exit(main())

"""One worker of the multi-worker test (tests/engine/test_distribute.py), run as its own process:

    python -m tests.distributed_worker OUT --workers localhost:P0,localhost:P1 --worker-index I
        [--run folder --folder PATH] [--run sample] [--run stop --stop-after N]

Each --run, in the order given, trains `spec()` through train_and_save (as the CLI does) under one
MultiWorkerMirroredStrategy and writes its final weights to OUT-<run>.npz; the chief also saves the model
(RUN_NAMES). One cluster serves every run, so the cluster starts (and TensorFlow is imported) once:
- `sample`: the embedded sample (`data()`);
- `folder`: the class folder at --folder, streamed from disk; first, so that its shuffle sees a fresh
  process's TensorFlow seed state (a class folder takes its seed from that state when it is loaded);
- `stop`: the sample again, this worker asking to stop after --stop-after batches (when given).
Without --workers it is the single-process reference, started fresh like the workers.
"""
import argparse
import os
import sys
import threading

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


RUN_NAMES = {"sample": "distributed", "folder": "distributed-folder", "stop": "distributed-stopped"}


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
    parser.add_argument("--run", action="append", choices=list(RUN_NAMES), help="a training to run (repeat)")
    parser.add_argument("--stop-after", type=int, help="in the stop run, ask this worker (only) to stop after "
                                                      "this many batches")
    parser.add_argument("--folder", help="the class folder of the folder run")
    args = parser.parse_args(argv)

    from cnn.core.quiet import import_tensorflow

    import_tensorflow()
    from cnn.run.distribute import make_strategy, parse_workers, set_tf_config
    from cnn.run.workflows import train_and_save

    if args.workers:
        set_tf_config(parse_workers(args.workers), args.worker_index)
    strategy = make_strategy("multi-worker" if args.workers else "one")  # before any other TensorFlow work
    failed = False
    for run in args.run or ["sample"]:
        stop, batches = threading.Event(), []
        stop_after = args.stop_after if run == "stop" else None

        def on_progress(report, batches=batches, stop=stop, stop_after=stop_after):
            if report.phase == "batch":
                batches.append(report.batch)
                if stop_after and report.batch >= stop_after:
                    stop.set()

        dataset = data(args.folder if run == "folder" else None)
        result, evaluation, info = train_and_save(spec_for(dataset), dataset, name=RUN_NAMES[run],
                                                  strategy=strategy, on_progress=on_progress, stop=stop,
                                                  progress_interval=0)
        np.savez(f"{args.out}-{run}.npz", *result.model.get_weights())
        print(f"run={run} status={result.status} chief={result.chief} saved={info.name if info else None} "
              f"batches={len(batches)}", flush=True)
        failed = failed or result.status not in ("completed", "stopped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

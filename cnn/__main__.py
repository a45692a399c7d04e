"""The command line: python -m cnn {presets,datasets,models,train,evaluate,predict,calibrate,export-script,export}.

Bad arguments or files print one line naming the problem and exit with status 2 (1 for failed training).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from cnn.analysis.calibration import calibration_summary, load_calibration
from cnn.analysis.metrics import evaluate
from cnn.analysis.predict import predict_images
from cnn.core.errors import CnnError
from cnn.core.quiet import import_tensorflow
from cnn.core.text import accuracy_text, date_text, probability_text
from cnn.data.load import check_dataset_name, list_datasets, load_dataset
from cnn.data.preprocess import INVERT_CHOICES, default_recipe
from cnn.model.builder import export_script
from cnn.model.memory import check_memory
from cnn.model.spec import PRESET_NOTES, PRESETS, ModelSpec, preset, validate
from cnn.run.distribute import STRATEGIES, make_strategy, parse_workers, read_tf_config, set_tf_config, worker_position
from cnn.run.workflows import calibrate_model, saved_as_message, train_and_save
from cnn.store.export import FORMATS, available_formats, export_model
from cnn.store.housekeeping import clean_up_at_start
from cnn.store.registry import check_name, dataset_split, dataset_to_load, list_models, load_model, model_info, models_dir


class Parser(argparse.ArgumentParser):
    """argparse, but an error is one line, not a usage block."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def fail(message: str, code: int = 2):
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def tf_ready():
    import_tensorflow()


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {value}")
    return value


def table(rows: list[list], header: list[str]) -> str:
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells)


# ---------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------

def cmd_presets(args):
    rows = []
    for name in PRESETS:
        a = validate(preset(name))
        rows.append([name, f"{a.params:,}", f"{a.macs / 1e6:.2f}M", PRESET_NOTES[name]])
    print(table(rows, ["preset", "params", "MACs", "about"]))


def cmd_datasets(args):
    rows = [[d["name"], "×".join(map(str, d["input_shape"])), d["classes"], d["source"]] for d in list_datasets()]
    print(table(rows, ["dataset", "input", "classes", "source"]))
    print("\nAlso: a folder (or .zip) with one sub-folder of images per class, e.g. --dataset path/to/folder")


def cmd_models(args):
    infos = list_models()
    if not infos:
        print(f"no saved models in {models_dir()}; train one with: python -m cnn train --preset default "
              "--dataset mnist-sample")
        return
    def calibrated(info) -> str:
        summary = calibration_summary(info)
        return f"T={summary['temperature']:.2f}" if summary["calibrated"] else "no"

    rows = [[i.name, i.dataset, i.preset, f"{i.params:,}", accuracy_text(i.test_accuracy), i.epochs, calibrated(i),
             date_text(i.created) if i.created else "–", "ok" if not i.damaged else "damaged" if i.usable
             else "unusable"] for i in infos]
    print(table(rows, ["name", "dataset", "preset", "params", "test acc", "epochs", "calibrated", "created", "files"]))
    for info in infos:
        if info.damaged:
            more = f" (and {len(info.problems) - 1} more)" if len(info.problems) > 1 else ""
            print(f"{info.name}: {'damaged' if info.usable else 'unusable'}: {info.problems[0]}{more}",
                  file=sys.stderr)


class ProgressBar:
    """A one-line progress bar on a terminal; one line per epoch otherwise (logs, CI)."""

    def __init__(self, stream=None):
        self.stream = sys.stderr if stream is None else stream  # the stderr of now, not of import time
        self.tty = self.stream.isatty()

    def __call__(self, p):
        m = p.metrics
        text = (f"epoch {p.epoch}/{p.epochs} batch {p.batch}/{p.batches} loss {m.get('loss', float('nan')):.4f} "
                f"acc {m.get('accuracy', float('nan')):.4f}")
        if p.phase == "epoch":
            val = f" val_loss {m['val_loss']:.4f} val_acc {m['val_accuracy']:.4f}" if "val_loss" in m else ""
            line = f"epoch {p.epoch}/{p.epochs} loss {m.get('loss', 0):.4f} acc {m.get('accuracy', 0):.4f}{val} " \
                   f"({m.get('seconds', 0):.1f} s)"
            print(("\r" + " " * 100 + "\r" if self.tty else "") + line, file=self.stream, flush=True)
        elif self.tty:
            filled = int(p.fraction * 30)
            eta = f"ETA {int(p.eta) // 60}:{int(p.eta) % 60:02d}" if p.eta == p.eta else ""
            print(f"\r[{'#' * filled}{'.' * (30 - filled)}] {p.fraction:4.0%} {text} {eta}".ljust(100), end="",
                  file=self.stream, flush=True)


def cmd_train(args):
    if args.name:
        check_name(args.name)
        if (models_dir() / args.name).exists():
            fail(f"a model named {args.name!r} already exists in {models_dir()}; choose another --name")
    if args.spec:
        try:
            spec = ModelSpec.from_json(Path(args.spec).read_bytes())
        except OSError as exc:
            fail(f"cannot read spec file {args.spec}: {exc.strerror}")
    elif args.preset not in PRESETS:
        fail(f"unknown preset {args.preset!r}; choose one of {', '.join(PRESETS)}")
    else:
        spec = preset(args.preset)
    strategy_kind = args.strategy or ("multi-worker" if args.workers else "one")
    if (args.workers is None) != (args.worker_index is None):
        fail("--workers and --worker-index go together: the same --workers list on every worker, and each "
             "worker's own --worker-index (0 is the chief, which saves)")
    if args.workers is not None and strategy_kind != "multi-worker":
        fail(f"--workers is for --strategy multi-worker, not {strategy_kind!r}")
    # Everything that can be checked without TensorFlow is checked before its seconds-long import.
    if args.workers is not None:
        set_tf_config(parse_workers(args.workers), args.worker_index)
    if strategy_kind == "multi-worker":
        read_tf_config()
    check_dataset_name(args.dataset)
    tf_ready()
    strategy = make_strategy(strategy_kind)  # before TensorFlow runs anything else (multi-worker needs that)
    index, workers = worker_position(strategy)
    dataset = load_dataset(args.dataset, limit=args.limit)
    for note in dataset.notes:
        print(f"note: {note}", file=sys.stderr)
    spec = spec.with_data(dataset.input_shape, dataset.num_classes)
    for key, value in (("epochs", args.epochs), ("batch_size", args.batch_size), ("learning_rate", args.lr),
                       ("seed", args.seed)):
        if value is not None:
            setattr(spec.train, key, value)
    for key in ("shift", "rotation", "zoom"):
        if getattr(args, key) is not None:
            setattr(spec.train.augmentation, key, getattr(args, key))
    validate(spec)  # out-of-range flags get the spec's own message before any training
    need = check_memory(spec, dataset)  # and a run that cannot fit in memory is refused now, not killed later
    where = f" as worker {index} of {workers}" if workers > 1 else ""
    print(f"training {spec.preset} on {dataset.name} ({dataset.num_train:,} train / {dataset.num_test:,} test "
          f"images, from {dataset.source}) for {spec.train.epochs} epoch(s){where}; memory needed {need.text()}",
          file=sys.stderr)
    result, evaluation, info = train_and_save(spec, dataset, name=args.name, on_progress=ProgressBar(),
                                              strategy=strategy, film=not args.no_film)
    if not result.chief and result.status != "failed":
        print(f"worker {index} of {workers}: {result.message}; the chief (worker 0) evaluates and saves the model")
        return
    if info is None:
        fail(result.message, code=1)
    print(f"{result.message}; test accuracy {evaluation.accuracy:.4f}, loss {evaluation.loss:.4f} on "
          f"{len(evaluation.y_true):,} images; {saved_as_message(args.name, info.name)} in {info.path.parent}")


def load_for_cli(name):
    info = model_info(name)  # fails fast, before TensorFlow loads
    if not info.usable:
        fail(f"model {name!r} is damaged: {info.problems[0]}; delete its folder, or train or upload it again")
    tf_ready()
    return info, load_model(name)


def cmd_evaluate(args):
    info, model = load_for_cli(args.name)
    dataset = load_dataset(args.dataset or dataset_to_load(info), limit=args.limit,
                           **({} if args.dataset else dataset_split(info)))
    shape, classes = tuple(model.inputs[0].shape[1:]), int(model.outputs[0].shape[-1])
    if tuple(dataset.input_shape) != shape:
        fail(f"model {info.name!r} takes {'×'.join(map(str, shape))} images but {dataset.name} has "
             f"{'×'.join(map(str, dataset.input_shape))}; choose a dataset with the model's image size")
    if dataset.num_classes != classes:
        fail(f"model {info.name!r} predicts {classes} classes but {dataset.name} has {dataset.num_classes}; "
             "choose a dataset with the model's classes")
    calibration = load_calibration(info)
    if calibration is not None:
        calibration.check_model(model)
    result = evaluate(model, dataset.x_test, dataset.y_test, dataset.class_names, calibration=calibration)
    if args.json:
        print(json.dumps({"model": info.name, "dataset": dataset.name, "accuracy": result.accuracy,
                          "loss": result.loss, "num_images": len(result.y_true),
                          "class_names": result.class_names, "confusion_matrix": result.confusion.tolist(),
                          "per_class": result.per_class(), "seconds": round(result.seconds, 3),
                          **result.calibration_summary()}, indent=2))
        return
    print(f"{info.name} on {dataset.name} test split: accuracy {result.accuracy:.4f}, loss {result.loss:.4f}, "
          f"{len(result.y_true):,} images in {result.seconds:.1f} s")
    if result.calibrated:
        print(f"calibrated with temperature {result.temperature:.3f}: loss {result.raw_loss:.4f} → {result.loss:.4f}, "
              f"expected calibration error {result.ece_before:.4f} → {result.ece_after:.4f}; "
              f"{result.flagged_share:.1%} of the test images flagged as unusual (threshold "
              f"{result.ood_threshold:.2f})")
    else:
        print(f"uncalibrated: raw softmax probabilities, no out-of-distribution check "
              f"(run: python -m cnn calibrate {info.name})")
    names = [str(c)[:8] for c in result.class_names]
    print("\nconfusion matrix (rows = true, columns = predicted)")
    print(table([[n, *row] for n, row in zip(names, result.confusion.tolist())], ["", *names]))


def cmd_predict(args):
    missing = [f for f in args.images if not Path(f).is_file()]
    if missing:
        fail(f"no such file: {', '.join(missing)}")
    info, model = load_for_cli(args.name)
    calibration = load_calibration(info)
    if calibration is not None:
        calibration.check_model(model)
    results = predict_images(model, [(path, Path(path)) for path in args.images], info.input_shape,
                             info.class_names, invert=INVERT_CHOICES[args.invert],
                             recipe=default_recipe(info.input_shape, info.dataset), calibration=calibration)
    for r in results:
        if r["error"]:
            print(f"error: {r['file']}: {r['error']}", file=sys.stderr)
    rounding = {"confidence": 6, "raw_confidence": 6, "temperature": 4, "ood_score": 4, "ood_threshold": 4}
    rows = [{k: (round(v, rounding[k]) if k in rounding and v is not None else v) for k, v in r.items()
             if k != "error"} for r in results if not r["error"]]
    for r in rows:
        r["probabilities"] = {n: round(p, 6) for n, p in r["probabilities"].items()}
        r["raw_probabilities"] = {n: round(p, 6) for n, p in r["raw_probabilities"].items()}
    failed = len(results) - len(rows)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            others = "  ".join(f"{n}:{p:.3f}" for n, p in r["probabilities"].items())
            verdict = "" if r["unusual"] is None else \
                (f"   UNUSUAL: doesn't look like anything the model was trained on (score {r['ood_score']:.1f} > "
                 f"{r['ood_threshold']:.1f})" if r["unusual"] else f"   looks familiar (score {r['ood_score']:.1f})")
            print(f"{r['file']}: {r['prediction']} ({probability_text(r['confidence'])})   {others}{verdict}")
        if rows and calibration is None:
            print(f"note: {info.name} is uncalibrated: raw softmax, no out-of-distribution check "
                  f"(run: python -m cnn calibrate {info.name})", file=sys.stderr)
    if failed:
        raise SystemExit(2)


def cmd_calibrate(args):
    info = model_info(args.name)  # fails fast, before TensorFlow loads
    tf_ready()
    print(f"calibrating {info.name} …", file=sys.stderr)
    start = time.monotonic()
    cal = calibrate_model(args.name, args.dataset, flag_share=args.flag_share, max_images=args.max_images)
    v = cal.validation
    print(f"{info.name}: temperature {cal.temperature:.4f} (validation NLL {v['nll_before']:.4f} → "
          f"{v['nll_after']:.4f}, ECE {v['ece_before']:.4f} → {v['ece_after']:.4f} on {v['images']:,} images); "
          f"OOD threshold {cal.ood.threshold:.3f} flags {v['flagged']:.1%} of them; class centres from "
          f"{cal.fitted_on['fit_images']:,} training images of {cal.fitted_on['dataset']} "
          f"({cal.fitted_on['split']}); wrote {info.path / 'calibration.json'} in {time.monotonic() - start:.1f} s")


def share(text: str) -> float:
    value = fraction(text)
    if not value < 0.5:
        raise argparse.ArgumentTypeError(f"must be below 0.5, got {value}")
    return value


def cmd_export_script(args):
    info = model_info(args.name)
    if not info.usable:
        fail(f"model {info.name!r} is damaged: {info.problems[0]}")
    script = export_script(ModelSpec.from_dict(info.spec), info.dataset, info.name)
    if args.output:
        try:
            Path(args.output).write_text(script)
        except OSError as exc:
            fail(f"cannot write {args.output}: {exc.strerror or exc}")
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        print(script, end="")


def cmd_export(args):
    reason = available_formats()[args.format]
    if reason:
        fail(f"{args.format} export is not available here: {reason}")
    model_info(args.name)  # fails fast, before TensorFlow loads
    tf_ready()
    if args.output and not Path(args.output).parent.is_dir():
        fail(f"cannot write {args.output}: folder {Path(args.output).parent} does not exist")
    report = export_model(args.name, args.format, args.output, limit=args.limit)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.summary())
    if not report.passed:
        fail(f"the {args.format} export does not meet its bar ({report.criterion}); the file was kept at "
             f"{report.path} for inspection", code=1)


def build_parser() -> Parser:
    parser = Parser(prog="python -m cnn", description="CNN Studio's engine, headless.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    sub.add_parser("presets", help="list model presets").set_defaults(run=cmd_presets)
    sub.add_parser("datasets", help="list datasets and where each would load from").set_defaults(run=cmd_datasets)
    sub.add_parser("models", help="list saved models").set_defaults(run=cmd_models)

    p = sub.add_parser("train", help="train a preset (or a spec file) and save it to the registry")
    p.add_argument("--preset", default="default", help="preset name (see `presets`)")
    p.add_argument("--spec", help="a spec .json (as exported by the app) instead of a preset")
    p.add_argument("--dataset", default="mnist-sample", help="dataset name or class-folder path")
    p.add_argument("--epochs", type=positive)
    p.add_argument("--batch-size", type=positive)
    p.add_argument("--lr", type=float, help="learning rate")
    p.add_argument("--seed", type=int)
    p.add_argument("--limit", type=positive, help="use the first N images of each split (stratified)")
    p.add_argument("--shift", type=float, help="augmentation: largest random shift (fraction of the size)")
    p.add_argument("--rotation", type=float, help="augmentation: largest random rotation (degrees)")
    p.add_argument("--zoom", type=float, help="augmentation: largest random zoom (fraction)")
    p.add_argument("--name", help="registry name (default: <preset>-<dataset>)")
    p.add_argument("--no-film", action="store_true",
                   help="do not film training (film.npz: kernels, probe activations, weight histograms per epoch)")
    p.add_argument("--strategy", choices=STRATEGIES,
                   help="one: this process (default); mirrored: every GPU here; multi-worker: one process per "
                        "machine, the cluster read from TF_CONFIG or given by --workers")
    p.add_argument("--workers", help="multi-worker cluster host:port,host:port,… (the same on every worker; "
                                     "writes TF_CONFIG)")
    p.add_argument("--worker-index", type=int, help="this worker's place in --workers (0 = the chief, which saves)")
    p.set_defaults(run=cmd_train)

    p = sub.add_parser("evaluate", help="accuracy, loss and confusion matrix on a test split")
    p.add_argument("name")
    p.add_argument("--dataset", help="default: the dataset the model was trained on")
    p.add_argument("--limit", type=positive)
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_evaluate)

    p = sub.add_parser("predict", help="top class and all probabilities for image files")
    p.add_argument("name")
    p.add_argument("images", nargs="+")
    p.add_argument("--invert", choices=tuple(INVERT_CHOICES), default="auto",
                   help="make ink bright on dark (auto: when the background is light)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_predict)

    p = sub.add_parser("calibrate", help="fit the temperature and the out-of-distribution score of a saved model "
                                         "and add calibration.json to it (the model file is untouched)")
    p.add_argument("name")
    p.add_argument("--dataset", help="default: the dataset the model was trained on, split as its training was")
    p.add_argument("--flag-share", type=share, default=0.05,
                   help="share of the model's own validation images the threshold flags (default 0.05)")
    p.add_argument("--max-images", type=positive, default=20_000,
                   help="training images whose features give the class centres (default 20000)")
    p.set_defaults(run=cmd_calibrate)

    p = sub.add_parser("export-script", help="print a standalone Keras script that rebuilds and trains a model")
    p.add_argument("name")
    p.add_argument("--output", "-o", help="write to this file instead of stdout")
    p.set_defaults(run=cmd_export_script)

    p = sub.add_parser("export", help="write a model for deployment (Keras, SavedModel, TFLite, int8 TFLite, ONNX) "
                                      "and check it with its own runtime on test images")
    p.add_argument("name")
    p.add_argument("--format", required=True, choices=tuple(FORMATS),
                   help="; ".join(f"{k}: {v[1]}" for k, v in FORMATS.items()))
    p.add_argument("--output", "-o", help="where to write (default: ./NAME.keras, ./NAME.savedmodel/, ./NAME.tflite, "
                                          "./NAME-int8.tflite, ./NAME.onnx)")
    p.add_argument("--limit", type=positive, help="check on the first N test images (default: the whole test split)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(run=cmd_export)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        clean_up_at_start()  # temporaries a killed run left behind; the cache's size cap
        args.run(args)
    except CnnError as exc:
        fail(str(exc))
    except OSError as exc:  # a file or folder the user named that cannot be read or written
        where = f" ({exc.filename})" if exc.filename else ""
        fail(f"{exc.strerror or exc}{where}")
    except MemoryError:
        fail("out of memory: use a smaller batch size, fewer images (--limit) or a smaller model")
    except KeyboardInterrupt:
        fail("interrupted", code=130)
    return 0


if __name__ == "__main__":
    sys.exit(main())

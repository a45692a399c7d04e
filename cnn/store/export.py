"""Exports of a saved model for deployment, each verified by its own runtime right after it is written.

    keras        the registry's model.keras (Keras 3, safe to load)                  → NAME.keras
    savedmodel   TensorFlow SavedModel with a TF Serving signature 'serving_default' → NAME.savedmodel/ (folder)
    tflite       TensorFlow Lite, float32                                            → NAME.tflite
    tflite-int8  TensorFlow Lite, full-integer int8 (int8 input and output), calibrated
                 on a sample of the model's training split                           → NAME-int8.tflite
    onnx         ONNX (tf2onnx; run with onnxruntime)                                → NAME.onnx

Every format takes what the model takes — images of 0…255 pixel values, shape (N, H, W, C), input 'image' —
and gives class probabilities (N, classes), output 'probabilities'; training-only layers (augmentation) are
left out. Verification runs the written file on the model's test images: float formats must agree with
Keras to MAX_FLOAT_DIFF in every probability; int8 must lose at most MAX_INT8_DROP of test accuracy.
"""
from __future__ import annotations

import io
import json
import shutil
import tempfile
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from cnn.analysis.inference import predict_proba
from cnn.core.compiled import batches
from cnn.core.errors import CnnError, DatasetError, ExportError
from cnn.core.quiet import silenced_stderr
from cnn.data.datasets import STAND_INS, apply_limit, is_folder
from cnn.data.load import load_dataset, where
from cnn.data.uploads import cache_dir
from cnn.model.builder import rebuild
from cnn.store.registry import dataset_split, load_model, model_info

FORMATS = {  # format → (file suffix, what it is for)
    "keras": (".keras", "Keras 3 model: load with keras.saving.load_model"),
    "savedmodel": (".savedmodel", "TensorFlow SavedModel folder for TF Serving (signature 'serving_default')"),
    "tflite": (".tflite", "TensorFlow Lite, float32: phones and microcontrollers with a float runtime"),
    "tflite-int8": ("-int8.tflite", "TensorFlow Lite, full-integer int8 in and out: ~4× smaller, integer-only "
                                    "accelerators"),
    "onnx": (".onnx", "ONNX: onnxruntime (servers, browsers via onnxruntime-web) and other ONNX runtimes"),
}
MAX_FLOAT_DIFF = 1e-4  # largest |Δp| a float export may differ from Keras by, on any class of any image
MAX_INT8_DROP = 0.005  # largest loss of test accuracy an int8 export may have (0.5 points)
CALIBRATION_IMAGES = 500  # training images the int8 quantisation ranges are calibrated on
ONNX_OPSET = 17


@dataclass(frozen=True)
class ExportReport:
    """What was written and how well it agrees with the Keras model."""

    format: str
    path: Path  # the file (a folder for savedmodel)
    size: int  # bytes on disk (the folder's total for savedmodel)
    images: int  # test images both were run on
    dataset: str  # where those images came from
    max_diff: float  # largest |p_export − p_keras| over every class of every image
    keras_accuracy: float  # the Keras model's accuracy on those images
    export_accuracy: float  # the export's accuracy on the same images
    agreement: float  # share of images where both predict the same class
    passed: bool  # met the format's bar (MAX_FLOAT_DIFF, or MAX_INT8_DROP for int8)
    criterion: str  # the bar, in words
    seconds: float  # to write and verify

    @property
    def accuracy_drop(self) -> float:
        return self.keras_accuracy - self.export_accuracy

    def summary(self) -> str:
        """One line for people: size, agreement and accuracy."""
        verdict = "verified" if self.passed else "FAILED verification"
        return (f"{self.format}: {self.path} ({size_text(self.size)}); {verdict} on {self.images:,} test images of "
                f"{self.dataset}: max |Δp| {self.max_diff:.1e}, same top class on {self.agreement:.2%}, accuracy "
                f"{self.export_accuracy:.2%} vs Keras {self.keras_accuracy:.2%} ({self.criterion})")

    def to_dict(self) -> dict:
        return {**asdict(self), "path": str(self.path), "accuracy_drop": self.accuracy_drop}


def size_text(size: int) -> str:
    """1,234 → '1.2 KB'; sizes in decimal units, as browsers show downloads."""
    for unit, scale in (("MB", 1e6), ("KB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def onnx_unavailable() -> str | None:
    """Why ONNX export cannot run in this installation, or None when it can."""
    try:
        import onnxruntime  # noqa: F401
        import tf2onnx  # noqa: F401
    except ImportError as exc:
        return (f"ONNX export needs tf2onnx and onnxruntime, which are not installed here ({exc.name} missing): "
                "pip install -r requirements.txt")
    return None


def available_formats() -> dict[str, str | None]:
    """format → None if it can be exported here, else the reason it cannot (for the page and the CLI)."""
    return {fmt: (onnx_unavailable() if fmt == "onnx" else None) for fmt in FORMATS}


def default_path(name: str, fmt: str, folder: Path | str = ".") -> Path:
    return Path(folder) / f"{name}{FORMATS[fmt][0]}"


def cache_path(info, fmt: str) -> Path:
    """Where the app keeps an export of a saved model: keyed by the model's folder (two workspaces may each hold
    a model of one name) and its file's time, so a retrained model is exported afresh."""
    import hashlib

    folder = hashlib.sha256(str(Path(info.path).resolve()).encode()).hexdigest()[:12]
    return cache_dir() / "exports" / f"{info.name}-{int(info.mtime)}-{folder}" / default_path(info.name, fmt).name


# ---------------------------------------------------------------------------
# Data: the model's test images for verification, training images for int8 calibration
# ---------------------------------------------------------------------------

def model_dataset(info):
    """The dataset the model was trained on, or its committed stand-in (full MNIST offline → the embedded
    sample) when it cannot be had here without a download."""
    name = info.metrics.get("dataset_source") if is_folder(info.dataset) else info.dataset
    if not name or name == "unknown":
        raise ExportError(f"model {info.name!r} does not say which dataset it was trained on, so its export "
                          "cannot be checked on test images")
    if name in STAND_INS and where(name).startswith("download"):
        return load_dataset(STAND_INS[name])  # offline: never start a download for a check
    try:
        return load_dataset(name, **dataset_split(info))
    except DatasetError as exc:
        if name not in STAND_INS:
            raise ExportError(f"cannot check the export of {info.name!r}: {exc}") from None
        return load_dataset(STAND_INS[name])


def calibration_images(dataset, count: int = CALIBRATION_IMAGES, seed: int = 0) -> np.ndarray:
    """A seeded random sample of `count` training images (float32, 0…255), from memory or the stream."""
    if dataset.streamed:
        images = [x for x, _ in dataset.train_stream.take(count).as_numpy_iterator()]
        return np.stack(images).astype(np.float32)
    picks = np.random.default_rng(seed).choice(len(dataset.x_train), min(count, len(dataset.x_train)), replace=False)
    return dataset.x_train[np.sort(picks)].astype(np.float32)


# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------

def serving_model(model):
    """The model as deployed: the same layers and weights without the training-only ones (augmentation),
    whose random ops no inference runtime needs (TFLite and ONNX cannot run them)."""
    ours, _ = rebuild(model)  # checked: same probabilities as `model`
    return ours


def serving_function(model):
    """A tf.function: float32 images (N, H, W, C) 'image' → {'probabilities': (N, classes)}."""
    import tensorflow as tf

    spec = tf.TensorSpec([None, *model.input_shape[1:]], tf.float32, name="image")
    return tf.function(lambda image: {"probabilities": model(image, training=False)}, input_signature=[spec])


def write_keras(info, model, path: Path) -> None:
    shutil.copyfile(info.path / "model.keras", path)


def write_savedmodel(info, model, path: Path) -> None:
    import keras

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serve", serving_function(model))  # the first endpoint is also 'serving_default'
    archive.write_out(str(path), verbose=False)


def _converter(model, folder: Path):
    """A TFLite converter from a SavedModel written to `folder` (from a Keras 3 model's concrete function
    directly, the weights stay resource variables that the TFLite runtime cannot read)."""
    import tensorflow as tf

    write_savedmodel(None, model, folder)
    return tf.lite.TFLiteConverter.from_saved_model(str(folder))


def write_tflite(info, model, path: Path) -> None:
    converter = _converter(model, path.with_name("savedmodel"))
    with silenced_stderr():  # the converter's C++ progress lines; failures still raise
        path.write_bytes(converter.convert())


def write_tflite_int8(info, model, path: Path, calibration: np.ndarray) -> None:
    import tensorflow as tf

    converter = _converter(model, path.with_name("savedmodel"))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    # Activation ranges from real training images, one at a time as the runtime will see them.
    converter.representative_dataset = lambda: ([image[None]] for image in calibration)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]  # integer kernels only
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    with silenced_stderr():
        path.write_bytes(converter.convert())


def write_onnx(info, model, path: Path) -> None:
    reason = onnx_unavailable()
    if reason:
        raise ExportError(reason)
    import tf2onnx

    fn = serving_function(model)
    tf2onnx.convert.from_function(fn, input_signature=fn.input_signature, opset=ONNX_OPSET, output_path=str(path))


# ---------------------------------------------------------------------------
# Running each export with its own runtime
# ---------------------------------------------------------------------------

def run_keras(path: Path, images: np.ndarray) -> np.ndarray:
    import keras

    return predict_proba(keras.saving.load_model(path, compile=False, safe_mode=True), images)


def run_savedmodel(path: Path, images: np.ndarray, batch: int = 1000) -> np.ndarray:
    import tensorflow as tf

    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    return np.concatenate([serve(image=tf.constant(chunk))["probabilities"].numpy() for chunk in batches(images, batch)])


def tflite_interpreter(path: Path):
    """The TFLite runtime on a .tflite file, tensors allocated."""
    import warnings

    import tensorflow as tf

    # "Use ai_edge_litert": the same runtime, which still ships with TF 2.21; its delegate's INFO line hushed.
    with warnings.catch_warnings(), silenced_stderr():
        warnings.simplefilter("ignore", UserWarning)
        interpreter = tf.lite.Interpreter(model_path=str(path), num_threads=2)
        interpreter.allocate_tensors()
    return interpreter


def run_tflite(path: Path, images: np.ndarray, batch: int = 1000) -> np.ndarray:
    """The TFLite interpreter on batches; int8 models get quantised inputs and dequantised outputs."""
    interpreter = tflite_interpreter(path)
    source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    outputs = []
    for chunk in batches(images, batch):
        interpreter.resize_tensor_input(source["index"], chunk.shape)
        interpreter.allocate_tensors()
        if source["dtype"] == np.int8:
            scale, zero = source["quantization"]
            chunk = np.clip(np.round(chunk / scale + zero), -128, 127)
        interpreter.set_tensor(source["index"], chunk.astype(source["dtype"]))
        interpreter.invoke()
        out = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
        if target["dtype"] == np.int8:
            scale, zero = target["quantization"]
            out = (out.astype(np.float32) - zero) * scale
        outputs.append(out.astype(np.float32))
    return np.concatenate(outputs)


def run_onnx(path: Path, images: np.ndarray) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["probabilities"], {"image": images})[0]


WRITERS = {"keras": write_keras, "savedmodel": write_savedmodel, "tflite": write_tflite,
           "tflite-int8": write_tflite_int8, "onnx": write_onnx}
RUNNERS = {"keras": run_keras, "savedmodel": run_savedmodel, "tflite": run_tflite, "tflite-int8": run_tflite,
           "onnx": run_onnx}


def disk_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def export_model(name: str, fmt: str, path: Path | str | None = None, limit: int | None = None,
                 overwrite: bool = False) -> ExportReport:
    """Write saved model `name` as `fmt` to `path` (default ./NAME<suffix>), run it with its own runtime on
    the model's test images (the first `limit`, stratified; all by default) and report the agreement.

    The file is written beside its target and renamed into place, so a failed export leaves nothing behind.
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if fmt == "onnx" and onnx_unavailable():
        raise ExportError(onnx_unavailable())
    info = model_info(name)
    path = Path(path) if path is not None else default_path(name, fmt)
    if path.exists() and not overwrite:
        raise ExportError(f"{path} already exists; choose another path with -o or remove it first")
    if not path.parent.is_dir():
        raise ExportError(f"cannot write {path}: folder {path.parent} does not exist")
    start = time.monotonic()
    model = load_model(name)
    dataset = model_dataset(info)
    if tuple(dataset.input_shape) != tuple(info.input_shape):
        raise ExportError(f"model {name!r} takes {info.input_shape} images but its dataset {dataset.name} now has "
                          f"{dataset.input_shape}; the export cannot be checked")
    test = apply_limit(dataset, (1, limit)) if limit else dataset
    images, labels = test.x_test.astype(np.float32), np.asarray(test.y_test)

    # Step 1: write into a private temporary folder beside the target, then rename into place.
    tmp = Path(tempfile.mkdtemp(prefix=f".export-{path.name}-", dir=path.parent))
    try:
        written = tmp / path.name
        deployed = model if fmt == "keras" else serving_model(model)
        if fmt == "tflite-int8":
            write_tflite_int8(info, deployed, written, calibration_images(dataset))
        else:
            WRITERS[fmt](info, deployed, written)
        # Step 2: run the written file with its own runtime, and the Keras model, on the same images.
        theirs = RUNNERS[fmt](written, images)
        ours = _keras_probabilities(model, images)
        if path.exists():
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        written.rename(path)
    except CnnError:
        raise
    except Exception as exc:  # noqa: BLE001 — converters raise many kinds; the user gets one sentence
        raise ExportError(f"the {fmt} export of {name!r} failed: {type(exc).__name__}: "
                          f"{str(exc).strip().splitlines()[0][:300] if str(exc).strip() else 'no details'}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    # Step 3: compare. Float formats: every probability; int8: test accuracy.
    keras_accuracy = float(np.mean(ours.argmax(1) == labels))
    export_accuracy = float(np.mean(theirs.argmax(1) == labels))
    max_diff = float(np.abs(theirs - ours).max()) if len(images) else 0.0
    if fmt == "tflite-int8":
        passed = keras_accuracy - export_accuracy <= MAX_INT8_DROP + 1e-12
        criterion = f"int8 may lose at most {MAX_INT8_DROP * 100:.1f} points of accuracy"
    else:
        passed = max_diff <= MAX_FLOAT_DIFF
        criterion = f"float formats must agree with Keras to {MAX_FLOAT_DIFF:.0e}"
    return ExportReport(fmt, path, disk_size(path), len(images), test.name, max_diff, keras_accuracy,
                        export_accuracy, float(np.mean(theirs.argmax(1) == ours.argmax(1))), bool(passed), criterion,
                        round(time.monotonic() - start, 2))


def _keras_probabilities(model, images: np.ndarray) -> np.ndarray:
    return predict_proba(model, images)


def download_bytes(report: ExportReport) -> tuple[str, bytes]:
    """(file name, bytes) to offer for download: the file itself, or a .zip of a SavedModel folder."""
    path = Path(report.path)
    if not path.is_dir():
        return path.name, path.read_bytes()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            zf.write(file, f"{path.name}/{file.relative_to(path)}")
    return f"{path.name}.zip", buffer.getvalue()


def export_for_app(name: str, fmt: str, limit: int | None = None) -> ExportReport:
    """The app's export: written once per model version into the cache (cache_path), with its report saved
    beside it as JSON, so the Models page shows sizes and agreement without redoing the work."""
    info = model_info(name)
    path = cache_path(info, fmt)
    record = path.parent / f"{path.name}.report.json"
    if path.exists() and record.is_file():
        try:
            data = json.loads(record.read_text())
            return ExportReport(**{**{k: data[k] for k in ExportReport.__dataclass_fields__}, "path": path})
        except (json.JSONDecodeError, KeyError, TypeError):
            pass  # an unreadable record: export again
    path.parent.mkdir(parents=True, exist_ok=True)
    report = export_model(name, fmt, path, limit=limit, overwrite=True)
    record.write_text(json.dumps(report.to_dict(), indent=2))
    return report

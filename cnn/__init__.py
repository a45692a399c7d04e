"""CNN Studio's engine: datasets, specs, building, training, the model registry and inference.

Importing `cnn` is cheap (no TensorFlow); the heavy names below load on first use.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's Python-side chatter quiet

_LAZY = {
    "load_dataset": "cnn.data", "Dataset": "cnn.data",
    "ModelSpec": "cnn.spec", "preset": "cnn.spec", "validate": "cnn.spec", "SpecError": "cnn.errors",
    "CnnError": "cnn.errors",
    "build_model": "cnn.builder", "export_script": "cnn.builder",
    "train": "cnn.train", "train_and_save": "cnn.train",
    "evaluate": "cnn.metrics",
    "prepare_image": "cnn.preprocess", "load_image": "cnn.imageio", "check_image_header": "cnn.imageio",
    "predict_proba": "cnn.inference", "activations": "cnn.inference", "grad_cam": "cnn.inference",
    "saliency": "cnn.inference", "predict_images": "cnn.inference",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cnn' has no attribute {name!r}")

"""CNN Studio's engine: datasets, specs, building, training, the model registry and inference.

Importing `cnn` is cheap (no TensorFlow): import the module you need, e.g. `from cnn.run.train import train`.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's Python-side chatter quiet

"""Import TensorFlow without the C++ start-up lines it writes straight to the stderr file descriptor."""
import contextlib
import os
import sys


@contextlib.contextmanager
def silenced_stderr():
    """Point fd 2 at /dev/null for the duration (Python-level and C-level writes alike)."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_tensorflow():
    """TensorFlow, imported and initialised quietly (idempotent)."""
    with silenced_stderr():
        import tensorflow as tf

        tf.config.list_physical_devices()  # device discovery prints the CUDA lines: do it here
    return tf

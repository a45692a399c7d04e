"""A film of training: `FilmRecorder`, a Keras callback that snapshots, each epoch, the first conv layer's
kernels, a probe image's conv activations and per-layer weight histograms; `load_film(info)` reads it back.
FilmRecorder is made when first asked for, so importing this module does not import Keras.
"""
from __future__ import annotations

import functools
import io
import threading
from dataclasses import dataclass

import numpy as np

from cnn.analysis.inference import conv_layers
from cnn.core.errors import CnnError, RegistryError

# ---------------------------------------------------------------------------
# A film of training: each epoch, the first conv layer's kernels, a probe image's conv activations and every
# weighted layer's weight histogram — no extra pass over the data (the probe is one image, one forward call)
# ---------------------------------------------------------------------------

FILM_BINS = 41  # histogram bins per layer (odd: one bin is centred on 0)
FILM_RANGE = 6.0  # histogram edges span ±FILM_RANGE × the layer's largest starting weight: measured on
#                   mnist-default, 20 epochs took the largest weight from 1.8× (output) to 7× (conv2) its start;
#                   weights beyond the edges are counted in the end bins (and in `outside`)
FILM_MAX_BYTES = 200_000_000  # a film.npz larger than this is refused unread


@dataclass(frozen=True)
class Film:
    """Frames recorded during training: frame 0 holds the starting weights, frame t the weights after epoch t."""

    epochs: np.ndarray  # (T,) the epoch each frame ends: 0 (before training), 1, 2, …
    batches: np.ndarray  # (T,) batches trained in that epoch (fewer than a full epoch if stopped)
    kernel_layer: str  # the first conv layer ('' for a model without one)
    kernels: np.ndarray  # (T, F, K, K, Cin) float32: its kernels at each frame, exactly
    probe: np.ndarray  # (H, W, C) uint8: the fixed image whose activations are filmed (empty if none)
    probe_label: int  # its class (−1 if unknown)
    activations: dict  # conv layer name → (T, h, w, F) float16: its output on the probe at each frame
    histograms: dict  # weighted layer name → (T, FILM_BINS) int32: counts of its kernel's weights per bin
    edges: dict  # weighted layer name → (FILM_BINS + 1,) float32: the fixed bin edges
    outside: dict  # weighted layer name → (T,) int32: weights beyond the edges (counted in the end bins)

    def __len__(self) -> int:
        return len(self.epochs)

    def to_bytes(self) -> bytes:
        """The film as a compressed .npz (what the model folder's film.npz holds)."""
        arrays = {"epochs": self.epochs, "batches": self.batches, "kernel_layer": np.array(self.kernel_layer),
                  "kernels": self.kernels, "probe": self.probe, "probe_label": np.array(self.probe_label)}
        for prefix, table in (("act", self.activations), ("hist", self.histograms), ("edges", self.edges),
                              ("outside", self.outside)):
            arrays.update({f"{prefix}__{name}": value for name, value in table.items()})
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        return buffer.getvalue()


def film_from_bytes(data: bytes, where: str = "film.npz") -> Film:
    """A Film read from .npz bytes, every array checked (the file may come from anywhere); RegistryError
    naming what is wrong otherwise."""
    if len(data) > FILM_MAX_BYTES:
        raise RegistryError(f"{where} is {len(data) / 1e6:.0f} MB; the limit is {FILM_MAX_BYTES / 1e6:.0f} MB")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
        tables = {prefix: {k.split("__", 1)[1]: v for k, v in arrays.items() if k.startswith(prefix + "__")}
                  for prefix in ("act", "hist", "edges", "outside")}
        film = Film(arrays["epochs"].astype(np.int64), arrays["batches"].astype(np.int64),
                    str(arrays["kernel_layer"]), arrays["kernels"].astype(np.float32), arrays["probe"].astype(np.uint8),
                    int(arrays["probe_label"]), tables["act"], tables["hist"], tables["edges"], tables["outside"])
    except Exception as exc:  # noqa: BLE001 — a broken or foreign file: zip, npy and key errors alike
        raise RegistryError(f"{where} cannot be read ({type(exc).__name__}: {exc}); retrain the model to "
                            "record a new film") from None
    frames = len(film.epochs)
    problems = [name for name, value in [("batches", film.batches), ("kernels", film.kernels),
                                         *film.activations.items(), *film.histograms.items(), *film.outside.items()]
                if len(value) != frames]
    problems += [name for name, value in film.edges.items()
                 if value.shape != (FILM_BINS + 1,) or name not in film.histograms]
    if frames == 0 or film.epochs.ndim != 1 or problems:
        raise RegistryError(f"{where} is inconsistent ({frames} frames; wrong sizes: "
                            f"{', '.join(problems) or 'none'}); retrain the model to record a new film")
    return film


def load_film(info) -> Film | None:
    """The film saved with a model (registry ModelInfo), or None if it was trained without one."""
    path = info.path / "film.npz"
    if not path.is_file():
        return None
    if path.stat().st_size > FILM_MAX_BYTES:
        raise RegistryError(f"film.npz of {info.name!r} is {path.stat().st_size / 1e6:.0f} MB; the limit is "
                            f"{FILM_MAX_BYTES / 1e6:.0f} MB")
    return film_from_bytes(path.read_bytes(), f"film.npz of {info.name!r}")


def film_probe(dataset) -> tuple[np.ndarray | None, int]:
    """(image, label) the film watches: the first test image (the first training image if there is no test
    split), or (None, −1) when the dataset has no image in memory."""
    for x, y in ((dataset.x_test, dataset.y_test), (dataset.x_train, dataset.y_train)):
        if x is not None and len(x):
            return np.asarray(x[0]), int(y[0])
    return None, -1


@functools.cache
def film_recorder_class():
    """The FilmRecorder class (a keras.callbacks.Callback), made on first use: importing this module does not
    import Keras."""
    import keras

    class FilmRecorder(keras.callbacks.Callback):
        """A Keras callback filming training: a frame before the first epoch and after every epoch (see Film).
        Costs per epoch: reading the weights, histograms of them, one forward call on one probe image.
        Thread-safe: film() may be called from another thread while training runs."""

        def __init__(self, probe=None, probe_label: int = -1):
            super().__init__()
            self.probe = None if probe is None else np.asarray(probe, np.uint8)
            self.probe_label = int(probe_label)
            self._lock = threading.Lock()
            self._frames: list[dict] = []
            self._film: Film | None = None  # film() of the frames so far, made once per new frame

        def on_train_begin(self, logs=None):
            model = self.model
            self.convs = conv_layers(model)
            self.weighted = [layer.name for layer in model.layers if hasattr(layer, "kernel")]
            # Fixed edges per layer, from its starting weights: frames stay comparable.
            self.edges = {}
            for name in self.weighted:
                top = float(np.abs(model.get_layer(name).kernel.numpy()).max()) * FILM_RANGE or 1.0
                self.edges[name] = np.linspace(-top, top, FILM_BINS + 1).astype(np.float32)
            self.probe_model = None
            if self.convs and self.probe is not None and self.probe.shape == tuple(model.input_shape[1:]):
                self.probe_model = keras.Model(model.inputs[0], [model.get_layer(n).output for n in self.convs])
            with self._lock:
                self._frames, self._film = [], None
            self.batches = 0
            self._record(0)

        def on_epoch_begin(self, epoch, logs=None):
            self.batches = 0

        def on_train_batch_end(self, batch, logs=None):
            self.batches += 1

        def on_epoch_end(self, epoch, logs=None):
            self._record(epoch + 1)

        def _record(self, epoch: int) -> None:
            model = self.model
            frame = {"epoch": epoch, "batches": self.batches, "hist": {}, "outside": {}, "act": {}}
            if self.convs:
                frame["kernels"] = np.transpose(model.get_layer(self.convs[0]).kernel.numpy(), (3, 0, 1, 2))
            for name in self.weighted:
                weights, edges = model.get_layer(name).kernel.numpy().ravel(), self.edges[name]
                frame["outside"][name] = int(np.count_nonzero(np.abs(weights) > edges[-1]))
                frame["hist"][name] = np.histogram(np.clip(weights, edges[0], edges[-1]), edges)[0].astype(np.int32)
            if self.probe_model is not None:
                outs = self.probe_model(self.probe[None].astype(np.float32), training=False)
                outs = outs if isinstance(outs, (list, tuple)) else [outs]
                frame["act"] = {n: np.asarray(o)[0].astype(np.float16) for n, o in zip(self.convs, outs)}
            with self._lock:
                self._frames.append(frame)

        def __len__(self) -> int:
            with self._lock:
                return len(self._frames)

        def film(self) -> Film | None:
            """The frames recorded so far as a Film (None before training starts)."""
            with self._lock:
                frames = list(self._frames)
                if self._film is not None and len(self._film) == len(frames):
                    return self._film
            if not frames:
                return None
            kernels = np.stack([f["kernels"] for f in frames]) if "kernels" in frames[0] else np.zeros((len(frames), 0))
            probe = self.probe if self.probe_model is not None else np.zeros((0,), np.uint8)
            film = Film(np.array([f["epoch"] for f in frames]), np.array([f["batches"] for f in frames]),
                        self.convs[0] if self.convs else "", kernels, probe, self.probe_label,
                        {n: np.stack([f["act"][n] for f in frames]) for n in frames[0]["act"]},
                        {n: np.stack([f["hist"][n] for f in frames]) for n in self.weighted},
                        dict(self.edges),
                        {n: np.array([f["outside"][n] for f in frames], np.int32) for n in self.weighted})
            with self._lock:
                if len(self._frames) == len(frames):
                    self._film = film
            return film

        def to_bytes(self) -> bytes:
            film = self.film()
            if film is None:
                raise CnnError("the film has no frames: training never started")
            return film.to_bytes()

    return FilmRecorder

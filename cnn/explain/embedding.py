"""The test set as the network sees it: penultimate-layer features projected to 2-D (PCA at once; t-SNE in
a `TsneJob` thread that reports progress and can be stopped).
"""
from __future__ import annotations

import re
import sys
import threading
import time
from dataclasses import dataclass

import numpy as np

from cnn.core.compiled import batches, per_model
from cnn.core.errors import CnnError
from cnn.core.jobs import BackgroundJob
from cnn.explain.maximise import check_images

# ---------------------------------------------------------------------------
# The test set as the network sees it: penultimate-layer features projected to 2-D
# ---------------------------------------------------------------------------

# t-SNE's default sample (stratified by class). Measured by bench/features.py --tsne on the default model's
# test features, 1,000 iterations, on this project's busy 2-core machine: 2,000 points 37 CPU-s, 3,000 42,
# 5,000 64, 10,000 121 (wall time: 29 s for 3,000 when the machine was quiet; 2–4× that when shared). 3,000
# (300 a class) keeps every class's cluster visible and finishes in about half a minute.
TSNE_SIZE = 3000


@dataclass
class EmbeddingMap:
    """Points of a split laid out in 2-D by how the network's penultimate layer sees them."""

    method: str  # 'pca' or 'tsne'
    coords: np.ndarray  # (N, 2) float32
    indices: np.ndarray  # (N,) index of each point's image in the split (for hover/click → image)
    labels: np.ndarray  # (N,) true class
    predictions: np.ndarray  # (N,) the model's class
    confidence: np.ndarray  # (N,) the model's probability for its class
    explained: tuple[float, float] | None  # PCA: share of the features' variance along each axis
    seconds: float  # wall time of the projection (features excluded)

    @property
    def misclassified(self) -> np.ndarray:
        """(N,) True where the model is wrong."""
        return self.labels != self.predictions


@per_model
def _penultimate_fn(model):
    """A tf.function: images → (the output layer's input, its output)."""
    import keras
    import tensorflow as tf

    head = model.layers[-1]
    both = keras.Model(model.inputs[0], [head.input, head.output])
    return tf.function(lambda images: both(images, training=False),
                       input_signature=[tf.TensorSpec([None, *model.input_shape[1:]], tf.float32)])


def penultimate_features(model, x, batch_size: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """(features (N, D), probabilities (N, classes)) for uint8 images x: the input of the output layer (what
    the classifier separates) and its output, from one compiled forward pass per batch."""
    fn = _penultimate_fn(model)
    x = check_images(model, x)
    parts = [fn(np.asarray(chunk, np.float32)) for chunk in batches(x, batch_size)]
    return (np.concatenate([f.numpy() for f, _ in parts]), np.concatenate([p.numpy() for _, p in parts]))


def stratified_sample(labels, size: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of `size` of `labels`, each class keeping its share (all of them if size ≥ len)."""
    from sklearn.model_selection import train_test_split

    labels = np.asarray(labels)
    if size >= len(labels):
        return np.arange(len(labels))
    counts = np.bincount(labels)
    # A class with a single member cannot be split by class: fall back to a plain seeded sample then.
    stratify = labels if counts[counts > 0].min() >= 2 and size >= np.count_nonzero(counts) else None
    keep, _ = train_test_split(np.arange(len(labels)), train_size=size, stratify=stratify, random_state=seed)
    return np.sort(keep)


def project_pca(features) -> tuple[np.ndarray, tuple[float, float]]:
    """(N, 2) PCA coordinates of `features` (scikit-learn) and the variance share of each axis."""
    from sklearn.decomposition import PCA

    features = np.asarray(features)
    if len(features) < 3 or features.shape[1] < 2:
        raise CnnError(f"a 2-D map needs at least 3 images and 2 features per image; got {len(features)} images "
                       f"with {features.shape[1]} feature(s) from the layer before the output")
    pca = PCA(n_components=2, svd_solver="full")
    coords = pca.fit_transform(np.asarray(features, np.float64))
    return coords.astype(np.float32), tuple(float(v) for v in pca.explained_variance_ratio_)


class TsneStopped(CnnError):
    """t-SNE was stopped on request before it finished."""


class _ThreadStdout:
    """Stands in for sys.stdout: writes from a registered thread go to that thread's handler (here: t-SNE's
    verbose lines, turned into progress), every other write to the real stdout. scikit-learn's TSNE has no
    callback, but at verbose=2 it prints a line after finding neighbours and every 50 iterations."""

    _lock = threading.Lock()
    _routes: dict[int, object] = {}
    _installed: "_ThreadStdout | None" = None

    def __init__(self, real):
        self.real = real

    def write(self, text):
        handler = self._routes.get(threading.get_ident())
        return handler(text) if handler is not None else self.real.write(text)

    def flush(self):
        if threading.get_ident() not in self._routes:
            self.real.flush()

    def __getattr__(self, name):
        return getattr(self.real, name)

    @classmethod
    def route(cls, handler):
        """Send this thread's stdout to handler(text) until unroute()."""
        with cls._lock:
            cls._routes[threading.get_ident()] = handler
            if cls._installed is None or sys.stdout is not cls._installed:
                cls._installed = cls(sys.stdout)
                sys.stdout = cls._installed

    @classmethod
    def unroute(cls):
        with cls._lock:
            cls._routes.pop(threading.get_ident(), None)
            if not cls._routes and cls._installed is not None and sys.stdout is cls._installed:
                sys.stdout = cls._installed.real  # nobody else replaced it meanwhile: put the real one back
                cls._installed = None


_ITERATION = re.compile(r"\[t-SNE\] Iteration (\d+):")


def project_tsne(features, seed: int = 0, perplexity: float = 30.0, max_iter: int = 1000, on_progress=None,
                 stop=None) -> np.ndarray:
    """(N, 2) t-SNE coordinates (scikit-learn, Barnes-Hut, PCA start) of `features`, reduced to 50 dimensions
    by PCA first when wider. on_progress(fraction 0…1, message) as t-SNE reports; `stop` (anything with
    is_set()) ends it at its next report (every 50 iterations) with TsneStopped."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    features = np.asarray(features, np.float32)
    if len(features) < 5:
        raise CnnError(f"t-SNE needs at least 5 points; there are {len(features)}")
    if features.shape[1] > 50:
        features = PCA(n_components=50, random_state=seed).fit_transform(features)
    perplexity = min(perplexity, (len(features) - 1) / 3)  # scikit-learn requires perplexity < N
    # Progress: finding neighbours and their probabilities took under 1% of the time on 2,000–10,000 points
    # (bench/features.py --tsne); the rest is the iterations, reported every 50.
    neighbours_share = 0.01

    def report(fraction: float, message: str) -> None:
        if stop is not None and stop.is_set():
            raise TsneStopped("t-SNE was stopped before it finished")
        if on_progress is not None:
            on_progress(min(1.0, fraction), message)

    def read(text: str) -> None:
        for line in text.splitlines():
            if (found := _ITERATION.search(line)) is not None:
                done = int(found.group(1))
                report(neighbours_share + (1 - neighbours_share) * done / max_iter,
                       f"t-SNE: iteration {done:,} of at most {max_iter:,}")
            elif "Computed conditional probabilities" in line:
                report(neighbours_share, "t-SNE: neighbours found; arranging the points")
            elif "nearest neighbors" in line:
                report(0.0, f"t-SNE: finding each point's neighbours among {len(features):,}")

    tsne = TSNE(n_components=2, perplexity=perplexity, max_iter=max_iter, init="pca", random_state=seed,
                verbose=2)
    report(0.0, f"t-SNE: starting on {len(features):,} points")
    _ThreadStdout.route(read)
    try:
        coords = tsne.fit_transform(features)
    finally:
        _ThreadStdout.unroute()
    report(1.0, f"t-SNE: done after {tsne.n_iter_ + 1:,} iterations")
    return coords.astype(np.float32)


def embedding_map(model, x, y, method: str = "pca", size: int | None = None, seed: int = 0, on_progress=None,
                  stop=None, features=None) -> EmbeddingMap:
    """The split (x uint8 images, y labels) as the network sees it: its penultimate-layer features projected
    to 2-D by PCA (all points, at once) or t-SNE (`size` points, stratified by class; TSNE_SIZE by default).
    `features` = penultimate_features(model, x) if already computed. on_progress/stop: see project_tsne."""
    if method not in ("pca", "tsne"):
        raise CnnError(f"the map's method must be 'pca' or 't-SNE' ('tsne'), got {method!r}")
    y = np.asarray(y, dtype=np.int64)
    features, probabilities = penultimate_features(model, x) if features is None else features
    if len(features) != len(y):
        raise CnnError(f"{len(features):,} images but {len(y):,} labels")
    keep = np.arange(len(y)) if method == "pca" else stratified_sample(y, size or TSNE_SIZE, seed)
    start = time.perf_counter()
    if method == "pca":
        coords, explained = project_pca(features)
    else:
        coords, explained = project_tsne(features[keep], seed, on_progress=on_progress, stop=stop), None
    probabilities = probabilities[keep]
    return EmbeddingMap(method, coords, keep, y[keep], probabilities.argmax(axis=1).astype(np.int64),
                        probabilities.max(axis=1), explained, time.perf_counter() - start)


@dataclass(frozen=True)
class TsneSnapshot:
    """A consistent copy of a TsneJob's state."""

    state: str  # 'running', 'done', 'stopped' or 'failed'
    fraction: float  # 0…1
    message: str  # for people
    result: EmbeddingMap | None  # once done

    @property
    def running(self) -> bool:
        return self.state == "running"


class TsneJob(BackgroundJob):
    """embedding_map(method='tsne') in a daemon thread; snapshot() for a page to poll, stop() to end it at
    t-SNE's next report. The features are computed in the caller's thread (TensorFlow, fast)."""

    thread_name = "cnn-tsne"

    def __init__(self, model, x, y, size: int | None = None, seed: int = 0):
        super().__init__()
        self._features = penultimate_features(model, x)
        self.y, self.size, self.seed = np.asarray(y), size, seed
        self._state, self._fraction, self._message, self._result = "running", 0.0, "starting t-SNE…", None

    def preload(self) -> None:
        import sklearn.manifold  # noqa: F401 — see cnn.core.jobs

    def snapshot(self) -> TsneSnapshot:
        with self._lock:
            return TsneSnapshot(self._state, self._fraction, self._message, self._result)

    def _progress(self, fraction: float, message: str) -> None:
        with self._lock:
            self._fraction, self._message = fraction, message

    def _work(self) -> None:
        try:
            result = embedding_map(None, None, self.y, "tsne", self.size, self.seed, on_progress=self._progress,
                                   stop=self._stop, features=self._features)
        except TsneStopped as exc:
            state, message, result = "stopped", str(exc), None
        except Exception as exc:  # noqa: BLE001 — the page gets a message; the log gets the traceback
            import traceback

            traceback.print_exc()
            state, message, result = "failed", f"t-SNE failed: {type(exc).__name__}: {exc}", None
        else:
            state, message = "done", f"t-SNE of {len(result.indices):,} points in {result.seconds:.0f} s"
        with self._lock:
            self._state, self._message, self._result = state, message, result
            self._fraction = 1.0 if state == "done" else self._fraction

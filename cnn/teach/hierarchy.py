"""The Learn page's walk from the first to the last conv layer, with the lesson's words ("edges → parts →
objects") checked against what this model shows.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cnn.analysis.inference import conv_layers, predict_proba
from cnn.core.errors import CnnError
from cnn.core.text import probability_text
from cnn.explain.maximise import Ascent, Maximised, ReceptiveField, maximise, model_fields, start_images
from cnn.explain.patches import TopPatches, top_patches

# ---------------------------------------------------------------------------
# The hierarchy: the Learn page's walk from the first to the last conv layer, the lesson's words checked
# ---------------------------------------------------------------------------

ORIENTED = 0.5  # an image whose structure-tensor coherence reaches this is called oriented (stripes, edges)


def gray(images) -> np.ndarray:
    """(N, H, W) float64: the channel mean of (N, H, W, C) images."""
    return np.asarray(images, np.float64).mean(axis=-1)


def coherence(images) -> np.ndarray:
    """(N,) how much each image's gradients share one orientation, 0…1 (the structure tensor's
    (λ1−λ2)/(λ1+λ2) over the whole image): 1 for parallel stripes or a straight edge, near 0 for noise,
    blobs or crossing strokes; 0 for a flat image."""
    from scipy import ndimage

    g = gray(images)
    gx, gy = ndimage.sobel(g, axis=2), ndimage.sobel(g, axis=1)
    jxx, jyy, jxy = (gx * gx).sum(axis=(1, 2)), (gy * gy).sum(axis=(1, 2)), (gx * gy).sum(axis=(1, 2))
    return np.sqrt((jxx - jyy) ** 2 + 4 * jxy ** 2) / np.maximum(jxx + jyy, 1e-12)


def spatial_frequency(images) -> np.ndarray:
    """(N,) each image's power-weighted mean spatial frequency in cycles per pixel (0 … 0.71): fine stripes
    score high, broad shapes low; NaN for a flat image."""
    g = gray(images)
    g = g - g.mean(axis=(1, 2), keepdims=True)
    h, w = g.shape[1:]
    power = np.abs(np.fft.fft2(g * np.outer(np.hanning(h), np.hanning(w)))) ** 2  # windowed: no edge artefacts
    radius = np.hypot(*np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij"))
    total = power.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 1e-12, (power * radius).sum(axis=(1, 2)) / total, np.nan)


def contrast_share(x, patches: TopPatches) -> np.ndarray:
    """(F, k) the share of each top image's contrast — |pixel − the image's median|, i.e. a digit's ink —
    that lies inside its patch: how much of the object one value of the layer sees at its strongest."""
    images = gray(np.asarray(x)[patches.images.ravel()])  # (F·k, H, W)
    ink = np.abs(images - np.median(images, axis=(1, 2), keepdims=True))
    inside = np.zeros_like(ink, dtype=bool)
    for i, (top, left, h, w) in enumerate(patches.boxes.reshape(-1, 4)):
        inside[i, max(top, 0):max(top + h, 0), max(left, 0):max(left + w, 0)] = True
    share = (ink * inside).sum(axis=(1, 2)) / np.maximum(ink.sum(axis=(1, 2)), 1e-12)
    return share.reshape(patches.images.shape)


def likeness(images, means) -> np.ndarray:
    """(N,) how much each image looks like a class: its largest Pearson correlation with any of `means`, the
    average real image of each class (−1 … 1; a real digit scores high against its own class's average)."""
    a = gray(images).reshape(len(images), -1)
    b = gray(means[..., None] if means.ndim == 3 else means).reshape(len(means), -1)
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(a, axis=1)[:, None] * np.linalg.norm(b, axis=1)[None, :]
    corr = np.where(norms > 1e-12, a @ b.T / np.maximum(norms, 1e-12), 0.0)  # a flat image resembles nothing
    return corr.max(axis=1), corr


@dataclass
class LayerView:
    """One conv layer on the walk: what its filters look for, what excites them, and the measures."""

    name: str  # the conv layer's name
    depth: int  # 1 = the first conv layer
    field: ReceptiveField  # what one of its values sees
    maximised: Maximised  # the input each filter wants most
    patches: TopPatches  # the real patches that excite each filter most
    coherence: np.ndarray  # (F,) orientation of each filter's maximising image (see coherence())
    frequency: np.ndarray  # (F,) its spatial frequency, cycles per pixel
    likeness: np.ndarray  # (F,) how much it looks like the average real image of some class (see likeness())
    confidence: np.ndarray  # (F,) the model's top-class probability on it (compare: baseline on noise)
    ink_share: np.ndarray  # (F,) mean over its top patches: share of the image's ink the patch holds


@dataclass(frozen=True)
class Check:
    """One claim of the lesson, measured on this model."""

    claim: str  # the lesson's words
    measure: str  # what was measured, in plain words
    values: dict  # what was found: label → number (per layer, and the baselines)
    holds: bool | None  # True/False: what the numbers show for this model; None: they cannot tell
    verdict: str  # one or two sentences with the numbers


@dataclass
class Hierarchy:
    layers: list  # LayerView, first conv layer to last
    classes: Maximised  # the input each output class wants most
    class_likeness: np.ndarray  # (classes, classes) correlation of class image i with class j's average image
    baseline: dict  # the same measures on the starting noise and on real images, for comparison
    checks: list  # Check: the lesson's words against this model

    @property
    def class_match(self) -> np.ndarray:
        """(classes,) the class whose average real image each class's favourite image resembles most."""
        return self.class_likeness.argmax(axis=1)


def hierarchy(model, x, y, k: int = 9, ascent: Ascent | None = None, maximised: dict | None = None,
              patches: dict | None = None, classes: Maximised | None = None) -> Hierarchy:
    """Walk the model from its first to its last conv layer: each layer's receptive field, the images that
    excite its filters most (maximise) and its top real patches (top_patches over x), measured; then the
    lesson's "edges → parts → objects" checked against those measures (y: x's labels, for the class averages).
    Pass results already computed (maximised: layer → Maximised, patches: layer → TopPatches, classes) to
    reuse them."""
    names = conv_layers(model)
    if not names:
        raise CnnError("this model has no conv layer, so there is no hierarchy of filters to walk")
    x, y = np.asarray(x), np.asarray(y, dtype=np.int64)
    maximised = dict(maximised or {})
    for name in names:
        if name not in maximised:
            maximised[name] = maximise(model, name, ascent=ascent)
    patches = patches if patches is not None and all(n in patches for n in names) else top_patches(model, x, k)
    classes = classes or maximise(model, "output", ascent=ascent)
    fields = model_fields(model)
    # The average real image of each class: what "looks like a digit" is measured against.
    num_classes = classes.images.shape[0]
    means = np.stack([gray(x[y == c]).mean(axis=0) if np.any(y == c) else np.zeros(x.shape[1:3])
                      for c in range(num_classes)])
    views = []
    for depth, name in enumerate(names, start=1):
        images = maximised[name].images
        views.append(LayerView(name, depth, fields[name], maximised[name], patches[name], coherence(images),
                               spatial_frequency(images), likeness(images, means)[0],
                               predict_proba(model, images).max(axis=1), contrast_share(x, patches[name]).mean(axis=1)))
    # Baselines: where every ascent starts (noise), and real images.
    noise = np.round(start_images(model, range(64), (ascent or Ascent()).seed) * 255)
    real = x[:1000]
    baseline = {"noise coherence": float(np.median(coherence(noise))),
                "noise likeness": float(np.median(likeness(noise, means)[0])),
                "noise confidence": float(predict_proba(model, noise).max(axis=1).mean()),
                "real coherence": float(np.median(coherence(real))),
                "real likeness": float(np.median(likeness(real, means)[0])),
                "real confidence": float(predict_proba(model, real).max(axis=1).mean())}
    class_likeness = likeness(classes.images, means)[1]
    return Hierarchy(views, classes, class_likeness, baseline, _checks(views, class_likeness, baseline))


def _checks(views: list, class_likeness: np.ndarray, baseline: dict) -> list:
    first, last = views[0], views[-1]
    several = len(views) > 1
    checks = []

    # 1. Deeper layers see more of the image: the receptive field, and the ink of real digits it covers.
    sizes = [v.field.size for v in views]
    inks = [float(v.ink_share.mean()) for v in views]
    grows = all(b > a for a, b in zip(sizes, sizes[1:])) and all(b > a for a, b in zip(inks, inks[1:]))
    steps = "; ".join(f"{v.name} sees {v.field.size}×{v.field.size} px ({v.field.share:.0%} of the image) and holds "
                      f"{ink:.0%} of the object's ink (contrast) where it fires most" for v, ink in zip(views, inks))
    checks.append(Check(
        "each layer looks at a larger part of the image than the one before",
        "receptive-field size, and the share of a real image's ink inside each filter's top patches",
        {f"{v.name} field px": v.field.size for v in views} | {f"{v.name} ink share": i for v, i in zip(views, inks)},
        grows if several else None,
        f"{steps}." + ("" if several else " With one conv layer there is no deeper layer to compare.")))

    # 2. The first layer finds edges and strokes: its filters' favourite images are stripes of one direction.
    oriented = int(np.count_nonzero(first.coherence >= ORIENTED))
    count = len(first.coherence)
    checks.append(Check(
        "the first layer responds to edges and strokes",
        f"how much each first-layer filter's favourite image runs in one direction (structure-tensor coherence; "
        f"≥ {ORIENTED} = stripes or edges)",
        {f"{first.name} oriented filters": oriented,
         f"{first.name} median coherence": float(np.median(first.coherence)),
         "noise median coherence": baseline["noise coherence"], "real median coherence": baseline["real coherence"]},
        oriented >= count / 2,
        f"{oriented} of {count} filters of {first.name} are most excited by stripes of one direction (median "
        f"coherence {np.median(first.coherence):.2f}; the starting noise scores {baseline['noise coherence']:.2f}, "
        f"real images {baseline['real coherence']:.2f})" +
        (": edges and strokes." if oriented >= count / 2 else "; most respond to something else (blobs, brightness "
                                                              "or crossings).")))

    # 3. Later layers combine them into parts: their favourites run in fewer single directions.
    if several:
        mixed = float(np.median(last.coherence)) < float(np.median(first.coherence))
        checks.append(Check(
            "later layers combine edges into larger, more complex parts",
            "how much the favourite images run in one direction, first vs last conv layer (combinations of edges "
            "— curves, corners, crossings — run in several)",
            {f"{v.name} median coherence": float(np.median(v.coherence)) for v in views}
            | {f"{v.name} median frequency": float(np.nanmedian(v.frequency)) for v in views},
            mixed,
            f"median coherence {np.median(first.coherence):.2f} in {first.name}, {np.median(last.coherence):.2f} in "
            f"{last.name}: " + ("the deeper favourites mix directions over a larger field." if mixed else
                                "the deeper favourites run in one direction as much as the first layer's; this "
                                "model does not show it.")))
    else:
        checks.append(Check("later layers combine edges into larger, more complex parts", "—", {}, None,
                            "This model has one conv layer: there is no later layer to combine its edges."))

    # 4. Whole objects at the end: do the favourite images look more like real digits with depth, and do the
    #    classes' favourites look like their own class?
    matched = int(np.count_nonzero(class_likeness.argmax(axis=1) == np.arange(len(class_likeness))))
    classes_like = float(np.median(class_likeness.max(axis=1)))
    ladder = [float(np.median(v.likeness)) for v in views] + [classes_like]
    rising = all(b > a for a, b in zip(ladder, ladder[1:]))
    holds = rising and matched >= len(class_likeness) / 2
    per_layer = ", ".join(f"{v.name} {value:.2f}" for v, value in zip(views, ladder))
    trend = "rises with depth" if rising else "does not rise steadily with depth"
    near = classes_like >= baseline["real likeness"] / 2
    verdict = (f"Resemblance to the average image of a class {trend} ({per_layer}, the class images "
               f"{classes_like:.2f}) "
               f"{'and comes' if near else 'but stays far'} {'near' if near else 'below'} that of real images "
               f"({baseline['real likeness']:.2f}; noise {baseline['noise likeness']:.2f}); {matched} of "
               f"{len(class_likeness)} class images look most like their own class (chance: 1 in "
               f"{len(class_likeness)}). ")
    verdict += ("So here the favourites grow into whole objects with depth." if holds else
                "So this model's favourite inputs do not become recognisable objects: it tells the classes apart by "
                "patterns, not by whole-object templates.")
    if baseline["noise confidence"] > 0.9:
        verdict += (f" (Its confidence is no guide to what looks like an object: on grey noise it is on average "
                    f"{probability_text(baseline['noise confidence'])} sure of some class.)")
    checks.append(Check(
        "whole objects appear at the end",
        "how much the favourite images look like the average real image of some class (correlation), layer by "
        "layer up to the classes' own favourites; and whether each class's favourite looks most like its own class",
        {f"{v.name} median likeness": value for v, value in zip(views, ladder)}
        | {"classes median likeness": classes_like, "classes matched": matched,
           "real median likeness": baseline["real likeness"], "noise median likeness": baseline["noise likeness"]},
        holds, verdict))
    return checks

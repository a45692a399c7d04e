"""Your own classes: a dataset made in the app, example by example, kept as class folders.

    <root>/classes.json             {"kind": "drawings" | "photos"} — what the examples are (our file, read by schema)
    <root>/classes/<class>/<id>.png  one example: the model input it makes (28×28 grey or 32×32 colour)
    <root>/snapshots/<id>-my-classes.zip   the class folders as they were when a model was trained on them

Every example goes through the same vetting and preprocessing as Predict (cnn.data.preprocess.prepare with the
recipe for its kind) and is stored as what the model will see, named by its content's hash: no name a person or
a file gives ever becomes a path, except a class name that passed `check_class_name`. Writes are atomic (a temporary
file renamed), so a crash never leaves half an image. Training reads a snapshot: the held-out split a model was
tested on stays the same however the classes change afterwards.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import shutil
import time
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from cnn.core.errors import CnnError, DatasetError, EmptyImageError
from cnn.data.folders import find_class_root, inspect_images, unpack_zip
from cnn.data.preprocess import prepare
from cnn.model.spec import Augmentation, ModelSpec, TrainConfig, preset

KINDS = {  # what a class set holds → the input every example is made into
    "drawings": (28, 28, 1),  # drawn (or dark-on-light) shapes: cropped to the ink and centred, as MNIST digits
    "photos": (32, 32, 3),  # camera photos and pictures: centre-cropped and resized, in colour
}
MIN_CLASSES, MAX_CLASSES = 2, 10
MIN_EXAMPLES = 5  # per class before training: one in five is held out to test the model
SUGGESTED_EXAMPLES = 15  # per class: enough for a few shapes with augmentation (bench/own_classes.py)
MAX_EXAMPLES = 200  # per class (a class set is made by hand; more belongs in a .zip on Configure)
BALANCE = 2.0  # warn when the largest class has more than this many times the examples of the smallest
MAX_NAME = 24  # characters in a class name
SNAPSHOT_HOURS = 2  # a snapshot no saved model reads is kept this long (queued trainings are forgotten after 1 h)
FOLDER = "my-classes"  # the dataset's name in tables and the top folder of its .zip
_NAME = re.compile(r"^\w[\w \-]*$")  # letters (any script), digits, _ , space and -; no dot, no slash
_ID = re.compile(r"^[0-9a-f]{16}$")


def check_class_name(name) -> str:
    """A class name as it will be stored (stripped), or DatasetError saying what is wrong with it."""
    text = str(name).strip() if isinstance(name, str) else ""
    if not text:
        raise DatasetError("a class needs a name: type one, e.g. 'circle'")
    if len(text) > MAX_NAME:
        raise DatasetError(f"the class name is {len(text)} characters long; the most is {MAX_NAME}")
    if not _NAME.match(text):
        raise DatasetError(f"{text[:MAX_NAME]!r} cannot be a class name: use letters, digits, spaces, - and _ "
                           "(starting with a letter or digit)")
    return text


def name_from_folder(name: str, taken) -> str:
    """A class name made from an uploaded folder's name (which may be anything): cleaned, cut, and unique."""
    text = re.sub(r"[^\w \-]+", "-", str(name)).strip(" -_")[:MAX_NAME].strip(" -_") or "class"
    base, n = text, 1
    while text.casefold() in {t.casefold() for t in taken}:
        n += 1
        text = f"{base[:MAX_NAME - 3]}-{n}"
    return text


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.parent / f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.write_bytes(data)
    os.replace(tmp, path)  # a reader never sees half a file


def png_bytes(pixels: np.ndarray) -> bytes:
    """A model input (H, W, 1) or (H, W, 3) uint8 as PNG bytes."""
    array = np.asarray(pixels, np.uint8)
    image = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False)
    return out.getvalue()


@dataclass(frozen=True)
class Readiness:
    """Whether a class set can be trained on, and what to say about it."""

    problems: tuple  # why it cannot be trained yet (each says what to do)
    warnings: tuple  # what may make the model worse (imbalance), with the numbers
    held_out: int  # examples that will be held out to test the model
    trained_on: int  # examples it will learn from


class ClassSet:
    """One visitor's own classes, in `root` (created on first write)."""

    def __init__(self, root):
        self.root = Path(root)
        self.folder = self.root / "classes"

    # -- reading --------------------------------------------------------------------------------------------
    @property
    def kind(self) -> str:
        """'drawings' or 'photos' (our own manifest, read by schema: anything else means the default)."""
        try:
            kind = json.loads((self.root / "classes.json").read_text()).get("kind")
        except (OSError, ValueError, AttributeError):
            return "drawings"
        return kind if kind in KINDS else "drawings"

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return KINDS[self.kind]

    def classes(self) -> list[str]:
        """The class names, in the order a model's outputs will have them (sorted, as class folders are read)."""
        try:
            return sorted(p.name for p in self.folder.iterdir() if p.is_dir() and _NAME.match(p.name))
        except OSError:  # none yet, or all removed while we looked
            return []

    def examples(self, name: str) -> list[str]:
        """The ids of a class's examples, oldest first (none when the class is gone: another tab may remove it)."""
        try:
            entries = list(self._class_dir(name).iterdir())
        except OSError:
            return []
        found = []
        for p in entries:
            if p.suffix == ".png" and _ID.match(p.stem):
                try:
                    found.append((p.stat().st_mtime_ns, p.name, p.stem))
                except OSError:  # deleted while we looked
                    continue
        return [f[2] for f in sorted(found)]

    def counts(self) -> dict[str, int]:
        return {name: len(self.examples(name)) for name in self.classes()}

    def example_path(self, name: str, example: str) -> Path:
        if not _ID.match(str(example)):
            raise DatasetError(f"{str(example)[:20]!r} is not an example id")
        return self._class_dir(name) / f"{example}.png"

    def pixels(self, name: str, example: str) -> np.ndarray:
        """One stored example as the model sees it: (H, W, C) uint8."""
        with Image.open(self.example_path(name, example)) as image:
            array = np.asarray(image)
        return array[..., None] if array.ndim == 2 else array

    def example_bytes(self, name: str, example: str) -> bytes | None:
        """One stored example's PNG, or None when it is gone (deleted in another tab)."""
        try:
            return self.example_path(name, example).read_bytes()
        except OSError:
            return None

    def readiness(self) -> Readiness:
        counts = self.counts()
        problems, warnings = [], []
        if len(counts) < MIN_CLASSES:
            problems.append(f"add at least {MIN_CLASSES} classes (there {'is' if len(counts) == 1 else 'are'} "
                            f"{len(counts)})")
        thin = [f"{name!r} ({n})" for name, n in counts.items() if n < MIN_EXAMPLES]
        if thin:
            problems.append(f"every class needs at least {MIN_EXAMPLES} examples (one in five is held out to test "
                            f"the model); add more to {', '.join(thin)}")
        full = {name: n for name, n in counts.items() if n}  # an empty class is a problem above, not an imbalance
        if len(full) >= 2 and max(full.values()) > BALANCE * min(full.values()):
            big, small = max(full, key=full.get), min(full, key=full.get)
            warnings.append(f"the classes are unbalanced: {big!r} has {counts[big]} examples and {small!r} "
                            f"{counts[small]} ({counts[big] / counts[small]:.1f}×), so the model leans towards "
                            f"{big!r}; add examples to {small!r}")
        total = sum(counts.values())
        held = max(1, int(0.2 * total)) if total else 0
        return Readiness(tuple(problems), tuple(warnings), held, total - held)

    # -- writing --------------------------------------------------------------------------------------------
    def set_kind(self, kind: str) -> None:
        """Choose what the examples are; only while the set holds no example (their pixels are made for one)."""
        if kind not in KINDS:
            raise DatasetError(f"unknown kind {kind!r}: choose one of {', '.join(KINDS)}")
        if kind != self.kind and any(self.counts().values()):
            raise DatasetError(f"the classes hold {self.kind}; delete every example (or start again) before "
                               f"making them {kind}")
        self.root.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.root / "classes.json", json.dumps({"kind": kind}).encode())

    def add_class(self, name) -> str:
        name = check_class_name(name)
        existing = self.classes()
        if name.casefold() in {c.casefold() for c in existing}:
            raise DatasetError(f"there is already a class named {name!r}")
        if len(existing) >= MAX_CLASSES:
            raise DatasetError(f"a class set holds at most {MAX_CLASSES} classes; remove one first")
        self._class_dir(name).mkdir(parents=True, exist_ok=True)
        return name

    def rename_class(self, old: str, new) -> str:
        new = check_class_name(new)
        source = self._existing(old)
        if new != old and new.casefold() in {c.casefold() for c in self.classes() if c != old}:
            raise DatasetError(f"there is already a class named {new!r}")
        try:
            os.replace(source, self._class_dir(new))
        except OSError:  # removed or renamed meanwhile (another tab), or the new name was just taken there
            raise DatasetError(f"{old!r} could not be renamed: it changed meanwhile (another tab?); look again") from None
        return new

    def remove_class(self, name: str) -> None:
        folder = self._existing(name)
        shutil.rmtree(folder, ignore_errors=True)  # another tab may be removing it too

    def add_example(self, name: str, pixels: np.ndarray) -> tuple[str, bool]:
        """Store one model input (already prepared) in class `name`: (its id, whether it is new — the same picture
        twice is kept once)."""
        folder = self._existing(name)
        array = np.asarray(pixels)
        if array.shape != self.input_shape or array.dtype != np.uint8:
            raise DatasetError(f"an example of these {self.kind} must be {'×'.join(map(str, self.input_shape))} "
                               f"uint8, not {'×'.join(map(str, array.shape))} {array.dtype}")
        data = png_bytes(array)
        example = hashlib.sha256(data).hexdigest()[:16]
        path = folder / f"{example}.png"
        if path.exists():
            return example, False
        if len(self.examples(name)) >= MAX_EXAMPLES:
            raise DatasetError(f"{name!r} holds {MAX_EXAMPLES} examples, the most a class may; delete some first")
        try:
            _atomic_write(path, data)
        except FileNotFoundError:  # the class was removed meanwhile (another tab)
            raise DatasetError(f"there is no class named {name!r} any more") from None
        return example, True

    def prepare(self, source) -> tuple[list, np.ndarray]:
        """(the preprocessing steps, the model input) for a picture (bytes, PIL image or array) — Predict's
        vetting and recipe for this set's kind. ImageError (EmptyImageError when blank) says what is wrong."""
        return prepare(source, self.input_shape)

    def add_picture(self, name: str, source) -> tuple[str, bool]:
        """Prepare a picture as Predict would and store it in class `name`: (its id, whether it is new)."""
        self._existing(name)
        return self.add_example(name, self.prepare(source)[1])

    def remove_example(self, name: str, example: str) -> None:
        self.example_path(name, example).unlink(missing_ok=True)

    def clear(self) -> None:
        """Every class and example gone (the snapshots that trained models stay)."""
        shutil.rmtree(self.folder, ignore_errors=True)

    # -- as a dataset ---------------------------------------------------------------------------------------
    def zip_bytes(self) -> bytes:
        """The class folders as a .zip (my-classes/<class>/<id>.png), as Configure reads them."""
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:  # PNGs are compressed already
            for name in self.classes():
                for example in self.examples(name):
                    data = self.example_bytes(name, example)
                    if data is None:  # deleted meanwhile (another tab): the .zip holds what is left
                        continue
                    info = zipfile.ZipInfo(f"{FOLDER}/{name}/{example}.png", date_time=(2026, 1, 1, 0, 0, 0))
                    archive.writestr(info, data)
        return out.getvalue()

    def snapshot(self) -> Path:
        """The class folders as they are now, kept as a .zip named by its content (the same classes → the same
        file): what a training reads, so that its held-out split can be read again later."""
        problems = self.readiness().problems
        if problems:
            raise DatasetError("these classes cannot be trained on yet: " + "; ".join(problems))
        data = self.zip_bytes()
        folder = self.root / "snapshots"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{hashlib.sha256(data).hexdigest()[:16]}-{FOLDER}.zip"
        if path.exists():
            os.utime(path)  # read again now: as fresh as a new one (prune_snapshots)
        else:
            _atomic_write(path, data)
        return path

    def prune_snapshots(self, keep, older_than: float = SNAPSHOT_HOURS * 3600) -> int:
        """Delete the snapshots no saved model reads (`keep`: the paths saved models read) and nothing has made
        for `older_than` seconds — a training queued or running in another tab reads one made within the hour;
        returns how many went. They count in a hosted visitor's quota."""
        keep = {Path(p).resolve() for p in keep if p}
        gone, now = 0, time.time()
        for path in (self.root / "snapshots").glob(f"*-{FOLDER}.zip"):
            try:
                fresh = now - path.stat().st_mtime < older_than
            except OSError:
                continue
            if path.resolve() not in keep and not fresh:
                path.unlink(missing_ok=True)
                gone += 1
        return gone

    def import_folders(self, root: Path, classes: list[str], files: list, labels: list) -> tuple[int, list[str]]:
        """Add vetted images (cnn.data.folders.inspect_images's files and labels under class folders `classes`)
        to this set, each prepared as Predict would: (examples added, notes for what was skipped or renamed)."""
        notes, added, names = [], 0, {}
        existing = self.classes()
        new = [c for c in dict.fromkeys(classes) if c not in existing]
        if len(existing) + len(new) > MAX_CLASSES:
            raise DatasetError(f"the .zip has {len(classes)} classes and this set {len(existing)}; a class set holds "
                               f"at most {MAX_CLASSES}")
        for folder in classes:
            if folder in existing:
                names[folder] = folder
                continue
            try:
                names[folder] = self.add_class(folder)
            except DatasetError:
                names[folder] = self.add_class(name_from_folder(folder, self.classes()))
                notes.append(f"the folder {folder[:40]!r} became the class {names[folder]!r}")
        refused, same = 0, 0
        room = {name: MAX_EXAMPLES - len(self.examples(name)) for name in names.values()}
        left_out = dict.fromkeys(names.values(), 0)
        for path, label in zip(files, labels):
            name = names[classes[label]]
            if room[name] <= 0:  # this class is full: counted, not prepared; the other classes still get theirs
                left_out[name] += 1
                continue
            try:
                new = self.add_picture(name, Path(path))[1]
            except EmptyImageError:
                refused += 1
            except DatasetError as exc:  # e.g. the class was removed meanwhile (another tab)
                room[name] = 0
                notes.append(str(exc))
            except CnnError:
                refused += 1
            else:
                added += new
                same += not new
                room[name] -= new
        notes += [f"{name!r} is full ({MAX_EXAMPLES} examples): {n} of its pictures were left out"
                  for name, n in left_out.items() if n]
        if same:
            notes.append(f"{same} picture(s) were already examples and were kept once")
        if refused:
            notes.append(f"{refused} picture(s) had nothing to learn from (blank, or no ink found) and were left out")
        return added, notes

    def import_zip(self, path) -> tuple[int, list[str]]:
        """Add the images of a class-folder .zip (checked to the bottom as Configure checks one: its directory,
        then every image's header) to this set: (examples added, notes)."""
        root, classes = find_class_root(unpack_zip(Path(path)))
        if len(classes) > MAX_CLASSES:  # said before any image is read
            raise DatasetError(f"the .zip has {len(classes)} class folders; a class set holds at most {MAX_CLASSES}")
        found = inspect_images(root, classes, max_side=4096)
        if len(found.files) > MAX_CLASSES * MAX_EXAMPLES:  # said before any image is prepared
            raise DatasetError(f"the .zip holds {len(found.files):,} images; a class set holds at most "
                               f"{MAX_CLASSES} classes × {MAX_EXAMPLES} = {MAX_CLASSES * MAX_EXAMPLES:,} examples. "
                               "Train on it as a dataset on Configure instead")
        added, notes = self.import_folders(root, classes, found.files, found.labels)
        if found.skipped:
            notes.insert(0, f"{len(found.skipped)} file(s) were not usable images and were skipped")
        return added, notes

    # -- helpers --------------------------------------------------------------------------------------------
    def _class_dir(self, name: str) -> Path:
        return self.folder / check_class_name(name)

    def _existing(self, name: str) -> Path:
        folder = self._class_dir(name)
        if not folder.is_dir():
            raise DatasetError(f"there is no class named {name!r}")
        return folder


def spec_for(kind: str, num_classes: int, train_images: int, start_from: str = "scratch",
             layers=None) -> ModelSpec:
    """The model and training for a small hand-made set: the default preset's layers, small batches for enough
    steps (about 300: on 8 hands of 3 shapes × 15 drawings, 150 steps read 90–100% of new drawings, 300 steps
    98–100%, in 4.6 s), and augmentation (shift, rotation, zoom) while there are fewer than 100 examples a class —
    bench/own_classes.py measures it (see the README). `start_from` a shipped model (its `layers`, for
    drawings): its filters are copied and frozen, its batch norms adjust, and the rest learns (transfer learning)."""
    spec = preset("default", KINDS[kind], num_classes)
    if start_from != "scratch":
        if kind != "drawings" or not layers:
            raise DatasetError(f"only drawings (28×28 grey, as MNIST) can start from {start_from}'s filters")
        spec.layers = list(layers)
    batch = 16
    # ~300 steps even for the smallest sets (up to 300 epochs). 5 drawings a class, 3 hands, same run
    # (bench/own_classes.py --engine --examples 5 --seeds 3): 120 epochs read 93.3% worst / 97.0% mean of new drawings
    # in 6.2 s, 300 epochs 96.7 / 98.1% in 11.4 s; with transfer 96.7 / 98.9% → 100 / 100%.
    epochs = int(min(300, max(10, math.ceil(300 * batch / max(1, train_images)))))
    small = train_images < 100 * num_classes
    spec.train = TrainConfig(optimizer="adam", learning_rate=3e-3, lr_schedule="cosine", batch_size=batch,
                             epochs=epochs, validation_split=0.0, seed=0, start_from=start_from,
                             augmentation=Augmentation(shift=0.1, rotation=15.0, zoom=0.15) if small else Augmentation())
    spec.preset = "default" if start_from == "scratch" else "custom"
    return spec


@dataclass(frozen=True)
class Trained:
    """A saved model trained on a snapshot of a class set, as the page lists it."""

    name: str
    snapshot: str  # the snapshot's file name: models with the same one learned from the same examples
    start_from: str  # "scratch" or the shipped model whose filters it started from
    trained_on: int
    held_out: int
    accuracy: float | None  # on its held-out examples
    seconds: float | None  # training time


def trained_models(root, infos) -> list[Trained]:
    """The saved models (registry ModelInfo-like `infos`) trained on a snapshot under `root`, newest first."""
    folder = (Path(root) / "snapshots").resolve()
    found = []
    for info in sorted(infos, key=lambda i: i.created, reverse=True):
        source = Path(info.dataset_source).resolve() if info.dataset_source else None
        if source is None or source.parent != folder:
            continue
        found.append(Trained(info.name, source.name, str(info.spec.get("train", {}).get("start_from", "scratch")),
                             int(info.metrics.get("num_train", 0)), int(info.metrics.get("num_test", 0)),
                             info.test_accuracy, info.metrics.get("train_seconds")))
    return found


def transfer_difference(trained: list[Trained], few: int = 20) -> str | None:
    """What starting from shipped filters changed, for the newest examples trained both ways (with a word of
    caution when fewer than `few` were held out)."""
    for model in trained:
        same = [t for t in trained if t.snapshot == model.snapshot and t.accuracy is not None]
        scratch = [t for t in same if t.start_from == "scratch"]
        transfer = [t for t in same if t.start_from != "scratch"]
        if scratch and transfer:
            a, b = transfer[0], scratch[0]  # the newest of each
            return (f"On the same {a.trained_on} examples, {a.name} (from {a.start_from}'s filters) read "
                    f"{a.accuracy:.0%} of the {a.held_out} held out and {b.name} (from scratch) {b.accuracy:.0%}"
                    + (f"; trained in {a.seconds:.0f} s and {b.seconds:.0f} s" if a.seconds and b.seconds else "")
                    + "." + (f" With {a.held_out} held out, one picture moves the accuracy by {100 / a.held_out:.0f} "
                             "points: add examples to tell the two apart." if 0 < a.held_out < few else ""))
    return None

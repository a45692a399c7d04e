"""How much memory a training run needs, and the budget it must fit in — checked before training starts.

    total = runtime + parameters + data + training batch + evaluation batch

- runtime: what tracing the model and running the tf.data pipeline add whatever the model (RUNTIME_BYTES);
- parameters: float32 weights, their gradients, the optimizer's slots (Adam: 2), and the copies train() and
  save_model() make (the last good weights for a NaN rollback, the optimizer-free clone that is saved);
- training batch: every layer's output for the batch, kept for the backward pass, and the gradients flowing
  back through them: ACTIVATION_FACTOR × activations × batch × 4 bytes;
- evaluation batch: the forward pass of one test/validation batch of up to EVAL_BATCH images (a layer's input
  and output at once). It is added, not overlapped: the allocator keeps what training used;
- data: the images held in memory — a dataset's arrays and the copies the training pipeline makes — or a
  streamed dataset's shuffle buffer, plus the held-out split.

The factors were calibrated against peak RSS by bench/memory_estimate.py (9 runs from 85 MiB to 1.4 GiB:
estimate/measured 0.91–1.31, within a few MiB on the larger runs).

The budget is CNN_MEMORY_BUDGET_MB if set, else half of this machine's memory (or of the container's memory
limit): a training must leave room for the app, TensorFlow itself and other people's runs. Only Python
arithmetic here: the Configure page can show the estimate before anything is built.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from cnn.core.errors import TrainingError
from cnn.model.spec import validate

FLOAT = 4  # bytes of a float32
ACTIVATION_FACTOR = 1.5  # float32s held per activation value in training: the output, then its gradient (calibrated)
EVAL_FACTOR = 1.3  # the same for a forward-only pass of input + output of the widest layer pair (calibrated)
PARAMETER_COPIES = 6  # weights, gradients, the kept good weights, the saved clone, its source and build temporaries
RUNTIME_BYTES = 64 * 2 ** 20  # tracing, tf.data and thread buffers whatever the model (calibrated)
EVAL_BATCH = 1000  # images per forward pass in evaluate() and validation (cnn.analysis.metrics, cnn.run.train)
SHUFFLE_BUFFER = 4096  # images a streamed dataset's shuffle buffer holds (cnn.run.train)
IN_MEMORY_COPIES = 3  # an in-memory training split lives 3×: the arrays, the split's copies, the tf.constant
GiB = 2 ** 30


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a training run needs, by part."""

    activations: int  # one training batch: outputs kept for the backward pass and their gradients
    parameters: int  # weights, gradients, optimizer slots and the copies training and saving make
    data: int  # images in memory (dataset arrays and pipeline copies, or a stream's buffer) and the test split
    evaluation: int  # one evaluation/validation batch's forward pass
    runtime: int  # tracing, pipelines, threads: the same for every model
    batch_size: int
    optimizer: str

    @property
    def total(self) -> int:
        return self.runtime + self.parameters + self.data + self.activations + self.evaluation

    def text(self) -> str:
        """'~49.7 GiB: activations 48.9 GiB for batch 4,096, parameters and adam state 0.2 GiB, …'."""
        return (f"~{_gib(self.total)}: activations {_gib(self.activations)} for batch {self.batch_size:,}, "
                f"parameters and {self.optimizer} state {_gib(self.parameters)}, evaluation batch "
                f"{_gib(self.evaluation)}, data {_gib(self.data)}, runtime {_gib(self.runtime)}")


def _gib(n: float) -> str:
    return f"{n / GiB:.1f} GiB" if n >= 0.1 * GiB else f"{n / 2 ** 20:.0f} MiB"


def estimate(analysis, batch_size: int, optimizer: str = "adam", train_images: int = 0, image_bytes: int = 0,
             test_images: int | None = None, streamed: bool = False) -> MemoryEstimate:
    """The memory of training a validated spec (`analysis` = cnn.model.spec.validate(spec)) at `batch_size`.

    `train_images` and `test_images` of `image_bytes` each (uint8: height × width × channels) are what the
    dataset holds (test_images None: the model alone, evaluated in full batches); a `streamed` training
    split holds only its shuffle buffer in memory."""
    slots = {"adam": 2, "adamw": 2, "rmsprop": 1, "sgd": 1}.get(optimizer, 2)
    parameters = analysis.params * FLOAT * (PARAMETER_COPIES + slots)
    sizes = [info.activations for info in analysis.layers]
    activations = int(sum(sizes) * batch_size * FLOAT * ACTIVATION_FACTOR)
    # A forward pass only needs a layer's input and output at once; validation batches come from the
    # training images, test batches from the test split.
    widest = max(a + b for a, b in zip(sizes, sizes[1:])) if len(sizes) > 1 else sizes[0]
    eval_images = EVAL_BATCH if test_images is None else max(test_images, train_images // 10, 1)
    evaluation = int(widest * min(EVAL_BATCH, eval_images) * FLOAT * EVAL_FACTOR)
    # Streamed: the shuffle buffer's images, and as many again when they all fit in it (cached, see cnn.run.train).
    held = (2 * train_images if train_images <= SHUFFLE_BUFFER else SHUFFLE_BUFFER) if streamed else \
        train_images * IN_MEMORY_COPIES
    data = (held + (test_images or 0)) * image_bytes
    return MemoryEstimate(activations, parameters, data, evaluation, RUNTIME_BYTES, batch_size, optimizer)


def estimate_for(spec, dataset=None, batch_size: int | None = None) -> MemoryEstimate:
    """The estimate for training `spec` (its own batch size and optimizer unless given) on `dataset`: a loaded
    cnn.data.datasets.Dataset, a catalogue entry (cnn.data.datasets.DatasetInfo: its sizes, nothing loaded), or
    None (the model alone). SpecError if the spec is impossible."""
    return estimate(validate(spec), batch_size or spec.train.batch_size, spec.train.optimizer,
                    **dataset_sizes(spec, dataset))


def dataset_sizes(spec, dataset) -> dict:
    """The keyword arguments of `estimate` that describe `dataset` (see estimate_for; none for None)."""
    if dataset is None:
        return {}
    if isinstance(dataset, str):  # the catalogue lives a layer up (cnn.data): its entry is passed, not a name
        raise TypeError(f"pass the dataset or its catalogue entry (cnn.data.datasets.CATALOG[{dataset!r}]), not a name")
    image_bytes = math.prod(spec.input_shape)
    if hasattr(dataset, "train_size"):  # a catalogue entry's sizes: MNIST-like test splits hold 10,000 images
        return {"train_images": dataset.train_size, "image_bytes": image_bytes, "test_images": 10_000}
    return {"train_images": dataset.num_train, "image_bytes": image_bytes, "test_images": dataset.num_test,
            "streamed": dataset.streamed}


# ---------------------------------------------------------------------------
# The budget
# ---------------------------------------------------------------------------

def machine_memory() -> int:
    """Bytes of memory this process may use at most: the machine's (MemTotal), or the container's limit
    (cgroup v2 memory.max / v1 limit_in_bytes) when smaller."""
    total = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                total = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    if not total:
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            total = 8 * GiB  # unknown platform: assume a small laptop
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and 0 < int(text) < total:
            total = int(text)
    return total


def memory_budget() -> int:
    """Bytes a training may need: CNN_MEMORY_BUDGET_MB (MiB) if set, else half of machine_memory()."""
    value = os.environ.get("CNN_MEMORY_BUDGET_MB", "").strip()
    if value:
        try:
            mb = float(value)
        except ValueError:
            raise TrainingError(f"CNN_MEMORY_BUDGET_MB must be a number of megabytes, got {value!r}") from None
        if not math.isfinite(mb) or mb <= 0:
            raise TrainingError(f"CNN_MEMORY_BUDGET_MB must be a positive number of megabytes, got {value!r}")
        return int(mb * 2 ** 20)
    return machine_memory() // 2


def largest_batch(analysis, budget: int, optimizer: str = "adam", **data) -> int:
    """The largest batch size (0 if none) whose training fits `budget`."""
    one = estimate(analysis, 1, optimizer, **data)
    room = budget - (one.total - one.activations)
    return max(0, int(room // max(one.activations, 1)))


def check_memory(spec, dataset=None, batch_size: int | None = None, budget: int | None = None) -> MemoryEstimate:
    """The estimate, or TrainingError with the numbers and what to change when it exceeds the budget."""
    need = estimate_for(spec, dataset, batch_size)
    budget = memory_budget() if budget is None else budget
    if need.total <= budget:
        return need
    fits = largest_batch(validate(spec), budget, spec.train.optimizer, **dataset_sizes(spec, dataset))
    advice = f"use a batch size of at most {fits:,}, or fewer filters/units" if fits else \
        "even a batch of 1 does not fit: use fewer filters/units or fewer images, or raise CNN_MEMORY_BUDGET_MB"
    raise TrainingError(f"this training needs {need.text()}; the memory budget is {_gib(budget)} "
                        f"(CNN_MEMORY_BUDGET_MB) — {advice}")

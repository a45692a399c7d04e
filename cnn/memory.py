"""How much memory a training run needs, and the budget it must fit in — checked before training starts.

    total = parameters + data + max(training batch, evaluation batch)

- parameters: float32 weights, their gradients, the optimizer's slots (Adam: 2) and the copy of the last good
  weights train() keeps (for a NaN-loss rollback);
- training batch: every layer's output for the batch, kept for the backward pass, plus the gradients and
  TensorFlow's working buffers: ACTIVATION_FACTOR × activations × batch × 4 bytes (calibrated against
  peak RSS by bench/memory_estimate.py);
- evaluation batch: the forward pass of one validation/test batch of EVAL_BATCH images (layer by layer);
- data: the images held in memory — a dataset's arrays and the copies the training pipeline makes — or a
  streamed dataset's shuffle buffer, plus the held-out split.

The budget is CNN_MEMORY_BUDGET_MB if set, else half of this machine's memory (or of the container's memory
limit): a training must leave room for the app, TensorFlow itself and other people's runs. Only Python
arithmetic here: the Configure page can show the estimate before anything is built.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from cnn.errors import TrainingError

FLOAT = 4  # bytes of a float32
ACTIVATION_FACTOR = 2.0  # bytes kept per activation value, in float32s: the output and its gradient (calibrated)
EVAL_BATCH = 1000  # images per forward pass in evaluate() and validation (cnn.metrics, cnn.train)
SHUFFLE_BUFFER = 4096  # images a streamed dataset's shuffle buffer holds (cnn.train)
IN_MEMORY_COPIES = 3  # an in-memory training split lives 3×: the arrays, the split's copies, the tf.constant
GiB = 2 ** 30


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a training run needs, by part."""

    activations: int  # one training batch: outputs kept for the backward pass, gradients, working buffers
    parameters: int  # weights, gradients, optimizer slots and the kept copy of the last good weights
    data: int  # images in memory (dataset arrays and pipeline copies, or a stream's buffer) and the test split
    evaluation: int  # one evaluation batch's forward pass (after training: it reuses the training batch's memory)
    batch_size: int
    optimizer: str

    @property
    def total(self) -> int:
        return self.parameters + self.data + max(self.activations, self.evaluation)

    def text(self) -> str:
        """'~49.7 GiB: activations 48.9 GiB for batch 4096, parameters and optimizer 0.0 GiB, data 0.7 GiB'."""
        return (f"~{_gib(self.total)}: activations {_gib(self.activations)} for batch {self.batch_size:,}, "
                f"parameters and {self.optimizer} state {_gib(self.parameters)}, data {_gib(self.data)}"
                + (f", evaluation batch {_gib(self.evaluation)}" if self.evaluation > self.activations else ""))


def _gib(n: float) -> str:
    return f"{n / GiB:.1f} GiB" if n >= 0.1 * GiB else f"{n / 2 ** 20:.0f} MiB"


def estimate(analysis, batch_size: int, optimizer: str = "adam", train_images: int = 0, image_bytes: int = 0,
             test_images: int = 0, streamed: bool = False) -> MemoryEstimate:
    """The memory of training a validated spec (`analysis` = cnn.spec.validate(spec)) at `batch_size`.

    `train_images` and `test_images` of `image_bytes` each (uint8: height × width × channels) are what the
    dataset holds; a `streamed` training split holds only its shuffle buffer in memory."""
    slots = {"adam": 2, "adamw": 2, "rmsprop": 1, "sgd": 1}.get(optimizer, 2)
    parameters = analysis.params * FLOAT * (3 + slots)  # weights, gradients, slots, the kept good weights
    per_image = sum(info.activations for info in analysis.layers)
    activations = int(per_image * batch_size * FLOAT * ACTIVATION_FACTOR)
    # A forward pass only needs a layer's input and output at once.
    sizes = [info.activations for info in analysis.layers]
    widest = max(a + b for a, b in zip(sizes, sizes[1:])) if len(sizes) > 1 else sizes[0]
    evaluation = widest * min(EVAL_BATCH, max(test_images, 1)) * FLOAT
    held = min(train_images, SHUFFLE_BUFFER) if streamed else train_images * IN_MEMORY_COPIES
    data = (held + test_images) * image_bytes
    return MemoryEstimate(activations, parameters, data, evaluation, batch_size, optimizer)


def estimate_for(spec, dataset=None, batch_size: int | None = None) -> MemoryEstimate:
    """The estimate for training `spec` (its own batch size and optimizer unless given) on `dataset` (a
    cnn.data.Dataset; None = the model alone). SpecError if the spec is impossible."""
    from cnn.spec import validate

    analysis = validate(spec)
    image_bytes = math.prod(spec.input_shape)
    if dataset is None:
        return estimate(analysis, batch_size or spec.train.batch_size, spec.train.optimizer)
    return estimate(analysis, batch_size or spec.train.batch_size, spec.train.optimizer, dataset.num_train,
                    image_bytes, dataset.num_test, dataset.streamed)


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
    fixed = estimate(analysis, 1, optimizer, **data)
    per_image = fixed.activations
    room = budget - fixed.parameters - fixed.data
    if room < per_image or fixed.evaluation + fixed.parameters + fixed.data > budget:
        return 0
    return int(room // per_image)


def check_memory(spec, dataset=None, batch_size: int | None = None, budget: int | None = None) -> MemoryEstimate:
    """The estimate, or TrainingError with the numbers and what to change when it exceeds the budget."""
    from cnn.spec import validate

    need = estimate_for(spec, dataset, batch_size)
    budget = memory_budget() if budget is None else budget
    if need.total <= budget:
        return need
    analysis = validate(spec)
    data = {} if dataset is None else {"train_images": dataset.num_train, "image_bytes": math.prod(spec.input_shape),
                                       "test_images": dataset.num_test, "streamed": dataset.streamed}
    fits = largest_batch(analysis, budget, spec.train.optimizer, **data)
    advice = (f"use a batch size of at most {fits:,}" if fits else "use fewer or smaller layers") + \
        " or fewer filters/units"
    raise TrainingError(f"this training needs {need.text()}; the memory budget is {_gib(budget)} "
                        f"(CNN_MEMORY_BUDGET_MB) — {advice}")

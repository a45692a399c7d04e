"""Training across devices, processes and machines on tf.distribute: a strategy by name, and the TF_CONFIG
each worker of a multi-worker run reads.

    one           the default strategy: this process, one device
    mirrored      MirroredStrategy: every GPU of this machine (or its CPU), gradients all-reduced
    multi-worker  MultiWorkerMirroredStrategy: one process per machine (or per port on one machine), each
                  told the cluster by the standard TF_CONFIG environment variable, e.g.
                  {"cluster": {"worker": ["10.0.0.1:12345", "10.0.0.2:12345"]}, "task": {"type": "worker", "index": 0}}

Every worker runs the same `python -m cnn train …` (with its own --worker-index); worker 0 is the chief and
the only one that saves. A multi-worker strategy must be made before TensorFlow runs anything else.
"""
from __future__ import annotations

import json
import os
import re

from cnn.core.errors import TrainingError

STRATEGIES = ("one", "mirrored", "multi-worker")
ADDRESS_RE = re.compile(r"^(?P<host>[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:]+\]):(?P<port>\d{1,5})$")
COLLECTIVE_TIMEOUT = 600  # seconds one all-reduce may wait for the slowest worker before the run fails


def parse_workers(text: str) -> list[str]:
    """'host:port,host:port' → ['host:port', 'host:port'], each address checked."""
    workers = [w.strip() for w in str(text).split(",") if w.strip()]
    if not workers:
        raise TrainingError("--workers needs at least one host:port, e.g. --workers localhost:12345,localhost:12346")
    for address in workers:
        match = ADDRESS_RE.match(address)
        if match is None or not 1 <= int(match["port"]) <= 65535:
            raise TrainingError(f"worker address {address!r} is not host:port with a port 1…65535 "
                                "(e.g. 10.0.0.2:12345)")
    if len(set(workers)) != len(workers):
        raise TrainingError(f"--workers lists an address twice: {', '.join(workers)}; each worker needs its own")
    return workers


def tf_config(workers: list[str], index: int) -> dict:
    """The TF_CONFIG of worker `index` of the cluster `workers` (worker 0 is the chief)."""
    if not 0 <= index < len(workers):
        raise TrainingError(f"--worker-index {index} is out of range: the cluster has {len(workers)} worker(s), "
                            f"numbered 0…{len(workers) - 1}")
    return {"cluster": {"worker": list(workers)}, "task": {"type": "worker", "index": index}}


def set_tf_config(workers: list[str], index: int) -> dict:
    """Write TF_CONFIG for this process (before make_strategy) and return it."""
    config = tf_config(workers, index)
    os.environ["TF_CONFIG"] = json.dumps(config)
    return config


def read_tf_config() -> dict:
    """This process's TF_CONFIG, checked: a cluster of host:port lists and a task that is one of its members."""
    text = os.environ.get("TF_CONFIG", "").strip()
    if not text:
        raise TrainingError("--strategy multi-worker needs the cluster: set TF_CONFIG, or pass --workers "
                            "host:port,host:port --worker-index i (the same --workers on every worker)")
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TrainingError(f"TF_CONFIG is not valid JSON ({exc.msg} at character {exc.pos})") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not cluster or not isinstance(task, dict):
        raise TrainingError('TF_CONFIG needs "cluster" (e.g. {"worker": ["host:port", ...]}) and "task" '
                            '(e.g. {"type": "worker", "index": 0})')
    for role, addresses in cluster.items():
        if not isinstance(addresses, list) or not addresses:
            raise TrainingError(f"TF_CONFIG cluster {role!r} must be a list of host:port addresses")
        parse_workers(",".join(map(str, addresses)))
    role, index = task.get("type"), task.get("index", 0)
    if role not in cluster or not isinstance(index, int) or not 0 <= index < len(cluster[role]):
        raise TrainingError(f"TF_CONFIG task {task} is not a member of the cluster "
                            f"({', '.join(f'{r}: {len(a)}' for r, a in cluster.items())})")
    return config


def make_strategy(kind: str = "one"):
    """The tf.distribute strategy called `kind` (see STRATEGIES); None for 'one' (train() then uses the
    default strategy)."""
    import tensorflow as tf

    if kind not in STRATEGIES:
        raise TrainingError(f"unknown strategy {kind!r}: choose one of {', '.join(STRATEGIES)}")
    if kind == "one":
        return None
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy()
    read_tf_config()
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=COLLECTIVE_TIMEOUT)
    try:
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    except (RuntimeError, ValueError) as exc:
        raise TrainingError(f"cannot start the multi-worker strategy: {exc}") from None


def is_multi_worker(strategy) -> bool:
    """Whether `strategy` spans processes: then every decision to stop must be taken by all of them at once."""
    import tensorflow as tf

    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def is_chief(strategy=None) -> bool:
    """Whether this process saves results: always, except on the non-chief workers of a multi-worker run
    (TF's convention: the 'chief' task, or worker 0 when the cluster has none)."""
    return worker_position(strategy)[0] == 0


def worker_position(strategy) -> tuple[int, int]:
    """(this worker's index, number of workers): (0, 1) outside a multi-worker run."""
    import tensorflow as tf

    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return 0, 1
    resolver = strategy.cluster_resolver
    spec = resolver.cluster_spec().as_dict()
    roles = [role for role in ("chief", "worker") if role in spec]
    sizes = {role: len(spec[role]) for role in roles}
    if resolver.task_type is None:
        return 0, 1
    offset = sizes.get("chief", 0) if resolver.task_type == "worker" else 0
    return offset + int(resolver.task_id or 0), sum(sizes.values())

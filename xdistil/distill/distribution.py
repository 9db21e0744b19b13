"""tf.distribute for every training stage: the strategy chosen by flag, this process's place in the
cluster, global batch sizes and per-replica batches.

A global batch is built on the host from the same deterministic row order on every worker; each
replica takes an equal slice of it. Row counts for loss normalisation (real tokens, labelled
positions) are counted over the whole global batch and sent to every replica, so that each replica
returns its *sum* of losses divided by the *global* count, and the sum over replicas (which is
what the optimizer's gradient all-reduce computes) is exactly the single-device mean.
"""
from __future__ import annotations

import contextlib
import logging
import os

import numpy as np
import tensorflow as tf

from xdistil.config import BATCH_SIZE_SCOPES, STRATEGIES
from xdistil.errors import XdistilError

log = logging.getLogger(__name__)

def split_cpu(num_virtual_cpus: int) -> None:
    """Split the first physical CPU into `num_virtual_cpus` logical devices (before TensorFlow starts)."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(num_virtual_cpus)])
    except RuntimeError as error:  # the runtime is already initialised: fine if it is already split so
        if len(tf.config.list_logical_devices("CPU")) != num_virtual_cpus:
            raise RuntimeError(f"--num_virtual_cpus {num_virtual_cpus}: the CPU must be split before "
                               f"TensorFlow runs anything ({error})") from error


def make_strategy(name: str, num_virtual_cpus: int | None = None, tpu: str | None = None):
    """The tf.distribute strategy named by `--strategy`; call it before any other TensorFlow work."""
    if name not in STRATEGIES:
        raise ValueError(f"--strategy must be one of {STRATEGIES}, got {name!r}")
    if num_virtual_cpus and num_virtual_cpus > 1:
        split_cpu(num_virtual_cpus)
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy(devices=[d.name for d in devices])
    if name == "multi_worker":
        if not os.environ.get("TF_CONFIG"):
            raise ValueError("--strategy multi_worker reads the cluster from the TF_CONFIG environment "
                             "variable, which is not set")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if not tpu:
        raise ValueError("--strategy tpu needs --tpu: a TPU name, a grpc:// address, or 'local'")
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def _worker_place(strategy) -> tuple[int, int]:
    """(index of this worker, number of workers); the chief (or worker 0 without one) is index 0."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None:
        return 0, 1
    spec = resolver.cluster_spec().as_dict()
    chiefs = len(spec.get("chief", []))
    workers = len(spec.get("worker", []))
    if resolver.task_type == "chief":
        return 0, chiefs + workers
    return chiefs + int(resolver.task_id), chiefs + workers


# What a collective op raises when another worker died or stopped answering.
LOST_WORKER_ERRORS = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError)


def lost_worker_message(error: Exception) -> str:
    reason = next((line.strip() for line in str(error).splitlines() if "aborted" in line), type(error).__name__)
    return (f"another worker of the cluster stopped answering ({reason}). Restart every worker with the same "
            "command: the run resumes from the chief's last checkpoint")


class Distribution:
    """A strategy and this process's role in it: which worker, how many replicas, who writes files."""

    def __init__(self, strategy):
        self.strategy = strategy
        self.worker_index, self.num_workers = _worker_place(strategy)
        self.static_shapes = isinstance(strategy, tf.distribute.TPUStrategy)
        self._barrier = None

    @classmethod
    def create(cls, name: str = "default", num_virtual_cpus: int | None = None, tpu: str | None = None):
        distribution = cls(make_strategy(name, num_virtual_cpus, tpu))
        if name != "default":
            log.info("strategy %s: %d replicas in sync, worker %d of %d", name, distribution.num_replicas,
                     distribution.worker_index, distribution.num_workers)
        return distribution

    @property
    def num_replicas(self) -> int:
        return int(self.strategy.num_replicas_in_sync)

    @property
    def is_chief(self) -> bool:
        """The one process that writes the model directory (every process trains)."""
        return self.worker_index == 0

    def global_batch_size(self, batch_size: int, scope: str) -> int:
        """`batch_size` as given by `--batch_size_scope` (global, or per replica as in the reference)."""
        if scope not in BATCH_SIZE_SCOPES:
            raise ValueError(f"--batch_size_scope must be one of {BATCH_SIZE_SCOPES}, got {scope!r}")
        return batch_size * self.num_replicas if scope == "per_replica" else batch_size

    @contextlib.contextmanager
    def lost_worker_errors(self):
        """Turn the error a collective raises when another worker died into a clear XdistilError, so that
        every worker stops (none hangs) with a message saying how to resume."""
        try:
            yield
        except LOST_WORKER_ERRORS as error:
            raise XdistilError(lost_worker_message(error), "TF_CONFIG cluster") from None

    def barrier(self) -> None:
        """Wait until every worker gets here (a collective all-reduce); free with one worker."""
        if self.num_workers == 1:
            return
        if self._barrier is None:
            strategy = self.strategy

            @tf.function
            def barrier():
                ones = strategy.run(lambda: tf.constant(1.0))
                return strategy.reduce(tf.distribute.ReduceOp.SUM, ones, axis=None)

            self._barrier = barrier
        self._barrier()

    def distribute_batch(self, arrays: dict[str, np.ndarray], replicated: tuple[str, ...] = ()):
        """Host arrays of a global batch (rows a multiple of the replica count) -> per-replica tensors.

        Replica i gets the i-th equal slice of the rows; the `replicated` entries (scalars) go to
        every replica unchanged.
        """
        if self.num_replicas == 1:
            return {key: tf.constant(value) for key, value in arrays.items()}
        rows = len(next(v for k, v in arrays.items() if k not in replicated))
        if rows % self.num_replicas:
            raise ValueError(f"a global batch of {rows} rows does not split over {self.num_replicas} replicas")
        share = rows // self.num_replicas

        def replica_values(context):
            start = context.replica_id_in_sync_group * share
            return {key: tf.constant(value if key in replicated else value[start:start + share])
                    for key, value in arrays.items()}

        return self.strategy.experimental_distribute_values_from_function(replica_values)


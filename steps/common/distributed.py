"""Data-parallel training hooks: Horovod when the job enables MPI, else one process.

A job runs data-parallel when SageMaker's MPI framework parameter `sagemaker_mpi_enabled`
is true (the toolkit passes framework parameters in SM_FRAMEWORK_PARAMS), or when the script
was started by `horovodrun` or `mpirun` directly (HOROVOD_SIZE or OMPI_COMM_WORLD_SIZE is
set). Otherwise every hook acts as rank 0 of size 1 and Horovod is not imported.

Horovod 0.28.1's `DistributedGradientTape`, `DistributedOptimizer` and `broadcast_variables`
fail on Keras 3 variables (`'Variable' object has no attribute 'ref'`), so these hooks pass
Horovod the TensorFlow variable under each Keras variable (`variable.value`).

With N workers, each training step averages the gradients of N batches, one per worker. So
one step uses N times `batch_size` queries, and an epoch has about 1/N as many steps.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os

from common.contract import StepError

log = logging.getLogger("distributed")

INSTALL_HINT = (
    "install Horovod with TensorFlow and Gloo: HOROVOD_WITH_TENSORFLOW=1 "
    "HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1 HOROVOD_WITH_GLOO=1 "
    "pip install --no-build-isolation 'horovod==0.28.1'"
)

_hvd = None


def _mpi_enabled() -> bool:
    try:
        framework_params = json.loads(os.environ.get("SM_FRAMEWORK_PARAMS") or "{}")
    except json.JSONDecodeError:
        framework_params = {}
    if str(framework_params.get("sagemaker_mpi_enabled", "")).lower() == "true":
        return True
    return any(os.environ.get(name) for name in ("HOROVOD_SIZE", "OMPI_COMM_WORLD_SIZE"))


def initialize() -> None:
    """Start Horovod when the job runs data-parallel; do nothing for one process.

    Raises StepError with the install command when MPI is enabled and Horovod is missing.
    """
    global _hvd
    if _hvd is not None or not _mpi_enabled():
        return
    try:
        import horovod.tensorflow as hvd
    except ImportError as error:
        raise StepError(
            f"the job enables MPI (sagemaker_mpi_enabled) but Horovod failed to import "
            f"({error}). Fix: {INSTALL_HINT}"
        ) from error
    hvd.init()
    _hvd = hvd
    log.info("Horovod rank %d of %d (local rank %d)", hvd.rank(), hvd.size(), hvd.local_rank())


def rank() -> int:
    """Return this worker's index, 0 to size() - 1."""
    return _hvd.rank() if _hvd is not None else 0


def size() -> int:
    """Return the number of workers."""
    return _hvd.size() if _hvd is not None else 1


def is_chief() -> bool:
    """Return whether this worker writes metrics, logs and the model (rank 0)."""
    return rank() == 0


def shard(items: list) -> list:
    """Return this worker's share of `items`: every size()-th item from index rank().

    Every worker gets the same number of items, because each training step is a collective
    operation that all workers must reach. So the last `len(items) % size()` items are left
    out. Raises StepError when there are fewer items than workers.
    """
    workers = size()
    if workers == 1:
        return items
    usable = len(items) - len(items) % workers
    if usable == 0:
        raise StepError(
            f"{len(items)} item(s) cannot be shared among {workers} workers: each needs at "
            "least one. Fix: use fewer workers or more data."
        )
    if usable < len(items):
        log.warning(
            "leaving out the last %d of %d items so that each of %d workers gets %d",
            len(items) - usable,
            len(items),
            workers,
            usable // workers,
        )
    share = items[rank() : usable : workers]
    log.info("rank %d takes %d of %d items", rank(), len(share), len(items))
    return share


class _AveragingTape:
    """A GradientTape whose `gradient` returns gradients averaged over all workers."""

    def __init__(self, tape, hvd) -> None:
        self._tape = tape
        self._hvd = hvd

    def gradient(self, target, sources):
        tensors = [_tf_variable(source) for source in sources]
        gradients = self._tape.gradient(target, tensors)
        return self._hvd.grouped_allreduce(gradients, op=self._hvd.Average)


def _tf_variable(variable):
    # A Keras 3 variable wraps a tf.Variable in its `.value` property. A tf.Variable's `value`
    # is a method, so a tf.Variable is passed as it is.
    value = getattr(variable, "value", None)
    return variable if value is None or callable(value) else value


def wrap_tape(tape):
    """Return a tape whose gradients are averaged across workers."""
    if _hvd is None:
        return tape
    return _AveragingTape(tape, _hvd)


def broadcast_variables(variables) -> None:
    """Copy rank 0's values of `variables` to every worker, so that all start equal."""
    if _hvd is None:
        return
    _hvd.broadcast_variables([_tf_variable(v) for v in variables], root_rank=0)


def mean_across_workers(value: float) -> float:
    """Return the mean of `value` over all workers."""
    if _hvd is None:
        return value
    import tensorflow as tf

    return float(_hvd.allreduce(tf.constant(value, tf.float64), op=_hvd.Average))


def weights_digest(variables) -> str:
    """Return a SHA-256 hex digest of the values of `variables`, in order."""
    digest = hashlib.sha256()
    for variable in variables:
        digest.update(_tf_variable(variable).numpy().tobytes())
    return digest.hexdigest()


def check_synchronized(variables) -> None:
    """Log the digest of `variables` on every worker and raise StepError unless all are equal.

    Data-parallel workers must end with identical weights; a difference means that a worker
    skipped a gradient average or a broadcast.
    """
    if _hvd is None:
        return
    import tensorflow as tf

    digest = weights_digest(variables)
    log.info("rank %d: weights digest %s", rank(), digest[:16])
    # The first 15 hex digits fit in an int64 without overflow.
    gathered = _hvd.allgather(tf.constant([int(digest[:15], 16)], tf.int64)).numpy().tolist()
    if len(set(gathered)) > 1:
        raise StepError(
            "the workers' weights differ after training (digest prefixes by rank: "
            + ", ".join(f"{number:015x}" for number in gathered)
            + ")"
        )

"""Data-parallel training hooks. For now a single process: rank 0 of size 1.

The training loop calls these functions where Horovod would act, so adding it means
changing only this module: `hvd.init()` in `initialize`, `hvd.rank()`/`hvd.size()`,
`hvd.DistributedGradientTape` in `wrap_tape`, `hvd.broadcast_variables` in
`broadcast_variables` and `hvd.allreduce` in `mean_across_workers`. Each worker then needs
a non-empty share of the train queries.
"""

from __future__ import annotations


def initialize() -> None:
    """Set up communication between workers. Nothing to do with one process."""


def rank() -> int:
    """Return this worker's index, 0 to size() - 1."""
    return 0


def size() -> int:
    """Return the number of workers."""
    return 1


def is_chief() -> bool:
    """Return whether this worker writes metrics, logs and the model (rank 0)."""
    return rank() == 0


def shard(items: list) -> list:
    """Return this worker's share of `items`: every size()-th item from index rank()."""
    return items[rank() :: size()]


def wrap_tape(tape):
    """Return a tape whose gradients are averaged across workers."""
    return tape


def broadcast_variables(variables) -> None:
    """Copy rank 0's values of `variables` to every worker, so that all start equal."""


def mean_across_workers(value: float) -> float:
    """Return the mean of `value` over all workers."""
    return value

"""Completion criteria of a tuning job (TuningJobCompletionCriteria and ResourceLimits).

ConvergenceDetected, SageMaker's own judgement that the search has converged, is not emulated.
"""

from __future__ import annotations

from collections.abc import Sequence

from harness.config import TuningConfig
from harness.tuning.records import FAILED, TrialRecord

MAX_JOBS_REACHED = "MaxNumberOfTrainingJobs"
TARGET_REACHED = "TargetObjectiveMetricValue"
NOT_IMPROVING = "BestObjectiveNotImproving"

# BestObjectiveNotImproving counts training jobs that "failed to improve model performance by
# 1% or greater" (MaxNumberOfTrainingJobsNotImproving in botocore's SageMaker model).
MIN_RELATIVE_IMPROVEMENT = 0.01


def improves(value: float, best: float, maximize: bool) -> bool:
    """Return whether ``value`` beats ``best`` by at least 1% of ``best``'s magnitude."""
    margin = abs(best) * MIN_RELATIVE_IMPROVEMENT
    if maximize:
        return value > best and value - best >= margin
    return value < best and best - value >= margin


def jobs_not_improving(records: Sequence[TrialRecord], maximize: bool) -> int:
    """Return how many training jobs in a row, up to the last, did not improve the best.

    ``records`` are in the order the jobs finished. A Failed job, or one without an
    objective, does not improve.
    """
    best: float | None = None
    count = 0
    for record in records:
        value = None if record.status == FAILED else record.objective
        if value is not None and (best is None or improves(value, best, maximize)):
            best = value
            count = 0
            continue
        if value is not None and best is not None and (value > best if maximize else value < best):
            # Better, but by less than 1%: the best moves and the job still counts.
            best = value
        count += 1
    return count


def completion_reason(
    records: Sequence[TrialRecord], tuning: TuningConfig, maximize: bool
) -> str | None:
    """Return the completion criterion that ``records`` meet, or None.

    ``records`` are the tuning job's finished training jobs in the order they finished.
    """
    target = tuning.target_objective_value
    if target is not None:
        for record in records:
            if record.status == FAILED or record.objective is None:
                continue
            if (record.objective >= target) if maximize else (record.objective <= target):
                return TARGET_REACHED

    limit = tuning.max_jobs_not_improving
    if limit is not None and jobs_not_improving(records, maximize) >= limit:
        return NOT_IMPROVING

    if len(records) >= tuning.max_jobs:
        return MAX_JOBS_REACHED
    return None

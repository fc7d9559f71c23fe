"""Completion criteria: the 1% improvement rule and the order of training jobs."""

from __future__ import annotations

from harness.tuning.completion import completion_reason, improves, jobs_not_improving
from harness.tuning.records import COMPLETED, FAILED, TrialRecord
from tests.tuning.scripted import make_tuning


def records(*objectives: float | None) -> list[TrialRecord]:
    return [
        TrialRecord(f"t-{index:03d}", {}, FAILED if value is None else COMPLETED, value)
        for index, value in enumerate(objectives, start=1)
    ]


def test_improvement_needs_one_percent() -> None:
    assert improves(0.606, 0.6, maximize=True)
    assert not improves(0.605, 0.6, maximize=True)
    assert improves(0.594, 0.6, maximize=False)
    assert not improves(0.595, 0.6, maximize=False)
    assert improves(-0.99, -1.0, maximize=True)
    assert improves(0.001, 0.0, maximize=True)


def test_jobs_not_improving_counts_since_best() -> None:
    assert jobs_not_improving(records(0.5, 0.6, 0.601, 0.59), maximize=True) == 2
    assert jobs_not_improving(records(0.5, 0.4, None, 0.7), maximize=True) == 0
    assert jobs_not_improving(records(None, None), maximize=True) == 2


def test_target_checked_in_objective_direction() -> None:
    tuning = make_tuning(max_jobs=10, target_objective_value=0.2, objective_type="Minimize")

    assert completion_reason(records(0.5, 0.3), tuning, maximize=False) is None
    assert completion_reason(records(0.5, 0.2), tuning, maximize=False) == (
        "TargetObjectiveMetricValue"
    )


def test_max_jobs_counts_failed_jobs() -> None:
    tuning = make_tuning(max_jobs=2)

    assert completion_reason(records(None, 0.3), tuning, maximize=True) == (
        "MaxNumberOfTrainingJobs"
    )

"""Training job records of a tuning job, and how they are stored on Optuna trials.

Each training job is one Optuna trial. Its record lives in the trial's user attributes, so a
resumed tuning job rebuilds every record from storage. Optuna states map onto SageMaker's
training job statuses: COMPLETE is Completed, PRUNED is Stopped and FAIL is Failed. A trial
left RUNNING by a killed process is marked FAIL with the status Interrupted, is not a training
job of the result, and runs again as a new trial.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from optuna.trial import FrozenTrial, TrialState

COMPLETED = "Completed"
STOPPED = "Stopped"
FAILED = "Failed"
INTERRUPTED = "Interrupted"
TRAINING_JOB_STATUSES = (COMPLETED, STOPPED, FAILED)

# User attributes of a trial. JOB is set when the training job starts: its launch index
# (1, 2, ... in start order), name and hyperparameters. RECORD is set when it ends, and contains
# the whole record. Two attributes keep the writes to storage at two per training job.
JOB = "training_job"
RECORD = "record"


@dataclass(frozen=True)
class TrialRecord:
    """One training job of a tuning job.

    ``hyperparameters`` are all the strings the training job received: the static ones, the
    tuned values and ``_tuning_objective_metric``. ``objective`` is the last value of the
    objective metric, and None when the job wrote none. A job that the tuning job stopped keeps
    the value of the epoch after which it was stopped.
    ``intermediate_values`` are the objective metric's values in log order (value n is epoch
    n). ``stop_reason`` is the reason harness stopped a Stopped job. ``parent_tuning_job`` is set
    on training jobs that warm start copied from a parent tuning job.
    """

    name: str
    hyperparameters: dict[str, str]
    status: str
    objective: float | None
    intermediate_values: tuple[float, ...] = ()
    final_metrics: dict[str, float] = field(default_factory=dict)
    start_time: datetime | None = None
    end_time: datetime | None = None
    failure_reason: str | None = None
    stop_reason: str | None = None
    parent_tuning_job: str | None = None

    @property
    def duration(self) -> float | None:
        """Seconds from the job's start to its end, or None without both times."""
        if self.start_time is None or self.end_time is None:
            return None
        return (self.end_time - self.start_time).total_seconds()


@dataclass(frozen=True)
class TuningResult:
    """A finished (or already complete) tuning job.

    ``trials`` lists this tuning job's training jobs in launch order. ``best_trial`` is the
    Completed or Stopped job with the best objective, None when no job wrote one.
    ``completion_reason`` names what ended the tuning job: MaxNumberOfTrainingJobs,
    TargetObjectiveMetricValue or BestObjectiveNotImproving. ``warm_start_trials`` counts the
    parent tuning jobs' training jobs that seeded the search.
    """

    tuning_job_name: str
    trials: tuple[TrialRecord, ...]
    best_trial: TrialRecord | None
    completion_reason: str
    warm_start_trials: int = 0


def job_attributes(launch_index: int, name: str, hyperparameters: Mapping[str, str]) -> dict:
    """Return the JOB user attribute of a training job that starts."""
    return {"launch_index": launch_index, "name": name, "hyperparameters": dict(hyperparameters)}


def launch_index(trial: FrozenTrial) -> int | None:
    """Return the trial's launch index, or None for a trial that started no training job."""
    job = trial.user_attrs.get(JOB)
    return None if job is None else int(job["launch_index"])


def record_attributes(record: TrialRecord) -> dict[str, Any]:
    """Return the JSON-serializable RECORD user attribute that stores ``record``."""
    return {
        "name": record.name,
        "hyperparameters": record.hyperparameters,
        "status": record.status,
        "objective": record.objective,
        "intermediate_values": list(record.intermediate_values),
        "final_metrics": record.final_metrics,
        "start_time": record.start_time.isoformat() if record.start_time else None,
        "end_time": record.end_time.isoformat() if record.end_time else None,
        "failure_reason": record.failure_reason,
        "stop_reason": record.stop_reason,
        "parent_tuning_job": record.parent_tuning_job,
    }


def interrupted_attributes() -> dict[str, Any]:
    """Return the RECORD user attribute of a trial whose training job was interrupted."""
    return {"status": INTERRUPTED}


def record_from_trial(trial: FrozenTrial) -> TrialRecord | None:
    """Return the record stored on a finished trial, or None for other trials."""
    stored = trial.user_attrs.get(RECORD) or {}
    if not trial.state.is_finished() or stored.get("status") not in TRAINING_JOB_STATUSES:
        return None
    return TrialRecord(
        name=stored["name"],
        hyperparameters=dict(stored["hyperparameters"]),
        status=stored["status"],
        objective=stored.get("objective"),
        intermediate_values=tuple(stored.get("intermediate_values") or ()),
        final_metrics=dict(stored.get("final_metrics") or {}),
        start_time=_parse_time(stored.get("start_time")),
        end_time=_parse_time(stored.get("end_time")),
        failure_reason=stored.get("failure_reason"),
        stop_reason=stored.get("stop_reason"),
        parent_tuning_job=stored.get("parent_tuning_job"),
    )


def is_warm_start_copy(trial: FrozenTrial) -> bool:
    """Return whether the trial is a parent tuning job's training job, copied by warm start."""
    return (trial.user_attrs.get(RECORD) or {}).get("parent_tuning_job") is not None


def own_records(trials: Iterable[FrozenTrial]) -> list[TrialRecord]:
    """Return the tuning job's own finished training jobs, in launch order."""
    ordered = sorted(
        (trial for trial in trials if launch_index(trial) is not None),
        key=lambda trial: launch_index(trial) or 0,
    )
    records = [record_from_trial(trial) for trial in ordered]
    return [record for record in records if record is not None]


def best_record(records: Iterable[TrialRecord], maximize: bool) -> TrialRecord | None:
    """Return the Completed or Stopped record with the best objective; the first one on ties."""
    best: TrialRecord | None = None
    for record in records:
        if record.status == FAILED or record.objective is None:
            continue
        if best is None or _better(record.objective, best.objective, maximize):
            best = record
    return best


def _better(value: float, other: float | None, maximize: bool) -> bool:
    if other is None:
        return True
    return value > other if maximize else value < other


def trial_state(status: str) -> TrialState:
    """Return the Optuna state that stores a training job status."""
    return {COMPLETED: TrialState.COMPLETE, STOPPED: TrialState.PRUNED}.get(status, TrialState.FAIL)


def _parse_time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def status_counts(records: Iterable[TrialRecord]) -> Mapping[str, int]:
    """Return the number of training jobs per status, as TrainingJobStatusCounters counts."""
    counts = dict.fromkeys(TRAINING_JOB_STATUSES, 0)
    for record in records:
        counts[record.status] += 1
    return counts

"""Local hyperparameter tuning with the semantics of SageMaker Automatic Model Tuning.

``run_tuning_job()`` runs a tuning job defined by ``[tuning]`` and ``[tuning.ranges]``.
Optuna chooses each training job's hyperparameters (Grid, Random, Bayesian or Hyperband).
The objective metric is read from the training job's log with the metric definitions of
``[train.metrics]``. The study is stored in SQLite, so a rerun resumes it. The caller starts
the training jobs through a ``launch_trial`` function (see harness.tuning.engine).
"""

from __future__ import annotations

from harness.tuning.engine import (
    TUNING_OBJECTIVE_METRIC,
    LaunchTrial,
    TrainingJobResult,
    run_tuning_job,
)
from harness.tuning.metrics import MetricExtractor, extract_metrics
from harness.tuning.records import COMPLETED, FAILED, STOPPED, TrialRecord, TuningResult

__all__ = [
    "COMPLETED",
    "FAILED",
    "STOPPED",
    "TUNING_OBJECTIVE_METRIC",
    "LaunchTrial",
    "MetricExtractor",
    "TrainingJobResult",
    "TrialRecord",
    "TuningResult",
    "extract_metrics",
    "run_tuning_job",
]

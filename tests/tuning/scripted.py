"""Scripted training jobs for tuning tests: each prints a prepared objective curve.

The tuning engine's input is a training job's log. These launchers write that log from a
curve chosen by the hyperparameters, one line per epoch, and obey should_stop after each line
as a real training job runner does.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from harness.config import ParameterRange, TuningConfig
from harness.tuning import TrainingJobResult, TrialRecord, TuningResult, run_tuning_job
from harness.tuning.engine import LaunchTrial

OBJECTIVE = "validation:ndcg@10"
METRIC_DEFINITIONS = {
    "train:loss": r"train:loss=([0-9.eE+-]+)",
    OBJECTIVE: r"validation:ndcg@10=([0-9.eE+-]+)",
}
STATIC_HYPERPARAMETERS = {"epochs": "9", "batch_size": "8", "loss": "softmax"}

Curve = Callable[[Mapping[str, str]], Sequence[float]]


def make_tuning(**changes: object) -> TuningConfig:
    """Return a Random tuning job of 6 training jobs over two ranges, with ``changes``."""
    tuning = TuningConfig(
        strategy="Random",
        objective_metric=OBJECTIVE,
        objective_type="Maximize",
        max_jobs=6,
        max_parallel_jobs=1,
        ranges=(
            ParameterRange("learning_rate", "Continuous", "0.0001", "0.1", "Logarithmic"),
            ParameterRange("batch_size", "Integer", "4", "64", "Linear"),
        ),
        random_seed=11,
    )
    return replace(tuning, **changes)  # type: ignore[arg-type]


def log_line(epoch: int, value: float) -> str:
    return f"epoch={epoch} train:loss={1 - value:.4f} validation:ndcg@10={value:.4f}"


@dataclass
class ScriptedLauncher:
    """A launch_trial that prints ``curve(hyperparameters)``, one objective value per epoch.

    ``calls`` lists (trial name, hyperparameters) in start order. ``raise_on_call`` makes the
    n-th call (from 1) raise RuntimeError before printing, as a killed tuning process would
    leave that training job unfinished.
    """

    curve: Curve
    status: str = "Completed"
    failure_reason: str | None = None
    raise_on_call: int | None = None
    # Epochs the job goes on printing after should_stop() returns True, as a real job does
    # while the stop reaches it.
    stop_lag: int = 0
    calls: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(
        self,
        trial_name: str,
        hyperparameters: dict[str, str],
        on_line: Callable[[str], None],
        should_stop: Callable[[], bool],
    ) -> TrainingJobResult:
        with self._lock:
            self.calls.append((trial_name, dict(hyperparameters)))
            call_number = len(self.calls)
        if call_number == self.raise_on_call:
            raise RuntimeError(f"tuning process killed while {trial_name} ran")

        on_line(f"Starting training job {trial_name}")
        stopping_since = None
        for epoch, value in enumerate(self.curve(hyperparameters), start=1):
            on_line(log_line(epoch, value))
            if stopping_since is None and should_stop():
                stopping_since = epoch
            if stopping_since is not None and epoch - stopping_since >= self.stop_lag:
                with self._lock:
                    self.stopped.append(trial_name)
                return TrainingJobResult("Stopped")
        return TrainingJobResult(self.status, self.failure_reason)


def flat_curve(value_of: Callable[[Mapping[str, str]], float], epochs: int = 3) -> Curve:
    """Return a curve that stays at ``value_of(hyperparameters)`` for ``epochs`` epochs."""
    return lambda hyperparameters: [value_of(hyperparameters)] * epochs


def run_tuning(
    folder: Path,
    launcher: LaunchTrial,
    name: str = "ltr-tuning",
    on_record: Callable[[TrialRecord], None] | None = None,
    **changes: object,
) -> TuningResult:
    """Run a tuning job of `make_tuning(**changes)` with its study stored in `folder`."""
    return run_tuning_job(
        name,
        make_tuning(**changes),
        STATIC_HYPERPARAMETERS,
        METRIC_DEFINITIONS,
        launcher,
        folder,
        on_record,
    )

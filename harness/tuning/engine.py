"""Run a hyperparameter tuning job: training jobs in threads, chosen and stopped by Optuna.

The caller starts each training job through ``launch_trial``, which must follow this protocol:

    launch_trial(trial_name, hyperparameters, on_line, should_stop) -> TrainingJobResult

- Start a training job named ``trial_name`` with ``hyperparameters`` (every value a string).
- Pass each line that the job writes to stdout or stderr to ``on_line(line)`` as it appears.
  It may be called from any thread.
- Call ``should_stop()`` often, at least after each line. Once it returns True, stop the
  training job as StopTrainingJob does and return Stopped.
- Return ``TrainingJobResult(status, failure_reason)`` with the status Completed, Failed or
  Stopped, and the failure reason of a Failed job, after the last call of ``on_line``.
- Raise only when the whole tuning job must end, such as on KeyboardInterrupt. The training
  jobs still running are asked to stop, stay unfinished in storage, and run again when the
  tuning job is resumed.

Several training jobs run at once (``max_parallel_jobs``), each in its own thread. When a
completion criterion is met, no new training job starts and the running ones are asked to stop,
as StopHyperParameterTuningJob stops them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple, Protocol

import optuna
from optuna.samplers import RandomSampler

from harness.config import TuningConfig
from harness.config.ranges import check_tuning_job_name
from harness.config.tuning import infer_max_resource
from harness.errors import TuningError
from harness.tuning import records
from harness.tuning.completion import MAX_JOBS_REACHED, completion_reason
from harness.tuning.metrics import MetricExtractor, missing_objective_reason
from harness.tuning.records import (
    COMPLETED,
    FAILED,
    STOPPED,
    TRAINING_JOB_STATUSES,
    TrialRecord,
    TuningResult,
)
from harness.tuning.space import search_space, to_hyperparameter
from harness.tuning.storage import TuningStudy, open_study, tuning_definition
from harness.tuning.strategies import make_pruner, make_sampler

log = logging.getLogger(__name__)

# Optuna logs each study it creates at INFO; the tuning job logs its own progress.
optuna.logging.set_verbosity(optuna.logging.WARNING)

# The hyperparameter in which SageMaker passes the objective metric's name to each training job.
TUNING_OBJECTIVE_METRIC = "_tuning_objective_metric"


class TrainingJobResult(NamedTuple):
    """The outcome of a training job: Completed, Failed or Stopped, and the failure reason."""

    status: str
    failure_reason: str | None = None


class LaunchTrial(Protocol):
    """Starts one training job of the tuning job and waits for it (see the module docstring)."""

    def __call__(
        self,
        trial_name: str,
        hyperparameters: dict[str, str],
        on_line: Callable[[str], None],
        should_stop: Callable[[], bool],
    ) -> TrainingJobResult: ...


@dataclass
class _RunningJob:
    """A training job in flight, with what its log has shown so far."""

    trial: optuna.Trial
    name: str
    hyperparameters: dict[str, str]
    extractor: MetricExtractor
    objective_values: list[float] = field(default_factory=list)
    final_metrics: dict[str, float] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
    stop_reason: str | None = None
    # The epoch after which the tuning job decided to stop the job.
    stop_epoch: int | None = None
    # Hyperband's MaxResource, when the job would run past it. None when it stops by itself.
    max_resource: int | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None

    def request_stop(self, reason: str, epoch: int | None = None) -> None:
        if not self.stop.is_set():
            self.stop_reason = reason
            self.stop_epoch = epoch
            self.stop.set()


def run_tuning_job(
    tuning_job_name: str,
    tuning: TuningConfig,
    static_hyperparameters: Mapping[str, str],
    metric_definitions: Mapping[str, str],
    launch_trial: LaunchTrial,
    storage_folder: Path,
    on_record: Callable[[TrialRecord], None] | None = None,
) -> TuningResult:
    """Run (or resume) the tuning job ``tuning_job_name`` and return all its training jobs.

    ``on_record`` is called, in the caller's thread, with the record of each training job as
    it ends: the objective and status that the tuning job stores.

    ``static_hyperparameters`` are [train.hyperparameters]: tuned names take the trial's value
    instead. ``metric_definitions`` map metric names to regexes ([train.metrics]) and must
    define the objective metric. The study is stored in ``storage_folder``, where an earlier
    run of the same tuning job is resumed and parent tuning jobs for warm start are read.

    Raises:
        TuningError: an invalid tuning job name, an undefined objective metric, or a stored
            tuning job that cannot be resumed or used for warm start.
        Exception: whatever ``launch_trial`` raised, after the running jobs stopped.
    """
    issue = check_tuning_job_name(tuning_job_name)
    if issue is not None:
        raise TuningError(f"{issue.message}. Fix: {issue.fix}.")
    if tuning.strategy == "Grid" and any(r.kind != "Categorical" for r in tuning.ranges):
        raise TuningError(
            "the Grid strategy searches only categorical ranges. Fix: list the values to try "
            "as categorical ranges, or use strategy Random or Bayesian."
        )
    if tuning.strategy == "Hyperband" and (
        tuning.min_resource is None or tuning.max_resource is None
    ):
        raise TuningError(
            "the Hyperband strategy needs min_resource and max_resource. Fix: set both, in epochs."
        )
    if tuning.objective_metric not in metric_definitions:
        raise TuningError(
            f'no metric definition for the objective metric "{tuning.objective_metric}". '
            "Fix: define it in [train.metrics]."
        )

    tuned = set(tuning.tuned_names)
    static = {key: value for key, value in static_hyperparameters.items() if key not in tuned}
    objective_regex = metric_definitions[tuning.objective_metric]
    definition = tuning_definition(tuning, static, objective_regex)
    handle = open_study(Path(storage_folder), tuning_job_name, tuning, definition)
    run = _TuningRun(handle, tuning, static, metric_definitions, launch_trial, on_record)
    return run.run()


class _TuningRun:
    """One call of run_tuning_job. Optuna calls happen under one lock, from any thread."""

    def __init__(
        self,
        handle: TuningStudy,
        tuning: TuningConfig,
        static_hyperparameters: dict[str, str],
        metric_definitions: Mapping[str, str],
        launch_trial: LaunchTrial,
        on_record: Callable[[TrialRecord], None] | None = None,
    ) -> None:
        self.handle = handle
        self.on_record = on_record
        self.tuning = tuning
        self.static = static_hyperparameters
        self.definitions = dict(metric_definitions)
        self.launch_trial = launch_trial
        self.distributions = search_space(tuning.ranges)
        self.lock = threading.Lock()
        self.abort = threading.Event()

    def run(self) -> TuningResult:
        with self.lock:
            finished = records.own_records(self.handle.trials())
        reason = self._completion_reason(finished)
        budget = self.tuning.max_jobs - len(finished)
        log.info(
            "tuning job %s: %d of %d training jobs finished before this run",
            self.handle.name,
            len(finished),
            self.tuning.max_jobs,
        )

        futures: dict[Future[TrainingJobResult], _RunningJob] = {}
        launched = 0
        with ThreadPoolExecutor(
            max_workers=self.tuning.max_parallel_jobs, thread_name_prefix="training-job"
        ) as pool:
            try:
                while True:
                    while (
                        reason is None
                        and launched < budget
                        and len(futures) < self.tuning.max_parallel_jobs
                    ):
                        job = self._start_job()
                        futures[pool.submit(self._run_job, job)] = job
                        launched += 1
                    if not futures:
                        break
                    done, _ = wait(futures, return_when=FIRST_COMPLETED)
                    reason = self._collect(done, futures) or reason
                    if reason is not None:
                        for job in futures.values():
                            job.request_stop(f"the tuning job completed ({reason})")
            except BaseException:
                self.abort.set()
                wait(futures)
                # A training job that ended on its own before the interruption is kept;
                # one that the interruption stopped runs again when the tuning job resumes.
                for future, job in futures.items():
                    if future.exception() is None and future.result().status != STOPPED:
                        self._finish_job(job, future.result())
                raise

        with self.lock:
            trials = self.handle.trials()
        own = records.own_records(trials)
        result = TuningResult(
            tuning_job_name=self.handle.name,
            trials=tuple(own),
            best_trial=records.best_record(own, self.handle.maximize),
            completion_reason=self._completion_reason(own) or MAX_JOBS_REACHED,
            warm_start_trials=sum(records.is_warm_start_copy(trial) for trial in trials),
        )
        log.info(
            "tuning job %s completed (%s): %s. Best training job: %s",
            self.handle.name,
            result.completion_reason,
            ", ".join(f"{n} {s}" for s, n in records.status_counts(own).items()),
            result.best_trial.name if result.best_trial else "none",
        )
        return result

    def _completion_reason(self, finished: list[TrialRecord]) -> str | None:
        in_finish_order = sorted(
            finished, key=lambda record: record.end_time or datetime.max.replace(tzinfo=UTC)
        )
        return completion_reason(in_finish_order, self.tuning, self.handle.maximize)

    def _collect(
        self,
        done: set[Future[TrainingJobResult]],
        futures: dict[Future[TrainingJobResult], _RunningJob],
    ) -> str | None:
        """Record the finished jobs in ``done``, then raise the first error of launch_trial."""
        error: BaseException | None = None
        for future in done:
            job = futures.pop(future)
            if future.exception() is not None:
                error = error or future.exception()
                continue
            self._finish_job(job, future.result())
        if error is not None:
            raise error
        with self.lock:
            finished = records.own_records(self.handle.trials())
        return self._completion_reason(finished)

    def _start_job(self) -> _RunningJob:
        """Ask Optuna for the next trial and name its training job."""
        with self.lock:
            # Seeding by launch index, not trial number, keeps the values of a resumed tuning
            # job the same as an uninterrupted run's, because an interrupted trial and its
            # rerun take two trial numbers but one launch index.
            index = self._next_launch_index()
            study = self.handle.study(
                make_sampler(self.tuning, self.handle.random_seed, index),
                make_pruner(self.tuning, self.handle.random_seed),
            )
            trial = study.ask(self.distributions)
            job_attributes = trial.user_attrs.get(records.JOB)
            if job_attributes is not None:
                # The rerun of an interrupted training job keeps its name and values.
                name = job_attributes["name"]
                hyperparameters = dict(job_attributes["hyperparameters"])
            else:
                tuned = {
                    parameter_range.name: to_hyperparameter(
                        parameter_range, trial.params[parameter_range.name]
                    )
                    for parameter_range in self.tuning.ranges
                }
                hyperparameters = {
                    **self.static,
                    **tuned,
                    TUNING_OBJECTIVE_METRIC: self.tuning.objective_metric,
                }
                name = _training_job_name(self.handle.name, index, tuned)
                trial.set_user_attr(
                    records.JOB, records.job_attributes(index, name, hyperparameters)
                )
        log.info("tuning job %s: starting training job %s", self.handle.name, name)
        job = _RunningJob(trial, name, hyperparameters, MetricExtractor(self.definitions))
        job.max_resource = _resource_to_stop_at(self.tuning, hyperparameters)
        return job

    def _next_launch_index(self) -> int:
        indexes = [records.launch_index(trial) for trial in self.handle.trials()]
        return max((index for index in indexes if index is not None), default=0) + 1

    def _run_job(self, job: _RunningJob) -> TrainingJobResult:
        job.start_time = datetime.now(UTC)
        try:
            return self.launch_trial(
                job.name,
                dict(job.hyperparameters),
                lambda line: self._on_line(job, line),
                lambda: job.stop.is_set() or self.abort.is_set(),
            )
        finally:
            job.end_time = datetime.now(UTC)

    def _on_line(self, job: _RunningJob, line: str) -> None:
        """Read metrics from one log line and ask the pruner after each objective value."""
        with self.lock:
            for metric, value in job.extractor.feed(line):
                if job.stop_epoch is not None:
                    # The epochs a job trains while the stop reaches it stay in its curve,
                    # but its metrics and Optuna leave them out. Their number depends on
                    # timing, and the same seed must give the same results.
                    if metric == self.tuning.objective_metric:
                        job.objective_values.append(value)
                    continue
                job.final_metrics[metric] = value
                if metric != self.tuning.objective_metric:
                    continue
                job.objective_values.append(value)
                if not math.isfinite(value):
                    continue
                step = len(job.objective_values)
                job.trial.report(value, step)
                if job.stop.is_set():
                    continue
                if _may_prune(self.tuning, step) and job.trial.should_prune():
                    job.request_stop(_pruned_reason(self.tuning, step), step)
                elif job.max_resource is not None and step >= job.max_resource:
                    job.request_stop(f"it reached MaxResource ({job.max_resource} epochs)", step)

    def _finish_job(self, job: _RunningJob, result: TrainingJobResult) -> None:
        """Store the training job's record on its trial and tell Optuna how it ended."""
        record = self._record(job, result)
        with self.lock:
            job.trial.set_user_attr(records.RECORD, records.record_attributes(record))
            # GridSampler.after_trial calls Study.stop() once the grid is exhausted, which
            # raises outside Study.optimize(), so the tell goes through a study whose sampler
            # does nothing after a trial.
            study = self.handle.study(RandomSampler())
            if record.status == COMPLETED:
                study.tell(job.trial.number, values=record.objective)
            else:
                study.tell(job.trial.number, state=records.trial_state(record.status))
        if self.on_record is not None:
            self.on_record(record)
        objective = "none" if record.objective is None else f"{record.objective:g}"
        log.info(
            "tuning job %s: training job %s %s, objective %s%s",
            self.handle.name,
            job.name,
            record.status,
            objective,
            f" ({record.failure_reason or record.stop_reason})"
            if record.status != COMPLETED
            else "",
        )

    def _record(self, job: _RunningJob, result: TrainingJobResult) -> TrialRecord:
        status, failure_reason = result.status, result.failure_reason
        if status not in TRAINING_JOB_STATUSES:
            raise ValueError(
                f"launch_trial returned the status {status!r} for {job.name}; "
                f"expected one of {', '.join(TRAINING_JOB_STATUSES)}"
            )
        # A job that the tuning job stopped has the objective of the epoch of the decision.
        values = job.objective_values[: job.stop_epoch or len(job.objective_values)]
        last = values[-1] if values else None
        objective = last if last is not None and math.isfinite(last) else None
        if status == COMPLETED and last is None:
            status = FAILED
            failure_reason = missing_objective_reason(
                job.name,
                self.tuning.objective_metric,
                self.definitions[self.tuning.objective_metric],
            )
        elif status == COMPLETED and objective is None:
            status = FAILED
            failure_reason = (
                f'the last value of the objective metric "{self.tuning.objective_metric}" '
                f"is {last}, not a finite number"
            )
        if status == FAILED and not failure_reason:
            failure_reason = "the training job failed without a failure reason"
        stop_reason = None
        if status == STOPPED:
            stop_reason = job.stop_reason or "the training job was stopped outside the tuning job"
        return TrialRecord(
            name=job.name,
            hyperparameters=job.hyperparameters,
            status=status,
            objective=None if status == FAILED else objective,
            intermediate_values=tuple(job.objective_values),
            final_metrics=dict(job.final_metrics),
            start_time=job.start_time,
            end_time=job.end_time,
            failure_reason=failure_reason if status == FAILED else None,
            stop_reason=stop_reason,
        )


def _resource_to_stop_at(tuning: TuningConfig, hyperparameters: Mapping[str, str]) -> int | None:
    """Return the epoch after which Hyperband stops the job, or None if it ends by then.

    A job whose epochs hyperparameter is at most MaxResource ends by itself, and stopping it
    after its last epoch could interrupt it while it saves the model.
    """
    if tuning.max_resource is None:
        return None
    epochs = infer_max_resource(hyperparameters, set())
    if epochs is not None and epochs[1].strip().isdigit():
        if int(epochs[1]) <= tuning.max_resource:
            return None
    return tuning.max_resource


def _may_prune(tuning: TuningConfig, step: int) -> bool:
    # HyperbandPruner also decides at its last rung, MaxResource, where the job has had all
    # its epochs and stopping it gains nothing.
    return tuning.max_resource is None or step < tuning.max_resource


def _pruned_reason(tuning: TuningConfig, step: int) -> str:
    if tuning.strategy == "Hyperband":
        return f"Hyperband stopped it after epoch {step}"
    return (
        f"early stopping: its objective after epoch {step} was worse than the median of "
        "earlier training jobs"
    )


def _training_job_name(tuning_job_name: str, index: int, tuned: Mapping[str, str]) -> str:
    """Return ``<tuning job>-<3-digit index>-<8 hex digits>``, as SageMaker names them."""
    digest = hashlib.sha256(json.dumps(tuned, sort_keys=True).encode()).hexdigest()[:8]
    return f"{tuning_job_name}-{index:03d}-{digest}"

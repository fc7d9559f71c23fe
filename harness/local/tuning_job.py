"""Run the train step as a hyperparameter tuning job on the local target.

Each training job of the tuning job is a real CreateTrainingJob request, run like the untuned
train step (the warm pool included). harness.tuning chooses the hyperparameters and stops
weak training jobs. The tuning job and its training jobs are recorded in the embedded
SageMaker API, and the results are kept under `<workspace>/tuning/`:

- `<tuning job>.db`: the Optuna study, which lets an interrupted tuning job resume;
- `<tuning job>.models.json`: the model artifacts of its training jobs;
- `<tuning job>.json`: the trial table that `harness tuning show` prints;
- `<tuning job>.html`: the report, with the objective of each training job and the
  importance of each hyperparameter.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.config import TuningConfig
from harness.errors import HarnessError
from harness.local.embedded import EmbeddedAWS
from harness.local.jobs import Launcher, LineSink, run_training_job
from harness.report.summary import short_number
from harness.tuning import COMPLETED, TrainingJobResult, TuningResult, run_tuning_job
from harness.tuning.records import TrialRecord, status_counts

# Fields of a TrainingJobDefinition that a CreateTrainingJob request takes as they are.
_DEFINITION_FIELDS = (
    "AlgorithmSpecification",
    "RoleArn",
    "InputDataConfig",
    "OutputDataConfig",
    "ResourceConfig",
    "StoppingCondition",
    "Environment",
)


def tuning_folder(workspace: Path) -> Path:
    return workspace / "tuning"


def tuning_job_name(pipeline: str, *identity: str) -> str:
    """Return a HyperParameterTuningJobName (at most 32 characters) made from `identity`.

    Given the cache key and the code archive, the name depends only on what the tuning job
    computes, so the rerun of an interrupted tuning job finds its stored training jobs.
    """
    digest = hashlib.sha256("\0".join(identity).encode()).hexdigest()
    prefix = pipeline[:13].rstrip("-") or "harness"
    return f"{prefix}-tune-{digest[:12]}"


def training_job_request(
    definition: dict[str, Any], name: str, hyperparameters: dict[str, str]
) -> dict[str, Any]:
    """Return the CreateTrainingJob request of one training job of a tuning job."""
    request: dict[str, Any] = {"TrainingJobName": name, "HyperParameters": dict(hyperparameters)}
    for key in _DEFINITION_FIELDS:
        if key in definition:
            request[key] = json.loads(json.dumps(definition[key]))
    return request


@dataclass
class TuningJobOutcome:
    """The outcome of a tuning job: its status, the best training job with a model, and its files."""

    status: str  # Completed | Failed
    result: TuningResult | None = None
    best_job: str = ""
    model_uri: str = ""
    metrics: dict[str, list[float]] = field(default_factory=dict)
    failure_reason: str = ""
    started: float = 0.0
    ended: float = 0.0
    report_path: Path | None = None
    table_path: Path | None = None

    @property
    def duration(self) -> float:
        return max(0.0, self.ended - self.started)


def run_local_tuning_job(
    aws: EmbeddedAWS,
    request: dict[str, Any],
    tuning: TuningConfig,
    base_env: dict[str, str],
    sink: LineSink,
    launcher: Launcher | None,
    announce: Callable[[str], None],
) -> TuningJobOutcome:
    """Run (or resume) a CreateHyperParameterTuningJob request with local training jobs.

    `sink` receives each training job's output lines as `(job/host, line)`, and `announce`
    one line per finished training job.
    """
    name = request["HyperParameterTuningJobName"]
    folder = tuning_folder(aws.workspace)
    folder.mkdir(parents=True, exist_ok=True)
    outcome = TuningJobOutcome(status="InProgress", started=time.time())
    definition = request["TrainingJobDefinition"]
    metric_definitions = {
        item["Name"]: item["Regex"]
        for item in definition["AlgorithmSpecification"].get("MetricDefinitions", [])
    }
    models = _ModelIndex(folder / f"{name}.models.json")

    # Training jobs that ended in this run, for the progress count.
    counter = {"ended": 0}
    _create_tuning_job(aws, request)
    aws.patch_job("tuning", name, hyper_parameter_tuning_job_status="InProgress")

    def launch(
        trial_name: str,
        hyperparameters: dict[str, str],
        on_line: Callable[[str], None],
        should_stop: Callable[[], bool],
    ) -> TrainingJobResult:
        stop = threading.Event()

        def trial_sink(host: str, line: str) -> None:
            on_line(line)
            sink(f"{trial_name[len(name) + 1 :]}/{host}", line)
            if should_stop():
                stop.set()

        def watch_for_stop() -> None:
            # A job that prints nothing for a while still stops as soon as it is asked to.
            while not finished.wait(0.2):
                if should_stop():
                    stop.set()
                    return

        finished = threading.Event()
        threading.Thread(target=watch_for_stop, name=f"stop-{trial_name}", daemon=True).start()
        trial = training_job_request(definition, trial_name, hyperparameters)
        try:
            result = run_training_job(aws, trial, base_env, trial_sink, launcher, stop)
        finally:
            finished.set()
        if result.status == COMPLETED:
            models.add(trial_name, result.outputs["model"])
        return TrainingJobResult(result.status, result.failure_reason or None)

    def on_record(record: TrialRecord) -> None:
        counter["ended"] += 1
        announce(f"[{counter['ended']}/{tuning.max_jobs}] " + _trial_line(tuning, name, record))

    try:
        result = run_tuning_job(
            name,
            tuning,
            definition.get("StaticHyperParameters", {}),
            metric_definitions,
            launch,
            folder,
            on_record,
        )
    except BaseException as error:
        aws.patch_job(
            "tuning",
            name,
            hyper_parameter_tuning_job_status="Stopped",
            failure_reason=f"Interrupted: {type(error).__name__}",
            hyper_parameter_tuning_end_time=_now(),
        )
        raise

    outcome.result, outcome.ended = result, time.time()
    best = _best_with_model(result, models.load(), tuning.objective_type == "Maximize")
    if best is None:
        outcome.status = "Failed"
        counts = ", ".join(f"{n} {s}" for s, n in status_counts(result.trials).items() if n)
        outcome.failure_reason = (
            f"no training job of tuning job {name} completed with a value of "
            f"{tuning.objective_metric} ({counts or 'no training jobs'}). Fix: read the failed "
            "jobs' logs, or widen [tuning.ranges]."
        )
    else:
        outcome.status = "Completed"
        outcome.best_job = best.name
        outcome.model_uri = models.load()[best.name]
        outcome.metrics = {metric: [value] for metric, value in best.final_metrics.items()}
    _patch_finished(aws, request, result, best, outcome)
    outcome.table_path = write_trial_table(folder / f"{name}.json", request, result, outcome)
    from harness.report.tuning import write_tuning_report

    outcome.report_path = write_tuning_report(folder / f"{name}.html", tuning, result)
    return outcome


class _ModelIndex:
    """The model artifact of each Completed training job, kept in a JSON file across runs."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()

    def load(self) -> dict[str, str]:
        if not self.path.exists():
            return {}
        try:
            return dict(json.loads(self.path.read_text()))
        except (OSError, ValueError):
            return {}

    def add(self, job: str, model_uri: str) -> None:
        with self.lock:
            models = self.load()
            models[job] = model_uri
            partial = self.path.with_suffix(".json.partial")
            partial.write_text(json.dumps(models, indent=2, sort_keys=True))
            os.replace(partial, self.path)


def _best_with_model(result: TuningResult, models: dict[str, str], maximize: bool):  # type: ignore[no-untyped-def]
    """Return the best training job that left a model: the engine's best when it did, else
    the best Completed one (a Stopped job keeps no model here)."""
    if result.best_trial is not None and result.best_trial.name in models:
        return result.best_trial
    candidates = [
        trial
        for trial in result.trials
        if trial.name in models and trial.objective is not None and trial.status == COMPLETED
    ]
    if not candidates:
        return None
    pick = max if maximize else min
    return pick(candidates, key=lambda trial: trial.objective)


def _create_tuning_job(aws: EmbeddedAWS, request: dict[str, Any]) -> None:
    """Create the tuning job, unless an interrupted run of it created it already."""
    name = request["HyperParameterTuningJobName"]
    try:
        aws.sagemaker.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
    except aws.sagemaker.exceptions.ClientError:
        aws.call("CreateHyperParameterTuningJob", **request)


def _patch_finished(aws, request, result, best, outcome) -> None:  # type: ignore[no-untyped-def]
    name = request["HyperParameterTuningJobName"]
    counts = status_counts(result.trials)
    objective = request["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"]
    fields: dict[str, Any] = {
        "hyper_parameter_tuning_job_status": outcome.status,
        "hyper_parameter_tuning_end_time": _now(),
        "training_job_status_counters": {
            "Completed": counts.get("Completed", 0),
            "InProgress": 0,
            "RetryableError": 0,
            "NonRetryableError": counts.get("Failed", 0),
            "Stopped": counts.get("Stopped", 0),
        },
        "objective_status_counters": {
            "Succeeded": sum(1 for t in result.trials if t.objective is not None),
            "Pending": 0,
            "Failed": sum(1 for t in result.trials if t.objective is None),
        },
        "failure_reason": outcome.failure_reason,
        "tuning_job_completion_details": {
            "NumberOfTrainingJobsObjectiveNotImproving": 0,
        },
        "consumed_resources": {"RuntimeInSeconds": int(outcome.duration)},
    }
    if best is not None:
        summary = {
            "TrainingJobName": best.name,
            "TrainingJobArn": (
                f"arn:aws:sagemaker:{aws.region}:123456789012:training-job/{best.name}"
            ),
            "TuningJobName": name,
            "CreationTime": best.start_time.isoformat() if best.start_time else _now(),
            "TrainingStartTime": best.start_time.isoformat() if best.start_time else _now(),
            "TrainingEndTime": best.end_time.isoformat() if best.end_time else _now(),
            "TrainingJobStatus": best.status,
            "TunedHyperParameters": {
                key: best.hyperparameters[key]
                for key in _tuned_names(request)
                if key in best.hyperparameters
            },
            "FinalHyperParameterTuningJobObjectiveMetric": {
                "Type": objective["Type"],
                "MetricName": objective["MetricName"],
                "Value": best.objective,
            },
            "ObjectiveStatus": "Succeeded",
        }
        fields["best_training_job"] = summary
        fields["OverallBestTrainingJob"] = summary
    aws.patch_job("tuning", name, **fields)


def _tuned_names(request: dict[str, Any]) -> list[str]:
    ranges = request["HyperParameterTuningJobConfig"]["ParameterRanges"]
    return [item["Name"] for kind in ranges.values() for item in kind]


def _trial_line(tuning: TuningConfig, tuning_job_name: str, record: TrialRecord) -> str:
    """Return the progress line of a training job that ended, with its recorded objective."""
    objective = (
        f"{tuning.objective_metric} {record.objective:.4f}"
        if record.objective is not None
        else "no objective"
    )
    tuned = ", ".join(
        f"{r.name}={short_number(record.hyperparameters.get(r.name, '?'))}" for r in tuning.ranges
    )
    duration = record.duration or 0.0
    short_name = record.name[len(tuning_job_name) + 1 :]
    return (
        f"training job {short_name} {record.status.lower()} in {duration:.1f} s: "
        f"{objective} ({tuned})"
    )


def write_trial_table(
    path: Path, request: dict[str, Any], result: TuningResult, outcome: TuningJobOutcome
) -> Path:
    """Write the tuning job's training jobs as JSON, for `harness tuning show`."""
    config = request["HyperParameterTuningJobConfig"]
    table = {
        "tuning_job_name": request["HyperParameterTuningJobName"],
        "strategy": config["Strategy"],
        "objective": config["HyperParameterTuningJobObjective"],
        "status": outcome.status,
        "completion_reason": result.completion_reason,
        "best_training_job": outcome.best_job,
        "model": outcome.model_uri,
        "tuned_hyperparameters": _tuned_names(request),
        "warm_start_trials": result.warm_start_trials,
        "written": _now(),
        "training_jobs": [_trial_entry(trial) for trial in result.trials],
    }
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(table, indent=2, default=str))
    os.replace(partial, path)
    return path


def read_trial_table(workspace: Path, name: str | None = None) -> dict[str, Any]:
    """Return the trial table of tuning job `name`, or of the one written last.

    Raises:
        HarnessError: no tuning job ran in the workspace, or none has that name.
    """
    folder = tuning_folder(workspace)
    tables = sorted(folder.glob("*.json"), key=lambda path: path.stat().st_mtime)
    tables = [path for path in tables if not path.name.endswith(".models.json")]
    if not tables:
        fixtures = workspace / "fixtures" / "tuning"
        hint = (
            " The fixtures workspace has tuning jobs: add -c fixtures/fixtures.ini."
            if fixtures.is_dir() and any(fixtures.glob("*.json"))
            else ""
        )
        raise HarnessError(
            f"no tuning job has finished in the workspace {workspace}.{hint} Fix: run "
            "`harness run` with a [tuning] section (docs/examples/tuning.ini is one), with "
            "the same -c files as `harness tuning show`."
        )
    if name is None:
        path = _last_run_tuning_table(workspace, folder) or tables[-1]
    else:
        path = folder / f"{name}.json"
        if path not in tables:
            known = ", ".join(p.stem for p in tables)
            raise HarnessError(f"no tuning job {name!r} in {folder}. Known tuning jobs: {known}.")
    return json.loads(path.read_text())


def _last_run_tuning_table(workspace: Path, folder: Path) -> Path | None:
    """Return the trial table of the tuning job that the latest run used, cached or not."""
    records = sorted((workspace / "runs").glob("*.json"))
    if not records:
        return None
    try:
        steps = json.loads(records[-1].read_text()).get("steps", [])
    except (OSError, ValueError):
        return None
    for step in steps:
        path = folder / f"{step.get('name', '')}.json"
        if step.get("step") == "train" and path.is_file():
            return path
    return None


def _trial_entry(trial) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    entry = asdict(trial)
    entry["duration"] = trial.duration
    return entry


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat()

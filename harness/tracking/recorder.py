"""Record a run of the pipeline in MLflow: configuration, metrics, tags and reports.

One MLflow run per `harness run` (and per rerun of `harness watch`), tagged
`harness.kind=run`. Each job step gets a nested run (`harness.kind=job`) and each training
job of a tuning job a run nested under its step's run (`harness.kind=trial`). Tracking is a
side channel: every MLflow error is logged as a warning and never fails the pipeline run.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.config import Config
from harness.report.profile import profile_folder
from harness.tracking.settings import TrackingSettings, disable_telemetry, tracking_settings

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from harness.local.pipeline import RunRecord, StepOutcome
    from harness.plan.build import Plan

logger = logging.getLogger(__name__)

# Limits of MLflow 3.17 (mlflow/utils/validation.py): a parameter value has at most 6000
# characters, and one log_batch call carries at most 100 parameters and tags together and
# 1000 metrics.
MAX_PARAM_VALUE_LENGTH = 6000
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000
# MLflow 3.17 names may contain only word characters, ".", "-", " ", ":" and "/" (no ":" on
# Windows, which harness does not support).
_INVALID_NAME_CHARACTERS = re.compile(r"[^\w.\- :/]")


def mlflow_name(name: str) -> str:
    """Return `name` with the characters MLflow rejects in keys replaced ("@" becomes "_at_")."""
    return _INVALID_NAME_CHARACTERS.sub("_", name.replace("@", "_at_"))


def open_client(settings: TrackingSettings) -> tuple[MlflowClient, str]:
    """Return an MLflow client of the settings' store and the id of the experiment.

    Creates the experiment, with its artifact location, when it does not exist yet.
    """
    disable_telemetry()
    from mlflow import MlflowClient

    # MLflow logs store creation and schema upgrades at INFO to the terminal, between the
    # run's progress lines.
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    client = MlflowClient(tracking_uri=settings.tracking_uri)
    experiment = client.get_experiment_by_name(settings.experiment)
    if experiment is not None:
        return client, experiment.experiment_id
    experiment_id = client.create_experiment(
        settings.experiment, artifact_location=settings.artifact_location
    )
    return client, experiment_id


class RunTracker:
    """The MLflow run of one pipeline run, recorded after the run by a detached process.

    Importing MLflow and opening its sqlite store take seconds, longer than a run whose steps
    all come from the cache. So `finish` writes the contents of the MLflow run to
    `<workspace>/mlflow/pending/<run id>.json` and starts `python -m harness.tracking.flush`,
    which records it and deletes the file. `harness runs` and `harness ui` first record what
    is still pending. Nothing here raises: a failure is logged and the run goes on.
    """

    def __init__(self, settings: TrackingSettings) -> None:
        self.settings = settings
        self._tags: dict[str, str] | None = None
        self._start_ms = 0

    @classmethod
    def start(cls, config: Config, plan: Plan, workspace: Path) -> RunTracker:
        tracker = cls(tracking_settings(config, workspace))
        if not tracker.settings.enabled:
            return tracker
        tracker._start_ms = _now_ms()
        try:
            tracker._tags = tracker._run_tags(config, plan)
        except Exception as error:  # noqa: BLE001 - a tracking failure must not fail the run
            logger.warning("experiment tracking is off for this run: %s", error)
        return tracker

    def _run_tags(self, config: Config, plan: Plan) -> dict[str, str]:
        from harness.plan.build import hash_files
        from harness.plan.code import step_code_files

        root = plan.code.folder
        code_digests = {
            f"harness.code.{step}": hash_files(
                root, step_code_files(root, config.project_root / step_config.entry_point)
            )
            for step, step_config in config.steps.items()
        }
        return {
            **code_digests,
            "mlflow.runName": f"{plan.pipeline} {plan.run_id}",
            "harness.kind": "run",
            "harness.run_id": plan.run_id,
            "harness.pipeline": plan.pipeline,
            "harness.target": config.session.target,
            "harness.config_sources": ", ".join(config.sources),
            "harness.code.bundle": plan.code.digest,
            **_git_tags(config.project_root),
        }

    def finish(
        self,
        config: Config,
        record: RunRecord,
        digests: dict[str, dict[str, str]],
        workspace: Path,
    ) -> None:
        """Leave the finished run for the MLflow writer, and start the writer."""
        if self._tags is None:
            return
        from dataclasses import asdict

        from harness.tracking.flush import pending_folder, start_writer

        payload = {
            "settings": asdict(self.settings),
            "tags": self._tags,
            "start_ms": self._start_ms,
            "parameters": {
                section: {key: value for key, (value, _origin) in keys.items()}
                for section, keys in config.effective().items()
            },
            "job_steps": sorted(config.steps),
            "record": asdict(record),
            "digests": digests,
            "workspace": str(workspace),
        }
        try:
            folder = pending_folder(workspace)
            folder.mkdir(parents=True, exist_ok=True)
            target = folder / f"{record.run_id}.json"
            partial = target.with_name(target.name + ".partial")
            partial.write_text(json.dumps(payload, default=str))
            partial.replace(target)
            start_writer(workspace)
        except Exception as error:  # noqa: BLE001 - a tracking failure must not fail the run
            logger.warning(
                "experiment tracking is off for this run: cannot leave it for MLflow in %s: %s",
                workspace / "mlflow",
                error,
            )


def record_promotion(
    config: Config,
    plan: Plan,
    workspace: Path,
    execution_arn: str,
    pipeline_arn: str,
    parameters: Mapping[str, str],
) -> str | None:
    """Record a started cloud pipeline execution as an MLflow run. Return the run's MLflow id.

    The run has a local run's parameters and tags (configuration, code digests, git commit,
    target `cloud`), the pipeline's ARN, the execution's ARN and parameters, and the status
    Executing until `finish_promotion` ends it. Its run id is the execution's id. Returns
    None when tracking is off or MLflow fails (logged): promote goes on either way.
    """
    settings = tracking_settings(config, workspace)
    if not settings.enabled:
        return None
    execution_id = execution_arn.rsplit("/", 1)[-1]
    try:
        tags = RunTracker(settings)._run_tags(config, plan)
        tags.update(
            {
                "mlflow.runName": f"{plan.pipeline} {execution_id}",
                "harness.run_id": execution_id,
                "harness.status": "Executing",
                "harness.pipeline_arn": pipeline_arn,
                "harness.pipeline_execution_arn": execution_arn,
            }
        )
        for name, value in sorted(parameters.items()):
            tags[mlflow_name(f"harness.pipeline_parameter.{name}")] = value
        client, experiment_id = open_client(settings)
        run = client.create_run(experiment_id, start_time=_now_ms(), tags=tags)
        _log_batches(client, run.info.run_id, _config_params(config), [], [])
        return run.info.run_id
    except Exception as error:  # noqa: BLE001 - a tracking failure must not fail the promote
        logger.warning(
            "execution %s is not recorded in MLflow (%s): %s", execution_id, settings.uri, error
        )
        return None


def finish_promotion(config: Config, workspace: Path, mlflow_run_id: str, status: str) -> None:
    """End the MLflow run of a followed cloud execution with the execution's final status."""
    settings = tracking_settings(config, workspace)
    try:
        client, _experiment_id = open_client(settings)
        client.set_tag(mlflow_run_id, "harness.status", status)
        _terminate(
            client,
            mlflow_run_id,
            {"Succeeded": "FINISHED", "Stopped": "KILLED"}.get(status, "FAILED"),
        )
    except Exception as error:  # noqa: BLE001 - a tracking failure must not fail the promote
        logger.warning("the status of MLflow run %s is not recorded: %s", mlflow_run_id, error)


def record_pending(client: MlflowClient, experiment_id: str, payload: dict[str, Any]) -> str:
    """Record one pending run (as `finish` left it) in MLflow; return the MLflow run id."""
    from harness.local.pipeline import RunRecord, StepOutcome

    fields = dict(payload["record"])
    fields["steps"] = [StepOutcome(**step) for step in fields["steps"]]
    record = RunRecord(**fields)
    config = _RecordedConfig(payload["parameters"], payload["job_steps"])
    run = client.create_run(experiment_id, start_time=payload["start_ms"], tags=payload["tags"])
    _record(client, run.info.run_id, config, record, payload["digests"], Path(payload["workspace"]))
    return run.info.run_id


class _RecordedConfig:
    """The parts of a Config that _record reads, rebuilt from a pending run."""

    def __init__(self, parameters: dict[str, dict[str, str]], job_steps: list[str]) -> None:
        self._parameters = parameters
        self.steps = dict.fromkeys(job_steps)

    def effective(self) -> dict[str, dict[str, tuple[str, None]]]:
        return {
            section: {key: (value, None) for key, value in keys.items()}
            for section, keys in self._parameters.items()
        }


def _record(
    client: MlflowClient,
    run_id: str,
    config: Config,
    record: RunRecord,
    digests: dict[str, dict[str, str]],
    workspace: Path,
) -> None:
    from mlflow.entities import Metric, RunTag

    now = _now_ms()
    params = _config_params(config)
    metrics: list[Metric] = []
    tags: dict[str, str] = {
        "harness.status": record.status,
        "harness.duration_seconds": f"{record.duration:.1f}",
    }
    hits = 0
    job_steps = [s for s in record.steps if s.step in config.steps]
    for outcome in job_steps:
        metrics.extend(_step_metrics(outcome, now))
        if outcome.status != "Skipped":
            tags[f"harness.cache.{outcome.step}"] = "hit" if outcome.cached else "miss"
            hits += outcome.cached
        tags[f"harness.job.{outcome.step}"] = outcome.name
        if outcome.cache_key:
            tags[f"harness.cache_key.{outcome.step}"] = outcome.cache_key
    tags["harness.cache_hits"] = f"{hits}/{len(job_steps)}"
    for step, outputs in sorted(digests.items()):
        for output, digest in sorted(outputs.items()):
            tags[mlflow_name(f"harness.data.{step}.{output}")] = digest
    # The runner keeps evaluation.json in the record whenever the evaluate step completed.
    metrics.extend(_evaluation_metrics(record.evaluation, now))
    if record.condition is not None:
        tags["harness.condition"] = "true" if record.condition["outcome"] else "false"
    if record.model_package_arn:
        tags["harness.model_package_arn"] = record.model_package_arn
        tags["harness.approval_status"] = record.approval_status

    _log_batches(client, run_id, params, metrics, [RunTag(k, v) for k, v in tags.items()])
    _log_reports(client, run_id, record, workspace)
    for outcome in job_steps:
        _record_job(client, run_id, outcome, workspace, now)
    status = {"Completed": "FINISHED", "Stopped": "KILLED"}.get(record.status, "FAILED")
    _terminate(client, run_id, status)


def _config_params(config: Config | _RecordedConfig) -> list[Any]:
    """Return the effective configuration as MLflow parameters named `section.key`."""
    from mlflow.entities import Param

    return [
        Param(mlflow_name(f"{section}.{key}"), _param_value(value))
        for section, keys in sorted(config.effective().items())
        for key, (value, _origin) in sorted(keys.items())
    ]


def _record_job(
    client: MlflowClient, parent_id: str, outcome: StepOutcome, workspace: Path, now: int
) -> None:
    """Record one job step as a run nested under the pipeline run, with its training jobs."""
    from mlflow.entities import Metric, Param

    parent = client.get_run(parent_id)
    tags = {
        "mlflow.parentRunId": parent_id,
        "mlflow.runName": f"{outcome.step}: {outcome.name}",
        "harness.kind": "job",
        "harness.step": outcome.step,
        "harness.job": outcome.name,
        "harness.status": outcome.status,
        "harness.cache": "hit" if outcome.cached else "miss",
    }
    job = client.create_run(parent.info.experiment_id, start_time=now, tags=tags)
    metrics = [
        Metric(mlflow_name(name), value, now, index)
        for name, values in outcome.metrics.items()
        for index, value in enumerate(values, start=1)
    ]
    if outcome.status != "Skipped" and not outcome.cached:
        metrics.append(Metric("duration_seconds", outcome.duration, now, 0))
    _log_batches(client, job.info.run_id, [], metrics, [])
    _terminate(client, job.info.run_id, _mlflow_status(outcome.status))

    table_path = workspace / "tuning" / f"{outcome.name}.json"
    if outcome.step != "train" or not table_path.is_file():
        return
    table = json.loads(table_path.read_text())
    client.log_artifact(job.info.run_id, str(table_path), "tuning")
    objective = table.get("objective", {}).get("MetricName", "")
    for trial in table.get("training_jobs", []):
        trial_run = client.create_run(
            parent.info.experiment_id,
            start_time=now,
            tags={
                "mlflow.parentRunId": job.info.run_id,
                "mlflow.runName": trial["name"],
                "harness.kind": "trial",
                "harness.job": trial["name"],
                "harness.status": trial["status"],
            },
        )
        params = [
            Param(mlflow_name(name), _param_value(value))
            for name, value in sorted(trial["hyperparameters"].items())
        ]
        trial_metrics = [
            Metric(mlflow_name(objective), value, now, index)
            for index, value in enumerate(trial.get("intermediate_values", []), start=1)
        ]
        trial_metrics += [
            Metric(mlflow_name(name), value, now, 0)
            for name, value in trial.get("final_metrics", {}).items()
            if name != objective
        ]
        _log_batches(client, trial_run.info.run_id, params, trial_metrics, [])
        _terminate(client, trial_run.info.run_id, _mlflow_status(trial["status"]))


def _step_metrics(outcome: StepOutcome, now: int) -> list[Any]:
    """Return the step's metrics, one value per epoch (MLflow step 1, 2, ...), and its duration."""
    from mlflow.entities import Metric

    metrics = [
        Metric(mlflow_name(f"{outcome.step}.{name}"), value, now, index)
        for name, values in outcome.metrics.items()
        for index, value in enumerate(values, start=1)
    ]
    if outcome.status != "Skipped" and not outcome.cached:
        metrics.append(Metric(f"{outcome.step}.duration_seconds", outcome.duration, now, 0))
    return metrics


def _report_file(
    record: RunRecord, workspace: Path, step: str, output: str, file_name: str
) -> Path | None:
    """Return the workspace copy of a report that a completed step wrote, or None."""
    outcome = record.step(step)
    if outcome is None or outcome.status != "Completed" or output not in outcome.outputs:
        return None
    uri = outcome.outputs[output].rstrip("/") + "/" + file_name
    return workspace / "s3" / uri.removeprefix("s3://")


def _evaluation_metrics(evaluation: dict[str, Any] | None, now: int) -> list[Any]:
    """Return the model's ranking metrics of evaluation.json as `evaluate.<name>` metrics."""
    from mlflow.entities import Metric

    if not evaluation:
        return []
    metrics = []
    for name, summary in evaluation.get("ranking_metrics", {}).items():
        value = summary.get("value") if isinstance(summary, dict) else summary
        if isinstance(value, (int, float)):
            metrics.append(Metric(mlflow_name(f"evaluate.{name}"), float(value), now, 0))
    return metrics


def _log_reports(client: MlflowClient, run_id: str, record: RunRecord, workspace: Path) -> None:
    """Attach the run record and, where the run has them, the evaluation and explainability
    reports (read from the workspace copy of the embedded S3)."""
    run_file = workspace / "runs" / f"{record.run_id}.json"
    if run_file.is_file():
        client.log_artifact(run_id, str(run_file), "run")
    reports = {
        "evaluate": ("evaluation", "evaluation.json", "evaluation"),
        "explain": ("explain", "analysis.json", "explainability"),
    }
    train = record.step("train")
    if train is not None and train.status == "Completed" and not train.cached:
        profile = profile_folder(workspace, train.name) / "step_time.json"
        if profile.is_file():
            client.log_artifact(run_id, str(profile), "profile")
            _log_step_time(client, run_id, json.loads(profile.read_text()))
    for step, (output, file_name, folder) in reports.items():
        local = _report_file(record, workspace, step, output, file_name)
        if local is None:
            continue
        if local.is_file():
            client.log_artifact(run_id, str(local), folder)
        else:
            logger.warning("%s report %s not found in the workspace; not attached", step, local)


def _log_step_time(client: MlflowClient, run_id: str, profile: dict[str, Any]) -> None:
    """Log a profiled train job's step-time breakdown as `train.profile.*` metrics."""
    from mlflow.entities import Metric

    now = _now_ms()
    names = ("ms_per_step", "input_ms_per_step", "compute_ms_per_step", "input_share")
    metrics = [
        Metric(f"train.profile.{name}", float(profile[name]), now, 0)
        for name in names
        if isinstance(profile.get(name), (int, float))
    ]
    _log_batches(client, run_id, [], metrics, [])


def _log_batches(
    client: MlflowClient, run_id: str, params: list, metrics: list, tags: list
) -> None:
    for start in range(0, len(params), MAX_PARAMS_TAGS_PER_BATCH):
        client.log_batch(run_id, params=params[start : start + MAX_PARAMS_TAGS_PER_BATCH])
    for start in range(0, len(metrics), MAX_METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=metrics[start : start + MAX_METRICS_PER_BATCH])
    for start in range(0, len(tags), MAX_PARAMS_TAGS_PER_BATCH):
        client.log_batch(run_id, tags=tags[start : start + MAX_PARAMS_TAGS_PER_BATCH])


def _terminate(client: MlflowClient, run_id: str, status: str) -> None:
    try:
        client.set_terminated(run_id, status=status, end_time=_now_ms())
    except Exception as error:  # noqa: BLE001 - a tracking failure must not fail the run
        logger.warning("cannot end MLflow run %s: %s", run_id, error)


def _mlflow_status(status: str) -> str:
    return {"Completed": "FINISHED", "Stopped": "KILLED", "Skipped": "FINISHED"}.get(
        status, "FAILED"
    )


def _param_value(value: str) -> str:
    # NOTE: a longer value is cut to MLflow's limit. The configuration files that the
    # harness.config_sources tag names contain the whole value.
    return str(value)[:MAX_PARAM_VALUE_LENGTH]


def _git_tags(project_root: Path) -> dict[str, str]:
    """Return MLflow's git tags for the project: the commit and whether files changed since."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=project_root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        changes = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=project_root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError) as error:
        logger.debug("no git commit for %s: %s", project_root, error)
        return {}
    return {"mlflow.source.git.commit": commit, "harness.git.dirty": str(bool(changes)).lower()}


def _now_ms() -> int:
    return int(time.time() * 1000)

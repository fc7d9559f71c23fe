"""Run a plan on the local target: every job a local process against the embedded AWS."""

from __future__ import annotations

import datetime
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.config import Config
from harness.errors import HarnessError
from harness.local.conditions import SYMBOLS, JsonPathError, evaluate_condition, json_get
from harness.local.embedded import EmbeddedAWS, split_s3_uri
from harness.local.jobs import JobResult, deterministic_tar, run_processing_job, run_training_job
from harness.plan.build import Plan, PlannedJob

logger = logging.getLogger(__name__)


@dataclass
class StepOutcome:
    """The outcome of one step of a run."""

    step: str
    name: str
    status: str  # Completed | Failed | Stopped | Skipped
    duration: float = 0.0
    detail: str = ""
    failure_reason: str = ""
    log_path: str = ""
    log_tail: list[str] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, list[float]] = field(default_factory=dict)


@dataclass
class RunRecord:
    """The record of one run, saved as `<workspace>/runs/<run_id>.json`."""

    run_id: str
    pipeline: str
    started: str
    status: str = "InProgress"
    duration: float = 0.0
    steps: list[StepOutcome] = field(default_factory=list)
    evaluation: dict[str, Any] | None = None
    condition: dict[str, Any] | None = None
    model_package_arn: str = ""
    approval_status: str = ""
    workspace: str = ""
    config_sources: list[str] = field(default_factory=list)

    def step(self, name: str) -> StepOutcome | None:
        return next((s for s in self.steps if s.step == name), None)

    @property
    def failed(self) -> bool:
        return any(s.status in ("Failed", "Stopped") for s in self.steps)


class RunEvents:
    """Callbacks through which the runner reports progress; the CLI prints them."""

    def step_started(self, job: PlannedJob) -> None: ...

    def job_line(self, job: PlannedJob, host: str, line: str) -> None: ...

    def step_finished(self, job: PlannedJob, outcome: StepOutcome) -> None: ...

    def message(self, text: str) -> None: ...


def new_run_id() -> str:
    """Return a UTC timestamp of 14 digits; job names carry it, so runs never collide."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y%m%d%H%M%S")


def workspace_of(config: Config) -> Path:
    return (config.project_root / config.pipeline.workspace).resolve()


class LocalRunner:
    """Execute a plan's jobs in graph order and record each one in the embedded AWS."""

    def __init__(self, config: Config, plan: Plan, events: RunEvents | None = None) -> None:
        self.config = config
        self.plan = plan
        self.events = events or RunEvents()
        self.workspace = workspace_of(config)

    def run(self) -> RunRecord:
        started = time.time()
        record = RunRecord(
            run_id=self.plan.run_id,
            pipeline=self.plan.pipeline,
            started=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            workspace=str(self.workspace),
            config_sources=list(self.config.sources),
        )
        with EmbeddedAWS(self.workspace, self.config.session.region) as aws:
            self.events.message(f"embedded S3 and SageMaker API on {aws.endpoint_url}")
            self._stage(aws)
            env = {**_inherited_environment(), **aws.environment()}
            try:
                for job in self.plan.jobs:
                    outcome = self._run_step(aws, job, record, env)
                    record.steps.append(outcome)
                    self.events.step_finished(job, outcome)
            except KeyboardInterrupt:
                record.status = "Stopped"
                self._save(record, started)
                raise
        record.status = "Failed" if record.failed else "Completed"
        self._save(record, started)
        return record

    def _save(self, record: RunRecord, started: float) -> None:
        record.duration = time.time() - started
        runs = self.workspace / "runs"
        runs.mkdir(parents=True, exist_ok=True)
        target = runs / f"{record.run_id}.json"
        partial = target.with_suffix(".json.partial")
        partial.write_text(json.dumps(asdict(record), indent=2, default=str))
        os.replace(partial, target)

    # Staging: buckets, code and the raw dataset.

    def _stage(self, aws: EmbeddedAWS) -> None:
        buckets = {self.config.session.bucket, split_s3_uri(self.config.pipeline.output_prefix)[0]}
        for bucket in sorted(buckets):
            aws.ensure_bucket(bucket)

        bundle = self.plan.code
        bucket, pipeline = self.config.session.bucket, self.plan.pipeline
        archive_uri = bundle.archive_uri(bucket, pipeline)
        if not aws.list_objects(archive_uri):
            archive = self.workspace / "code" / f"{bundle.digest[:16]}.tar.gz"
            deterministic_tar(bundle.folder, archive)
            aws.put_file(archive, archive_uri)
            source_uri = bundle.source_uri(bucket, pipeline)
            for path in bundle.files:
                aws.put_file(path, source_uri + path.relative_to(bundle.folder).as_posix())
            self.events.message(f"uploaded step code to {source_uri}")

        if self.plan.dataset_local is not None:
            if not aws.list_objects(self.plan.dataset_uri):
                count = len(aws.put_tree(self.plan.dataset_local, self.plan.dataset_uri))
                self.events.message(
                    f"uploaded {count} dataset files from {self.plan.dataset_local} "
                    f"to {self.plan.dataset_uri}"
                )
        elif not aws.list_objects(self.plan.dataset_uri):
            raise HarnessError(
                f"[pipeline] dataset = {self.config.pipeline.dataset!r}: no objects under that "
                "prefix in the embedded S3. Fix: point dataset at a local folder, which harness "
                "uploads, or at a prefix an earlier run uploaded."
            )

    # Steps.

    def _run_step(
        self, aws: EmbeddedAWS, job: PlannedJob, record: RunRecord, env: dict[str, str]
    ) -> StepOutcome:
        blocked = [
            dep
            for dep in job.depends_on
            if (outcome := record.step(dep)) is not None and outcome.status != "Completed"
        ]
        if blocked:
            # Name the step that failed, not every skipped step between it and this one.
            causes = [s.step for s in record.steps if s.status in ("Failed", "Stopped")]
            return StepOutcome(
                job.step,
                job.name,
                "Skipped",
                detail=f"{', '.join(causes or blocked)} did not complete",
            )
        if job.branch == "if" and record.condition and not record.condition["outcome"]:
            return StepOutcome(job.step, job.name, "Skipped", detail="condition is false")

        self.events.step_started(job)

        def sink(host: str, line: str) -> None:
            self.events.job_line(job, host, line)

        if job.kind == "training":
            return _from_result(job, run_training_job(aws, job.request, env, sink))
        if job.kind == "processing":
            return _from_result(job, run_processing_job(aws, job.request, env, sink))
        if job.kind == "condition":
            return self._condition(aws, job, record)
        if job.kind == "register":
            return self._register(aws, job, record)
        raise AssertionError(f"unknown job kind {job.kind}")

    def _condition(self, aws: EmbeddedAWS, job: PlannedJob, record: RunRecord) -> StepOutcome:
        started = time.time()
        report_uri = self.plan.evaluation_report_uri()
        get = job.request["LeftValue"]["Std:JsonGet"]
        try:
            report = json.loads(aws.get_bytes(report_uri))
            record.evaluation = report
            value = float(json_get(report, get["Path"]))
        except (JsonPathError, ValueError, TypeError) as error:
            return StepOutcome(
                job.step,
                job.name,
                "Failed",
                time.time() - started,
                failure_reason=(
                    f"[condition] json_path = {get['Path']!r}: cannot read a number from "
                    f"{report_uri}: {error}. Fix: set [condition] json_path to a path that "
                    "evaluation.json contains, such as ranking_metrics.ndcg_at_10.value."
                ),
            )
        threshold = float(job.request["RightValue"])
        outcome = evaluate_condition(job.request["Type"], value, threshold)
        record.condition = {
            "metric": job.request.get("Metric", get["Path"]),
            "json_path": get["Path"],
            "value": value,
            "comparison": job.request["Type"],
            "threshold": threshold,
            "outcome": outcome,
        }
        return StepOutcome(
            job.step,
            job.name,
            "Completed",
            time.time() - started,
            detail=f"{value:.4f} {SYMBOLS[job.request['Type']]} {threshold}: {str(outcome).lower()}",
        )

    def _register(self, aws: EmbeddedAWS, job: PlannedJob, record: RunRecord) -> StepOutcome:
        started = time.time()
        request = dict(job.request)
        if record.condition is None:
            # Without the quality gate, a person decides, as SageMaker's default status says.
            request["ModelApprovalStatus"] = "PendingManualApproval"
        elif record.condition["outcome"]:
            request["ModelApprovalStatus"] = "Approved"
        else:
            request["ModelApprovalStatus"] = "Rejected"

        if record.condition:
            request["CustomerMetadataProperties"] = {
                **request["CustomerMetadataProperties"],
                "condition": (
                    f"{record.condition['metric']} = {record.condition['value']:.4f}, "
                    f"{record.condition['comparison']} {record.condition['threshold']}"
                ),
            }

        group = request["ModelPackageGroupName"]
        groups = aws.sagemaker.list_model_package_groups(NameContains=group)[
            "ModelPackageGroupSummaryList"
        ]
        if not any(g["ModelPackageGroupName"] == group for g in groups):
            aws.call(
                "CreateModelPackageGroup",
                ModelPackageGroupName=group,
                ModelPackageGroupDescription=f"Models of the {self.plan.pipeline} pipeline",
            )
        arn = aws.call("CreateModelPackage", **request)["ModelPackageArn"]

        record.model_package_arn = arn
        record.approval_status = request["ModelApprovalStatus"]
        return StepOutcome(
            job.step,
            group,
            "Completed",
            time.time() - started,
            detail=f"{request['ModelApprovalStatus']}, version {arn.rsplit('/', 1)[-1]}",
            outputs={"model_package_arn": arn},
        )


def _from_result(job: PlannedJob, result: JobResult) -> StepOutcome:
    return StepOutcome(
        step=job.step,
        name=job.name,
        status=result.status,
        duration=result.duration,
        failure_reason=result.failure_reason,
        log_path=str(result.log_path or ""),
        log_tail=result.log_tail() if result.status != "Completed" else [],
        outputs=result.outputs,
        metrics=result.metrics,
    )


def _inherited_environment() -> dict[str, str]:
    """Return the harness process's environment minus anything that reaches real AWS."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "SAGEMAKER_", "SM_"))
    }

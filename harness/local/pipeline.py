"""Run a plan on the local target: every job a local process against the embedded AWS."""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.config import Config
from harness.errors import HarnessError
from harness.local import horovod_jobs
from harness.local.cache import CacheEntry, StepCache, cache_key, canonical_digest
from harness.local.conditions import SYMBOLS, JsonPathError, evaluate_condition, json_get
from harness.local.embedded import EmbeddedAWS, journal_contains, split_s3_uri
from harness.local.jobs import (
    JobResult,
    Launcher,
    deterministic_tar,
    launcher_kind,
    run_processing_job,
    run_training_job,
)
from harness.local.processes import end_orphans
from harness.plan.build import EXPLAINABILITY_REPORT, Plan, PlannedJob, hash_files
from harness.plan.code import step_code_files
from harness.tracking import RunTracker
from harness.tuning.records import status_counts

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
    # True when the outputs came from an earlier run's cache entry and no job ran.
    cached: bool = False
    cache_key: str = ""


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
    """Execute a plan's jobs in graph order and record each one in the embedded AWS.

    A job whose cache key matches a valid entry is not run: its earlier outputs feed the
    jobs downstream. The embedded AWS starts only when a job has to run, so a run in which
    every step comes from the cache starts no server at all.
    """

    def __init__(
        self,
        config: Config,
        plan: Plan,
        events: RunEvents | None = None,
        *,
        use_cache: bool = True,
        rerun_from: str | None = None,
        aws: EmbeddedAWS | None = None,
        launcher: Launcher | None = None,
    ) -> None:
        self.config = config
        self.plan = plan
        self.events = events or RunEvents()
        self.workspace = workspace_of(config)
        self.cache = StepCache(self.workspace)
        self.use_cache = use_cache
        self.forced = _downstream_of(plan, rerun_from) if rerun_from else set()
        # An embedded AWS passed in (by `harness watch`) stays up after the run.
        self._aws: EmbeddedAWS | None = aws
        self._owns_aws = aws is None
        self._staged = False
        self._env: dict[str, str] = {}
        self.launcher = launcher
        self.tracker: RunTracker | None = None
        # Where each step's outputs are in this run (fresh or from the cache), and their digests.
        self.resolved: dict[str, dict[str, str]] = {"dataset": {"raw": plan.dataset_uri}}
        self.digests: dict[str, dict[str, str]] = {}
        if plan.dataset_digest:
            self.digests["dataset"] = {"raw": plan.dataset_digest}

    def aws(self) -> EmbeddedAWS:
        """Return the embedded AWS, starting it and staging code and data on first use."""
        if self._aws is None:
            self._aws = EmbeddedAWS(self.workspace, self.config.session.region).start()
            self.events.message(f"embedded S3 and SageMaker API on {self._aws.endpoint_url}")
        if not self._staged:
            self._stage(self._aws)
            self._env = {**_inherited_environment(), **self._aws.environment()}
            self._staged = True
        return self._aws

    def run(self) -> RunRecord:
        started = time.time()
        record = RunRecord(
            run_id=self.plan.run_id,
            pipeline=self.plan.pipeline,
            started=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            workspace=str(self.workspace),
            config_sources=list(self.config.sources),
        )
        end_orphans(self.workspace)
        self._require_horovod()
        self._prestart_workers()
        self.tracker = RunTracker.start(self.config, self.plan, self.workspace)
        try:
            if "raw" not in self.digests.get("dataset", {}):
                self.digests["dataset"] = {"raw": self._s3_dataset_digest()}
            for job in self.plan.jobs:
                outcome = self._run_step(job, record)
                record.steps.append(outcome)
                if job.step == "evaluate" and outcome.status == "Completed":
                    # The summary, `harness watch` and the MLflow record read it, with or
                    # without a condition step.
                    record.evaluation = self._read_evaluation_report()
                self.events.step_finished(job, outcome)
        except KeyboardInterrupt:
            record.status = "Stopped"
            self._save(record, started)
            # The MLflow run (KILLED) shows the steps that finished before the interruption.
            self.tracker.finish(self.config, record, self.digests, self.workspace)
            raise
        finally:
            if self._aws is not None and self._owns_aws:
                self._aws.stop()
        record.status = "Failed" if record.failed else "Completed"
        self._save(record, started)
        self.tracker.finish(self.config, record, self.digests, self.workspace)
        return record

    def _require_horovod(self) -> None:
        """Raise HarnessError, before any job starts, when a distributed train job cannot run."""
        for job in self.plan.jobs:
            if job.kind not in ("training", "tuning"):
                continue
            request = job.request.get("TrainingJobDefinition", job.request)
            ranks = horovod_jobs.rank_count(request)
            if ranks > 1:
                step = self.config.steps[job.step]
                horovod_jobs.require_horovod(
                    job.name,
                    ranks,
                    f"[{job.step}] instance_count = {step.instance_count}, "
                    f"processes_per_host = {step.processes_per_host}",
                )

    def _prestart_workers(self) -> None:
        """Have the launcher start a warm worker for each kind of job in the plan, in the
        background, so that a job served from the cache now finds its worker warm on the next run."""
        if self.launcher is None:
            return
        for kind, env in self.worker_environments().items():
            self.launcher.prestart([kind], sys.executable, env)

    def worker_environments(self) -> dict[str, dict[str, str]]:
        """Return, for each kind of warm worker the plan's jobs use, the environment of the
        first such job, without the variables that differ from job to job."""
        base = self._env or {
            **_inherited_environment(),
            **(self._aws.environment() if self._aws is not None else {}),
        }
        environments: dict[str, dict[str, str]] = {}
        for job in self.plan.jobs:
            if job.kind == "tuning":
                kind, request = "training", job.request["TrainingJobDefinition"]
            elif job.kind in ("training", "processing"):
                kind, request = launcher_kind(job.request), job.request
            else:
                continue
            environments.setdefault(kind, {**base, **request.get("Environment", {})})
        return environments

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
            source_uri = bundle.source_uri(bucket, pipeline)
            aws.put_files(
                (path, source_uri + path.relative_to(bundle.folder).as_posix())
                for path in bundle.files
            )
            # The archive goes last: its presence means that the whole bundle is there.
            aws.put_file(archive, archive_uri)
            self.events.message(f"uploaded step code to {source_uri}")

        if self.plan.dataset_local is not None:
            if not aws.list_objects(self.plan.dataset_uri):
                count = len(aws.put_tree(self.plan.dataset_local, self.plan.dataset_uri))
                self.events.message(
                    f"uploaded {count} dataset files from {self.plan.dataset_local} "
                    f"to {self.plan.dataset_uri}"
                )
        elif not _has_objects(aws, self.plan.dataset_uri):
            raise HarnessError(
                f"[pipeline] dataset = {self.config.pipeline.dataset!r}: no objects under that "
                "prefix in the embedded S3. Fix: point dataset at a local folder, which harness "
                "uploads, or at a prefix an earlier run uploaded."
            )

    def _s3_dataset_digest(self) -> str:
        """Hash the listing (key, size, ETag) of a dataset that lives in S3."""
        aws = self.aws()
        bucket, prefix = split_s3_uri(self.plan.dataset_uri)
        listing = []
        for page in aws.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                listing.append((item["Key"], item["Size"], item["ETag"]))
        return canonical_digest(sorted(listing))

    # Steps.

    def _run_step(self, job: PlannedJob, record: RunRecord) -> StepOutcome:
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

        if job.kind == "condition":
            self.events.step_started(job)
            return self._condition(job, record)
        if job.kind == "register":
            return self._register(job, record)
        if job.kind not in ("training", "processing", "tuning"):
            raise AssertionError(f"unknown job kind {job.kind}")

        key = self._cache_key(job)
        if self.use_cache and job.step not in self.forced:
            entry = self.cache.lookup(job.step, key)
            if entry is not None:
                return self._from_cache(job, entry)

        def sink(host: str, line: str) -> None:
            self.events.job_line(job, host, line)

        if job.kind == "tuning":
            return self._tuning(job, key, sink)
        self.events.step_started(job)

        aws = self.aws()
        request = self._resolve_inputs(job)
        runner = run_training_job if job.kind == "training" else run_processing_job
        outcome = _from_result(job, runner(aws, request, self._env, sink, self.launcher))
        if outcome.status == "Completed":
            entry = self.cache.store(
                self.cache.entry_for(
                    job.step,
                    key,
                    job.name,
                    self.plan.run_id,
                    outcome.outputs,
                    metrics=outcome.metrics,
                    duration=outcome.duration,
                )
            )
            self._resolve(job.step, entry)
        outcome.cache_key = key
        return outcome

    def _tuning(self, job: PlannedJob, key: str, sink: Any) -> StepOutcome:
        """Run the train step as a hyperparameter tuning job and keep its best model."""
        from harness.local.tuning_job import run_local_tuning_job, tuning_job_name

        assert self.config.tuning is not None
        aws = self.aws()
        # Named by what it computes, so that a rerun after an interruption resumes it. A rerun
        # that --no-cache or --from requests starts a new tuning job.
        static = job.request["TrainingJobDefinition"]["StaticHyperParameters"]
        identity = [key, static.get("sagemaker_submit_directory", "")]
        if not self.use_cache or job.step in self.forced:
            identity.append(self.plan.run_id)
        name = tuning_job_name(self.plan.pipeline, *identity)
        self.events.step_started(dataclasses.replace(job, name=name))
        request = _replace_strings(self._resolve_inputs(job), {job.name: name})
        tuning = run_local_tuning_job(
            aws, request, self.config.tuning, self._env, sink, self.launcher, self.events.message
        )
        outcome = StepOutcome(
            job.step,
            name,
            tuning.status,
            tuning.duration,
            failure_reason=tuning.failure_reason,
            metrics=tuning.metrics,
            cache_key=key,
        )
        if tuning.result is not None:
            counts = ", ".join(
                f"{count} {status}"
                for status, count in status_counts(tuning.result.trials).items()
                if count
            )
            best = f"best {tuning.best_job[len(name) + 1 :]}; " if tuning.best_job else ""
            outcome.detail = f"{best}{counts}"
            self.events.message(
                f"tuning job {name}: {tuning.result.completion_reason}; "
                f"report {tuning.report_path}; `harness tuning show` prints the training jobs"
            )
        if tuning.status == "Completed":
            outcome.outputs = {"model": tuning.model_uri}
            entry = self.cache.store(
                self.cache.entry_for(
                    job.step,
                    key,
                    name,
                    self.plan.run_id,
                    outcome.outputs,
                    metrics=outcome.metrics,
                    duration=outcome.duration,
                    detail=outcome.detail,
                    extra={"tuning_job": name, "best_training_job": tuning.best_job},
                )
            )
            self._resolve(job.step, entry)
        return outcome

    def _from_cache(self, job: PlannedJob, entry: CacheEntry) -> StepOutcome:
        self._resolve(job.step, entry)
        return StepOutcome(
            job.step,
            entry.job_name,
            "Completed",
            detail=entry.detail,
            outputs=dict(entry.outputs),
            metrics=dict(entry.metrics),
            cached=True,
            cache_key=entry.key,
        )

    def _resolve(self, step: str, entry: CacheEntry) -> None:
        self.resolved[step] = dict(entry.outputs)
        self.digests[step] = {name: entry.output_digest(name) for name in entry.outputs}

    def _input_digests(self, step: str) -> dict[str, str]:
        return {
            name: self.digests[upstream][output]
            for name, (upstream, output) in self.plan.reads(step).items()
        }

    def _cache_key(self, job: PlannedJob) -> str:
        """Hash the step's code, its configuration as the request carries it, and its inputs."""
        root = self.plan.code.folder
        entry_point = self.config.project_root / self.config.steps[job.step].entry_point
        code = hash_files(root, step_code_files(root, entry_point))
        return cache_key(job.step, code, self._neutral_request(job), self._input_digests(job.step))

    def _neutral_request(self, job: PlannedJob) -> Any:
        """Return the job's request with the names and locations that change every run blanked.

        What is left is the configuration the request carries: instance settings,
        arguments, hyperparameters, metric definitions, environment, role and image.
        """
        bucket, pipeline = self.config.session.bucket, self.plan.pipeline
        replacements = {
            self.plan.code.archive_uri(bucket, pipeline): "<code>",
            self.plan.code.source_uri(bucket, pipeline): "<code>",
            self.plan.dataset_uri: "<dataset>",
            # Job names and output locations all carry the run id.
            self.plan.run_id: "<run-id>",
        }
        text = json.dumps(job.request, sort_keys=True)
        for old, new in replacements.items():
            text = text.replace(old, new)
        return json.loads(text)

    def _resolve_inputs(self, job: PlannedJob) -> dict[str, Any]:
        """Point the request's inputs at where the upstream outputs are in this run."""
        swaps = {}
        for upstream, output in self.plan.reads(job.step).values():
            planned = (
                self.plan.dataset_uri
                if upstream == "dataset"
                else self.plan.job(upstream).outputs[output]
            )
            swaps[planned] = self.resolved[upstream][output]
        return _replace_strings(job.request, swaps)

    def _evaluation_report_uri(self) -> str:
        return self.resolved["evaluate"]["evaluation"].rstrip("/") + "/evaluation.json"

    def _read_evaluation_report(self) -> dict[str, Any] | None:
        """Return this run's evaluation.json, or None where it is missing or not valid JSON.

        The condition step fails on such a file and names its path.
        """
        try:
            return json.loads(self.cache.mirror_path(self._evaluation_report_uri()).read_bytes())
        except (OSError, ValueError):
            return None

    def _condition(self, job: PlannedJob, record: RunRecord) -> StepOutcome:
        started = time.time()
        report_uri = self._evaluation_report_uri()
        get = job.request["LeftValue"]["Std:JsonGet"]
        try:
            # The workspace copy of S3 is the embedded S3's durable store: no server needed.
            report = json.loads(self.cache.mirror_path(report_uri).read_bytes())
            value = float(json_get(report, get["Path"]))
        except (OSError, JsonPathError, ValueError, TypeError) as error:
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

    def _register(self, job: PlannedJob, record: RunRecord) -> StepOutcome:
        started = time.time()
        request = _replace_strings(
            job.request,
            {
                self.plan.job(upstream).outputs[output]: self.resolved[upstream][output]
                for upstream, output in self.plan.reads("register").values()
            },
        )
        # The statistics file is the evaluation report itself, wherever this run found it.
        statistics = request["ModelMetrics"]["ModelQuality"]["Statistics"]
        statistics["S3Uri"] = self._evaluation_report_uri()
        explainability = request["ModelMetrics"].get("Explainability")
        if explainability is not None:
            explainability["Report"]["S3Uri"] = (
                self.resolved["explain"]["explain"].rstrip("/") + "/" + EXPLAINABILITY_REPORT
            )
        if record.condition is None:
            # Without the quality gate a person decides, which is SageMaker's default status.
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

        # The same model, report and decision registered before are not registered again.
        # The key reads the planned request: the inputs' digests stand for their locations.
        decided = {**job.request, "ModelApprovalStatus": request["ModelApprovalStatus"]}
        neutral = json.loads(json.dumps(decided).replace(self.plan.run_id, "<run-id>"))
        key = cache_key("register", "", neutral, self._input_digests("register"))
        reuse = self.use_cache and "register" not in self.forced
        entry = self.cache.lookup("register", key) if reuse else None
        if entry is not None and journal_contains(
            self.workspace, "CreateModelPackage", entry.extra.get("request_digest", "")
        ):
            arn = entry.extra["model_package_arn"]
            cached = True
        else:
            self.events.step_started(job)
            aws = self.aws()
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
            cached = False
            self.cache.store(
                self.cache.entry_for(
                    "register",
                    key,
                    job.name,
                    self.plan.run_id,
                    {},
                    extra={"model_package_arn": arn, "request_digest": canonical_digest(request)},
                )
            )

        record.model_package_arn = arn
        record.approval_status = request["ModelApprovalStatus"]
        return StepOutcome(
            job.step,
            job.name,
            "Completed",
            time.time() - started,
            detail=f"{request['ModelApprovalStatus']}, version {arn.rsplit('/', 1)[-1]}",
            outputs={"model_package_arn": arn},
            cached=cached,
            cache_key=key,
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


def _has_objects(aws: EmbeddedAWS, uri: str) -> bool:
    """Return whether any object is under the prefix. A missing bucket counts as empty."""
    try:
        return bool(aws.list_objects(uri))
    except aws.s3.exceptions.NoSuchBucket:
        return False


def _downstream_of(plan: Plan, step: str) -> set[str]:
    """Return `step` and every step that depends on it, directly or not."""
    found = {step}
    for job in plan.jobs:
        if found.intersection(job.depends_on):
            found.add(job.step)
    return found


def _replace_strings(value: Any, swaps: dict[str, str]) -> Any:
    """Return a copy of a JSON-like value with every string equal to a key swapped."""
    if isinstance(value, str):
        return swaps.get(value, value)
    if isinstance(value, dict):
        return {key: _replace_strings(item, swaps) for key, item in value.items()}
    if isinstance(value, list):
        return [_replace_strings(item, swaps) for item in value]
    return value


# Java options of the Spark driver in local jobs, which spark-submit reads from
# SPARK_SUBMIT_OPTS. Local jobs run for seconds on small data, where the JVM's optimizing
# compiler (C2) and G1 garbage collector cost more CPU time than they save. With these
# options, prepare on the MSLR sample took 18.7 s instead of 23.6 s on 2 cores. Setting
# SPARK_SUBMIT_OPTS, even to nothing, replaces them. Cloud jobs never get them.
LOCAL_SPARK_SUBMIT_OPTS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"


def _inherited_environment() -> dict[str, str]:
    """Return the harness process's environment minus anything that reaches real AWS, with
    the local defaults beneath it."""
    inherited = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "SAGEMAKER_", "SM_"))
    }
    return {"SPARK_SUBMIT_OPTS": LOCAL_SPARK_SUBMIT_OPTS, **inherited}

"""`harness promote`: upload the code and data, upsert the SageMaker Pipeline, start it.

The order guarantees that nothing reaches AWS before every check has passed:

1. preflight (harness.cloud.preflight), about a second, no network;
2. compile the plan with the SDK v3 and write the definition JSON to the workspace;
3. unless a dry run: upload the step code and the local dataset under content-addressed keys,
   upsert the pipeline, start an execution and print its ARN. An object already there is not
   uploaded again, so unchanged code keeps every cached step valid;
4. with --wait, follow the execution's steps until it ends.

Credentials, region endpoints and retries are boto3's: whatever the shell's AWS profile or
role provides. The tests point AWS_ENDPOINT_URL at a moto server on 127.0.0.1.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.cloud.compile import CompiledPipeline, compile_pipeline
from harness.cloud.plan import cloud_plan
from harness.cloud.preflight import check
from harness.cloud.session import pipeline_session
from harness.config import Config
from harness.errors import HarnessError
from harness.plan.build import Plan

# Statuses after which a pipeline execution does not change.
FINAL_STATUSES = ("Succeeded", "Failed", "Stopped")
POLL_SECONDS = 30.0


@dataclass
class PromoteResult:
    compiled: CompiledPipeline
    definition_path: Path
    preflight_seconds: float
    uploaded: list[str] = field(default_factory=list)
    pipeline_arn: str = ""
    execution_arn: str = ""
    status: str = ""


class PromoteError(HarnessError):
    """AWS refused a call of promote; the message names the call and what to check."""


def split_s3_uri(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def definition_path(workspace: Path, pipeline: str) -> Path:
    return workspace / "cloud" / f"{pipeline}.json"


def prepare(config: Config, workspace: Path, parameters: Mapping[str, str]) -> tuple[Plan, float]:
    """Run preflight and return the cloud plan and the seconds preflight took."""
    started = time.perf_counter()
    plan = check(config, cloud_plan, parameters)
    return plan, time.perf_counter() - started


def compile_and_write(
    config: Config, plan: Plan, workspace: Path, target: Path | None = None
) -> tuple[CompiledPipeline, Path]:
    compiled = compile_pipeline(config, plan, pipeline_session(config, workspace))
    path = target or definition_path(workspace, plan.pipeline)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(compiled.definition_json())
    partial.replace(path)
    return compiled, path


def upload(config: Config, plan: Plan, workspace: Path, report: Callable[[str], None]) -> list[str]:
    """Upload the code bundle and a local dataset unless their keys already hold them."""
    import boto3

    from harness.local.jobs import deterministic_tar

    s3 = boto3.client("s3", region_name=config.session.region)
    uploaded: list[str] = []
    bucket, pipeline = config.session.bucket, plan.pipeline
    _check_bucket_region(s3, bucket, config.session.region)
    bundle = plan.code
    archive_uri = bundle.archive_uri(bucket, pipeline)
    if not _exists(s3, archive_uri):
        source_uri = bundle.source_uri(bucket, pipeline)
        for path in bundle.files:
            _put(s3, path, source_uri + path.relative_to(bundle.folder).as_posix())
        archive = workspace / "code" / f"{bundle.digest[:16]}.tar.gz"
        deterministic_tar(bundle.folder, archive)
        # The archive goes last: its presence means that the whole bundle is there.
        _put(s3, archive, archive_uri)
        uploaded.append(archive_uri)
        report(f"uploaded the step code to {source_uri} and {archive_uri}")
    else:
        report(f"step code unchanged: {archive_uri} is already there")

    if plan.dataset_local is not None:
        files = sorted(p for p in plan.dataset_local.rglob("*") if p.is_file())
        missing = [
            (path, plan.dataset_uri + path.relative_to(plan.dataset_local).as_posix())
            for path in files
        ]
        missing = [(path, uri) for path, uri in missing if not _exists(s3, uri)]
        for path, uri in missing:
            _put(s3, path, uri)
            uploaded.append(uri)
        if missing:
            report(f"uploaded {len(missing)} dataset files to {plan.dataset_uri}")
        else:
            report(f"dataset unchanged: {plan.dataset_uri} holds every file")
    return uploaded


def _check_bucket_region(s3: Any, bucket: str, region: str) -> None:
    from botocore.exceptions import ClientError

    try:
        location = s3.get_bucket_location(Bucket=bucket).get("LocationConstraint")
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code == "NoSuchBucket":
            raise PromoteError(
                f"[session] bucket = {bucket!r}: the bucket does not exist. Fix: create it in "
                f"{region}, or name a bucket of your account there."
            ) from None
        raise _aws_error("GetBucketLocation", f"s3://{bucket}", error) from None
    # S3 reports us-east-1 as no constraint, and EU as the old name of eu-west-1.
    bucket_region = {None: "us-east-1", "": "us-east-1", "EU": "eu-west-1"}.get(location, location)
    if bucket_region != region:
        raise PromoteError(
            f"[session] bucket = {bucket!r} is in {bucket_region}, but [session] region is "
            f"{region}, and SageMaker jobs read their data in their own region. Fix: use a "
            f"bucket in {region}, or set region = {bucket_region}."
        )


def _exists(s3: Any, uri: str) -> bool:
    from botocore.exceptions import ClientError

    bucket, key = split_s3_uri(uri)
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code in ("404", "NoSuchKey", "NotFound"):
            return False
        raise _aws_error("HeadObject", uri, error) from None
    return True


def _put(s3: Any, path: Path, uri: str) -> None:
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import ClientError

    bucket, key = split_s3_uri(uri)
    try:
        s3.upload_file(str(path), bucket, key)
    except ClientError as error:
        raise _aws_error("PutObject", uri, error) from None
    except S3UploadFailedError as error:
        raise PromoteError(
            f"PutObject on {uri} failed: {error}. Fix: check that the bucket exists and that "
            "your credentials may write to it (README: IAM permissions)."
        ) from None


def aws_failure(error: Exception) -> PromoteError:
    """Return the user-facing error of a failed AWS call outside preflight."""
    from botocore.exceptions import (
        EndpointConnectionError,
        NoCredentialsError,
        TokenRetrievalError,
    )

    if isinstance(error, NoCredentialsError | TokenRetrievalError):
        return PromoteError(
            f"no AWS credentials: {error}. Nothing was created. Fix: sign in as for the AWS "
            "CLI (`aws sso login`, AWS_PROFILE or environment variables), then run promote again."
        )
    if isinstance(error, EndpointConnectionError):
        return PromoteError(
            f"AWS could not be reached: {error}. Fix: check the network, the region and "
            "AWS_ENDPOINT_URL, then run promote again; uploads already done are kept."
        )
    return PromoteError(
        f"an AWS call failed: {error}. Fix: check the permissions of your credentials (README: "
        "IAM permissions) and run promote again; uploads already done are kept."
    )


def _aws_error(operation: str, target: str, error: Any) -> PromoteError:
    details = error.response.get("Error", {})
    return PromoteError(
        f"{operation} on {target} failed: {details.get('Code', '?')}: "
        f"{details.get('Message', '')}. Fix: check that the credentials of this shell may "
        "use the bucket and SageMaker (README: the IAM permissions of promote)."
    )


def start(
    config: Config, compiled: CompiledPipeline, parameters: Mapping[str, str]
) -> tuple[str, str]:
    """Create or update the pipeline, start an execution; return both ARNs."""
    from botocore.exceptions import ClientError

    pipeline = compiled.pipeline
    try:
        if config.register is not None:
            ensure_model_package_group(config)
        response = pipeline.upsert(
            role_arn=config.session.role_arn,
            description=f"{compiled.name}, promoted by harness",
        )
        execution = pipeline.start(parameters=dict(parameters) or None)
    except ClientError as error:
        raise _aws_error("CreatePipeline/StartPipelineExecution", compiled.name, error) from None
    return response["PipelineArn"], execution.arn


def ensure_model_package_group(config: Config) -> None:
    """Create the [register] model package group unless it exists: RegisterModel needs it."""
    import boto3
    from botocore.exceptions import ClientError

    assert config.register is not None
    group = config.register.model_package_group
    client = boto3.client("sagemaker", region_name=config.session.region)
    try:
        client.describe_model_package_group(ModelPackageGroupName=group)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") not in (
            "ValidationException",
            "ResourceNotFound",
        ):
            raise
        client.create_model_package_group(
            ModelPackageGroupName=group,
            ModelPackageGroupDescription=f"models of the {config.pipeline.name} pipeline",
        )


def follow(
    config: Config,
    execution_arn: str,
    report: Callable[[str], None],
    poll_seconds: float = POLL_SECONDS,
    timeout_seconds: float | None = None,
) -> str:
    """Print each step's status as it changes until the execution ends; return its status."""
    import boto3

    client = boto3.client("sagemaker", region_name=config.session.region)
    seen: dict[str, str] = {}
    started = time.monotonic()
    while True:
        steps = client.list_pipeline_execution_steps(PipelineExecutionArn=execution_arn).get(
            "PipelineExecutionSteps", []
        )
        for step in reversed(steps):
            name, status = step.get("StepName", "?"), step.get("StepStatus", "?")
            if seen.get(name) != status:
                seen[name] = status
                reason = f": {step['FailureReason']}" if step.get("FailureReason") else ""
                cached = " (from the step cache)" if step.get("CacheHitResult") else ""
                report(f"{name}: {status}{cached}{reason}")
        status = client.describe_pipeline_execution(PipelineExecutionArn=execution_arn)[
            "PipelineExecutionStatus"
        ]
        if status in FINAL_STATUSES:
            return status
        if timeout_seconds is not None and time.monotonic() - started > timeout_seconds:
            return status
        time.sleep(poll_seconds)

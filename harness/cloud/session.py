"""The SDK v3 session of the cloud target, with telemetry off."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from harness.config import Config
from harness.local.offline import telemetry_opt_out_file


def sdk_environment(workspace: Path, region: str) -> dict[str, str]:
    """Return the variables set before the SDK is imported: its telemetry and MLflow's off.

    The SDK creates a SageMaker client when some of its modules are imported, which needs a
    region, so the configured one is the default unless the shell sets its own. Its IAM role
    check (iam:SimulatePrincipalPolicy for each job) is off: compiling must work offline, and
    preflight checks the role ARN, which CreatePipeline then verifies.
    """
    return {
        "SAGEMAKER_VALIDATE_ROLE": "false",
        "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", region),
        "SAGEMAKER_USER_CONFIG_OVERRIDE": str(telemetry_opt_out_file(workspace)),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
    }


def pipeline_session(config: Config, workspace: Path) -> Any:
    """Return a PipelineSession in the configured region, with the bucket as its default.

    Credentials and endpoints come from boto3's usual chain (environment, profile, role).
    """
    os.environ.update(sdk_environment(workspace, config.session.region))
    import logging
    import warnings

    import boto3
    from sagemaker.core.workflow.pipeline_context import PipelineSession

    # The SDK logs where it read its defaults from, and warns that a PipelineSession starts
    # no job, which is the point here.
    # Its modules set their own log levels, some to DEBUG, so a filter on the handlers that
    # print harness's logs keeps only the SDK's errors.
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _SdkNoiseFilter) for f in handler.filters):
            handler.addFilter(_SdkNoiseFilter())
    warnings.filterwarnings("ignore", message="Running within a PipelineSession")

    boto_session = boto3.Session(region_name=config.session.region)
    session = PipelineSession(boto_session=boto_session, default_bucket=config.session.bucket)
    # The first default_bucket() call of ModelBuilder would list the account's buckets and
    # create a missing one. Compiling must stay offline, and promote's upload checks the bucket.
    session._default_bucket = config.session.bucket
    return session


class _SdkNoiseFilter:
    def filter(self, record: object) -> bool:
        name = getattr(record, "name", "")
        level = getattr(record, "levelno", 0)
        return not name.startswith("sagemaker") or level >= 40  # logging.ERROR

"""Environment settings that keep a local run on loopback and off any AWS account."""

from __future__ import annotations

import os
from pathlib import Path

# Credentials that moto accepts and AWS rejects, so that no real account is ever used.
FAKE_ACCESS_KEY_ID = "testing"
FAKE_SECRET_ACCESS_KEY = "testing"

# SDK v3 validates the file against its schema, which requires SchemaVersion.
_TELEMETRY_OPT_OUT = (
    "SchemaVersion: '1.0'\nSageMaker:\n  PythonSDK:\n    Modules:\n      TelemetryOptOut: true\n"
)


def telemetry_opt_out_file(workspace: Path) -> Path:
    """Write the SageMaker SDK user configuration that turns its telemetry off.

    The SDK (v2 and v3) sends a telemetry request to an S3 host on every job, and
    AWS_ENDPOINT_URL does not redirect it. This file, named by
    SAGEMAKER_USER_CONFIG_OVERRIDE, is its documented opt-out.
    """
    path = workspace / "sagemaker-user-config.yaml"
    if not path.exists() or path.read_text() != _TELEMETRY_OPT_OUT:
        workspace.mkdir(parents=True, exist_ok=True)
        path.write_text(_TELEMETRY_OPT_OUT)
    return path


def local_environment(endpoint_url: str, region: str, workspace: Path) -> dict[str, str]:
    """Return the variables every local job and client gets.

    They point every AWS client at the embedded moto server, use fake credentials,
    switch off SDK and MLflow telemetry and bind Spark to loopback.
    """
    return {
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_ACCESS_KEY_ID": FAKE_ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": FAKE_SECRET_ACCESS_KEY,
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
        # Stops botocore from asking the EC2 instance metadata service for credentials.
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "SAGEMAKER_USER_CONFIG_OVERRIDE": str(telemetry_opt_out_file(workspace)),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYTHONUNBUFFERED": "1",
    }

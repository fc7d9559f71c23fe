"""The store of recorded runs: the workspace's MLflow store, or a SageMaker managed MLflow server.

The local target always records into `<workspace>/mlflow/`: a `sqlite:///` backend store
(`mlflow.db`) and an artifact folder (`artifacts/`), so no tracking server is needed and no
connection leaves the machine. `[tracking] uri` may name the ARN of a SageMaker managed MLflow
tracking server, for the cloud target. Its jobs and client then record there through the
`sagemaker-mlflow` plugin, which MLflow loads for `arn:aws:sagemaker:` tracking URIs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from harness.config import Config

# The `[tracking] uri` value that selects the workspace store.
WORKSPACE_STORE = "workspace"


def disable_telemetry() -> None:
    """Switch MLflow's usage telemetry off for this process and the processes it starts.

    MLflow 3.17 sends usage events to a remote host unless MLFLOW_DISABLE_TELEMETRY is set.
    """
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"


@dataclass(frozen=True)
class TrackingSettings:
    """The effective `[tracking]` settings of a run."""

    enabled: bool
    # The MLflow tracking URI: `sqlite:///...` for the workspace store, otherwise an ARN.
    tracking_uri: str
    # A `file://` URI inside the workspace for the workspace store; None lets the server choose.
    artifact_location: str | None
    experiment: str


def workspace_store(workspace: Path) -> tuple[str, str]:
    """Return the tracking URI and artifact location of the workspace's MLflow store."""
    folder = workspace.resolve() / "mlflow"
    return f"sqlite:///{folder / 'mlflow.db'}", (folder / "artifacts").as_uri()


def tracking_settings(config: Config, workspace: Path) -> TrackingSettings:
    """Return where `config`'s runs are recorded.

    A tracking server ARN applies to the cloud target only: local runs record into the
    workspace store, so they never connect to AWS.
    """
    values = config.section_values("tracking")
    enabled = values.get("enabled", "true") == "true"
    experiment = values.get("experiment") or config.pipeline.name
    uri = values.get("uri", WORKSPACE_STORE)
    if config.session.target == "cloud" and uri != WORKSPACE_STORE:
        return TrackingSettings(enabled, uri, None, experiment)
    tracking_uri, artifact_location = workspace_store(workspace)
    return TrackingSettings(enabled, tracking_uri, artifact_location, experiment)


def cloud_tracking_environment(config: Config) -> dict[str, str]:
    """Return the environment variables that make a SageMaker job record into MLflow.

    Returns {} when tracking is off or `[tracking] uri` names no SageMaker managed MLflow
    server. A job with these variables, and the `sagemaker-mlflow` plugin in its image,
    records with `mlflow.start_run()` into the configured experiment.
    """
    values = config.section_values("tracking")
    uri = values.get("uri", WORKSPACE_STORE)
    if values.get("enabled", "true") != "true" or uri == WORKSPACE_STORE:
        return {}
    return {
        "MLFLOW_TRACKING_URI": uri,
        "MLFLOW_EXPERIMENT_NAME": values.get("experiment") or config.pipeline.name,
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }

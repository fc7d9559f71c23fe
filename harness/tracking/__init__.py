"""Experiment tracking in MLflow: each run's configuration, metrics, tags and reports."""

from harness.tracking.recorder import RunTracker, mlflow_name
from harness.tracking.settings import (
    TrackingSettings,
    cloud_tracking_environment,
    tracking_settings,
    workspace_store,
)

__all__ = [
    "RunTracker",
    "TrackingSettings",
    "cloud_tracking_environment",
    "mlflow_name",
    "tracking_settings",
    "workspace_store",
]

"""Serve MLflow's UI for the workspace store on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import sys

from harness.errors import HarnessError
from harness.tracking.settings import TrackingSettings

# The UI listens on loopback only, because the store contains the configuration and data
# digests of every run.
UI_HOST = "127.0.0.1"


def ui_command(settings: TrackingSettings, port: int) -> list[str]:
    """Return the `mlflow ui` command line that serves the settings' store on UI_HOST."""
    if not settings.tracking_uri.startswith("sqlite:///"):
        raise HarnessError(
            f"[tracking] uri = {settings.tracking_uri!r}: `harness ui` serves the workspace "
            "store only. Fix: open SageMaker managed MLflow from SageMaker Studio, or run "
            "`harness ui` with [session] target = local."
        )
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        settings.tracking_uri,
        "--host",
        UI_HOST,
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    if settings.artifact_location:
        command += ["--default-artifact-root", settings.artifact_location]
    return command


def serve_ui(settings: TrackingSettings, port: int) -> int:
    """Run MLflow's UI until it ends or the user presses Ctrl-C; return its exit status."""
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    process = subprocess.Popen(ui_command(settings, port), env=env)
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        raise

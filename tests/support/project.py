"""A copy of the project (configuration, steps, fixtures) that a test may edit."""

from __future__ import annotations

import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def copy_project(target: Path) -> Path:
    shutil.copy(REPO / "config.ini", target / "config.ini")
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(REPO / "steps", target / "steps", ignore=ignore)
    shutil.copytree(REPO / "fixtures", target / "fixtures", ignore=ignore)
    return target


def fixture_run_arguments(workspace: Path) -> list[str]:
    """Return `harness run` arguments for a quiet run on the fixtures in `workspace`."""
    return [
        "run",
        "--quiet",
        "--no-local",
        "--config",
        str(REPO / "config.ini"),
        "-c",
        str(REPO / "fixtures" / "fixtures.ini"),
        "--set",
        f"pipeline.workspace={workspace}",
    ]

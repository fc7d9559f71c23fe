"""A copy of the project (configuration, steps, fixtures) that a test may edit."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
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


def default_sigint() -> None:
    """Reset SIGINT to its default in a child before it starts, for `preexec_fn`.

    A shell without job control starts a background command with SIGINT ignored, and
    children inherit that, so Python would not turn SIGINT into KeyboardInterrupt in a
    harness that a test interrupts.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_harness(arguments: list[str]) -> subprocess.Popen[bytes]:
    """Start `harness ARGUMENTS` in the background from the repository, its output discarded."""
    return subprocess.Popen(
        [sys.executable, "-m", "harness.cli", *arguments],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=default_sigint,
    )

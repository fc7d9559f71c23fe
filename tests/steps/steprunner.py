"""Paths of the step tests and a runner that starts a step script as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
STEPS = REPO / "steps"
FIXTURES = REPO / "fixtures"
# The synthetic fixtures' feature count (see fixtures/make_fixtures.py).
FIXTURE_FEATURES = 12


def run_step(script: str, args: list[str], base_dir: Path, env: dict | None = None):
    """Run `steps/<script>` as a subprocess with SAGEMAKER_BASE_DIR=base_dir.

    SM_* variables of the test process are removed, so only `env` sets them.
    """
    process_env = {key: value for key, value in os.environ.items() if not key.startswith("SM_")}
    process_env["SAGEMAKER_BASE_DIR"] = str(base_dir)
    process_env.update(env or {})
    return subprocess.run(
        [sys.executable, str(STEPS / script), *[str(arg) for arg in args]],
        env=process_env,
        capture_output=True,
        text=True,
        # A generous limit that stops a hung step from blocking the suite; not a timing check.
        timeout=600,
        check=False,
    )


def describe(result) -> str:
    """Return a step's exit status and the end of its output, for assertion messages."""
    return f"exit status {result.returncode}\nstdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"

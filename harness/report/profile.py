"""The step-time breakdown of a profiled train job (`harness run --profile train`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from harness.local.pipeline import RunRecord

# The training steps that `--profile train` traces, unless [train] profile_steps sets others.
# The train step's first call builds the tf.function graph and is never traced, and the
# window starts after step 1 for the same reason when each call runs one step.
DEFAULT_PROFILE_STEPS = "5,25"


def profile_folder(workspace: Path, job_name: str) -> Path:
    """Return the first instance's TensorBoard folder of a local training job."""
    return workspace / "jobs" / job_name / "algo-1" / "opt" / "ml" / "output" / "tensorboard"


def print_step_time(console: Console, record: RunRecord, workspace: Path) -> None:
    train = record.step("train")
    if train is None or train.status != "Completed":
        console.print("No step-time breakdown: the train step did not complete.")
        return

    folder = profile_folder(workspace, train.name)
    path = folder / "step_time.json"
    if not path.is_file():
        # NOTE: with [tuning], each training job traces into its own job folder, which this
        # does not read.
        console.print(f"No step-time breakdown: {path} not found (train ran as {train.name}).")
        return
    profile = json.loads(path.read_text())
    if "ms_per_step" not in profile:
        console.print(f"No step-time breakdown: the job ran {profile['steps']} step(s) only.")
        return

    first_steps = profile.get("first_call_steps", 1)
    first = "step 1" if first_steps == 1 else f"the first call (steps 1 to {first_steps})"
    console.print(
        f"[bold]Step time of {escape(train.name)}[/bold] ({profile['steps']} steps; "
        f"{first}, which builds the graph, took {profile['first_step_ms']:.0f} ms and is left out)"
    )
    console.print(
        f"  {profile['ms_per_step']:.2f} ms per step: waiting for input "
        f"{profile['input_ms_per_step']:.2f} ms ({100 * profile['input_share']:.1f}%), "
        f"computing {profile['compute_ms_per_step']:.2f} ms "
        f"({100 * (1 - profile['input_share']):.1f}%)"
    )
    _print_operations(console, profile)
    console.print(f"  trace: tensorboard --logdir {folder} (the Profile tab)", soft_wrap=True)


def _print_operations(console: Console, profile: dict) -> None:
    operations = profile.get("slowest_operations", [])
    if not operations:
        return
    first, last = profile["traced_steps"]
    table = Table(
        title=f"Slowest TensorFlow operations in steps {first} to {last}", title_justify="left"
    )
    table.add_column("total ms", justify="right", no_wrap=True)
    table.add_column("share", justify="right", no_wrap=True)
    table.add_column("runs", justify="right", no_wrap=True)
    table.add_column("type", no_wrap=True)
    table.add_column("operation", overflow="fold")
    for operation in operations:
        table.add_row(
            f"{operation['total_ms']:.1f}",
            f"{100 * operation['share']:.1f}%",
            str(operation["count"]),
            escape(operation["type"]),
            escape(operation["name"]),
        )
    console.print(table)

"""The summary of a compiled SageMaker Pipeline that `harness promote` prints."""

from __future__ import annotations

from collections.abc import Mapping

from rich.console import Console
from rich.markup import escape

from harness.cloud.compile import CompiledPipeline, CompiledStep

_BRANCH_HEADINGS = {"if": "if the condition holds:", "else": "otherwise:"}


def print_pipeline_summary(
    console: Console,
    compiled: CompiledPipeline,
    cache: str,
    values: Mapping[str, str] | None = None,
) -> None:
    """Print each step with its type, instances and image, the branches under the condition.

    `values` are this execution's parameter values; the others keep their defaults.
    """
    console.print(f"[bold]SageMaker Pipeline {escape(compiled.name)}[/bold]")
    width = max(len(step.name) for step in compiled.steps)
    for branch in ("", "if", "else"):
        steps = [step for step in compiled.steps if step.branch == branch]
        if not steps:
            continue
        indent = "  "
        if branch:
            console.print(f"  {_BRANCH_HEADINGS[branch]}")
            indent = "    "
        for step in steps:
            console.print(indent + _line(step, width), highlight=False, soft_wrap=True)
    parameters = compiled.definition.get("Parameters", [])
    if parameters:
        values = values or {}
        listed = ", ".join(
            f"{p['Name']} = {values[p['Name']]} (default {p.get('DefaultValue')})"
            if p["Name"] in values
            else f"{p['Name']} = {p.get('DefaultValue')}"
            for p in parameters
        )
        console.print(f"parameters: {listed}")
    console.print(f"step cache: {cache}")


def _line(step: CompiledStep, width: int) -> str:
    parts = [step.name.ljust(width), step.kind]
    if step.instance_type:
        count = f" x {step.instance_count}" if step.instance_count else ""
        parts.append(f"{step.instance_type}{count}")
    if step.image:
        # The registry host differs only by account and region; the repository and tag matter.
        parts.append(step.image.split("/", 1)[-1])
    return escape("  ".join(parts))

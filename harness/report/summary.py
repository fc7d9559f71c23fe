"""Terminal summaries of a run and of the model registry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness.local.pipeline import RunRecord

STATUS_STYLES = {
    "Completed": "green",
    "Failed": "bold red",
    "Stopped": "yellow",
    "Skipped": "dim",
}

# Metrics of evaluation.json, in the order they are shown.
RANKING_METRICS = ("ndcg_at_1", "ndcg_at_5", "ndcg_at_10", "mrr", "map")


def metric_label(name: str) -> str:
    return name.replace("_at_", "@").upper().replace("NDCG", "NDCG").replace("MRR", "MRR")


def print_run_summary(console: Console, record: RunRecord) -> None:
    steps = Table(title=f"Run {record.run_id} of {record.pipeline}", title_justify="left")
    steps.add_column("step", no_wrap=True)
    steps.add_column("status", no_wrap=True)
    steps.add_column("duration", justify="right", no_wrap=True)
    steps.add_column("job", overflow="fold", min_width=10)
    steps.add_column("outputs / result", overflow="fold", min_width=16)
    for outcome in record.steps:
        style = STATUS_STYLES.get(outcome.status, "")
        detail = outcome.detail or ", ".join(outcome.outputs)
        if outcome.failure_reason:
            detail = outcome.failure_reason.splitlines()[0]
        status = "Cached" if outcome.cached else outcome.status
        if outcome.cached:
            style = "blue"
        steps.add_row(
            outcome.step,
            f"[{style}]{status}[/{style}]" if style else status,
            f"{outcome.duration:.1f} s"
            if outcome.status != "Skipped" and not outcome.cached
            else "",
            outcome.name,
            escape(detail),
        )
    console.print(steps)

    if record.evaluation:
        print_evaluation(console, record.evaluation)

    if record.model_package_arn:
        condition = record.condition or {}
        console.print(
            f"Model registry: [bold]{record.approval_status}[/bold] "
            f"({condition.get('metric', '')} = {condition.get('value', float('nan')):.4f}, "
            f"{condition.get('comparison', '')} {condition.get('threshold', '')})",
        )
        console.print(f"  model package: {record.model_package_arn}", soft_wrap=True)

    workspace = Path(record.workspace)
    # Steps served from the cache keep the outputs of the run that made them.
    steps_by_prefix: dict[str, list[str]] = {}
    for outcome in record.steps:
        for prefix in sorted({_run_prefix(u) for u in outcome.outputs.values() if "/runs/" in u}):
            steps_by_prefix.setdefault(prefix, []).append(outcome.step)
    for prefix, steps in sorted(steps_by_prefix.items()):
        run_id = prefix.rstrip("/").rsplit("/", 1)[-1]
        origin = "" if run_id == record.run_id else f", from the cache of run {run_id}"
        console.print(f"Artifacts of {', '.join(steps)}{origin}: {prefix}", soft_wrap=True)
        console.print(
            f"  local copy: {workspace / 's3' / prefix.removeprefix('s3://')}", soft_wrap=True
        )
    console.print(f"  job folders and logs: {workspace / 'jobs'}", soft_wrap=True)
    console.print(f"  run record: {workspace / 'runs' / (record.run_id + '.json')}", soft_wrap=True)
    explain = record.step("explain")
    if explain is not None and "explain" in explain.outputs:
        folder = workspace / "s3" / explain.outputs["explain"].removeprefix("s3://")
        console.print(f"  explain report: {folder / 'report.html'}", soft_wrap=True)


def _run_prefix(uri: str) -> str:
    """Return `s3://.../runs/<run id>/` of an output URI."""
    head, _, rest = uri.partition("/runs/")
    return f"{head}/runs/{rest.split('/')[0]}/"


def print_evaluation(console: Console, evaluation: dict[str, Any]) -> None:
    metrics = evaluation.get("ranking_metrics", {})
    baselines = evaluation.get("baselines", {})
    table = Table(
        title=f"Evaluation on the test split ({evaluation.get('queries', '?')} queries)",
        title_justify="left",
    )
    table.add_column("metric")
    table.add_column("model", justify="right")
    columns = []
    for name, values in baselines.items():
        label = name.replace("_", " ")
        if values.get("feature"):
            label += f" ({values['feature']})"
        table.add_column(label, justify="right")
        columns.append(values)
    for metric in RANKING_METRICS:
        if metric not in metrics:
            continue
        row = [metric_label(metric), f"{metrics[metric]['value']:.4f}"]
        for values in columns:
            baseline = values.get(metric, {}).get("value")
            row.append("" if baseline is None else f"{baseline:.4f}")
        table.add_row(*row)
    console.print(table)


def print_models(console: Console, packages: list[dict[str, Any]]) -> None:
    table = Table(title="Model registry", title_justify="left")
    for column in ("model package", "status", "created (UTC)", "NDCG@10", "run"):
        table.add_column(column, no_wrap=True)
    for package in packages:
        status = package["ModelApprovalStatus"]
        style = {"Approved": "green", "Rejected": "red"}.get(status, "")
        ndcg = package.get("ndcg_at_10")
        table.add_row(
            f"{package['ModelPackageGroupName']}/{package.get('ModelPackageVersion', '')}",
            f"[{style}]{status}[/{style}]" if style else status,
            str(package["CreationTime"])[:16],
            "" if ndcg is None else f"{ndcg:.4f}",
            package.get("run_id", ""),
        )
    console.print(table)
    if packages:
        prefix = packages[0]["ModelPackageArn"].rsplit("/", 2)[0]
        console.print(f"ARN of each: {prefix}/<model package>", soft_wrap=True)


def print_tuning_table(console: Console, table: dict) -> None:
    """Print a tuning job's training jobs, best first marked with *, in launch order."""
    objective = table["objective"]
    console.print(
        f"Tuning job {table['tuning_job_name']} ({table['strategy']}): {table['status']}, "
        f"{table['completion_reason']}. Objective: {objective['MetricName']} "
        f"({objective['Type']})."
    )
    names = table["tuned_hyperparameters"]
    grid = Table(show_lines=False)
    grid.add_column("training job", no_wrap=True)
    for name in names:
        grid.add_column(name, justify="right")
    grid.add_column("objective", justify="right")
    grid.add_column("status", no_wrap=True)
    grid.add_column("duration", justify="right", no_wrap=True)
    for job in table["training_jobs"]:
        short = job["name"][len(table["tuning_job_name"]) + 1 :]
        marker = "* " if job["name"] == table["best_training_job"] else "  "
        objective_text = "" if job["objective"] is None else f"{job['objective']:.4f}"
        duration = "" if job.get("duration") is None else f"{job['duration']:.1f} s"
        values = [short_number(job["hyperparameters"].get(name, "")) for name in names]
        grid.add_row(marker + short, *values, objective_text, job["status"], duration)
    # A log or CI output has no screen to fit, so the table keeps every value whole there.
    console_width = console.width
    if not console.is_terminal:
        natural = console.measure(grid, options=console.options.update_width(10_000)).maximum
        console.width = max(console_width, natural)
    try:
        console.print(grid)
    finally:
        console.width = console_width
    if table["best_training_job"]:
        console.print(f"* best training job, whose model the later steps use: {table['model']}")
    reasons = [
        (
            job["name"][len(table["tuning_job_name"]) + 1 :],
            job.get("stop_reason") or job.get("failure_reason"),
        )
        for job in table["training_jobs"]
        if job["status"] != "Completed"
    ]
    for short, reason in reasons:
        if reason:
            console.print(f"  {short}: {escape(reason)}", soft_wrap=True)


def short_number(text: str) -> str:
    """Return a number with 4 significant digits, and any other value as it is."""
    try:
        number = float(text)
    except ValueError:
        return text
    return text if number.is_integer() and "." not in text else f"{number:.4g}"

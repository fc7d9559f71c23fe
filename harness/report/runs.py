"""Terminal tables of recorded runs: `harness runs` and `harness runs compare`."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness.report.summary import STATUS_STYLES
from harness.tracking.query import Difference, RunSummary

# Metrics shown in the list of runs, with their column headings.
LISTED_METRICS = {
    # The validation NDCG@10 of the model the train job saved: its best epoch's.
    "train.validation:best_ndcg_at_10": "val NDCG@10",
    "evaluate.ndcg_at_10": "test NDCG@10",
}


def print_runs(console: Console, runs: list[RunSummary], store: str) -> None:
    if not runs:
        console.print(
            f"No runs recorded in {store} yet. Run `harness run` first, with the same -c files."
        )
        return
    table = Table(title=f"Runs in {store}", title_justify="left")
    table.add_column("run id", no_wrap=True)
    table.add_column("mlflow run", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("cached", justify="right", no_wrap=True)
    for heading in LISTED_METRICS.values():
        table.add_column(heading, justify="right")
    # A "+" after the commit means that tracked files had changes not yet committed.
    table.add_column("commit", no_wrap=True)
    for run in runs:
        style = STATUS_STYLES.get(run.status, "")
        commit = run.tags.get("mlflow.source.git.commit", "")[:8]
        if run.tags.get("harness.git.dirty") == "true":
            commit += "+"
        table.add_row(
            run.run_id,
            run.mlflow_run_id[:8],
            f"[{style}]{run.status}[/{style}]",
            run.tags.get("harness.cache_hits", ""),
            *[_number(run.metrics.get(metric)) for metric in LISTED_METRICS],
            commit,
        )
    console.print(table)


def print_comparison(
    console: Console, first: RunSummary, second: RunSummary, differences: list[Difference]
) -> None:
    headers = (f"A: {first.run_id}", f"B: {second.run_id}")
    sections = (
        ("param", "Parameters that differ"),
        ("metric", "Metrics (B - A in the last column)"),
        ("tag", "Tags that differ"),
    )
    for kind, title in sections:
        rows = [d for d in differences if d.kind == kind]
        if not rows:
            console.print(f"{title}: none")
            continue
        table = Table(title=title, title_justify="left")
        table.add_column("name", overflow="fold")
        table.add_column(
            headers[0], overflow="fold", justify="right" if kind == "metric" else "left"
        )
        table.add_column(
            headers[1], overflow="fold", justify="right" if kind == "metric" else "left"
        )
        if kind == "metric":
            table.add_column("B - A", justify="right", no_wrap=True)
        for row in rows:
            if kind == "metric":
                delta = (
                    f"{row.second - row.first:+.4f}"
                    if row.first is not None and row.second is not None
                    else ""
                )
                table.add_row(row.name, _number(row.first), _number(row.second), delta)
            else:
                table.add_row(escape(row.name), _text(row.first), _text(row.second))
        console.print(table)


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if abs(value) < 1000 else f"{value:.1f}"


def _text(value: str | None) -> str:
    if value is None:
        return "-"
    if len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        # SHA-256 digests: the first 16 hex digits tell two runs apart.
        return value[:16]
    return escape(value)

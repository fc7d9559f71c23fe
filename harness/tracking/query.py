"""Read recorded runs back: the recent runs of an experiment, and two runs side by side."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.tracking.recorder import open_client
from harness.tracking.settings import TrackingSettings


@dataclass(frozen=True)
class RunSummary:
    """One pipeline run as MLflow recorded it."""

    mlflow_run_id: str
    run_id: str  # the harness run id, a 14-digit UTC timestamp
    name: str
    status: str
    started: str
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Difference:
    """A parameter, metric or tag of two runs and its two values (None where absent)."""

    kind: str  # param | metric | tag
    name: str
    first: Any
    second: Any


def _store_exists(settings: TrackingSettings) -> bool:
    if not settings.tracking_uri.startswith("sqlite:///"):
        return True
    return Path(settings.tracking_uri.removeprefix("sqlite:///")).is_file()


def _summary(run: Any) -> RunSummary:
    started = datetime.datetime.fromtimestamp(run.info.start_time / 1000, datetime.UTC)
    return RunSummary(
        mlflow_run_id=run.info.run_id,
        run_id=run.data.tags.get("harness.run_id", ""),
        name=run.info.run_name or "",
        status=run.data.tags.get("harness.status", run.info.status),
        started=started.isoformat(timespec="seconds"),
        params=dict(run.data.params),
        metrics=dict(run.data.metrics),
        tags={k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.log-model")},
    )


def list_runs(settings: TrackingSettings, limit: int = 20) -> list[RunSummary]:
    """Return the experiment's most recent pipeline runs, newest first (jobs and trials left out)."""
    if not _store_exists(settings):
        return []
    client, experiment_id = open_client(settings)
    runs = client.search_runs(
        [experiment_id],
        filter_string="tags.`harness.kind` = 'run'",
        max_results=limit,
        order_by=["attributes.start_time DESC"],
    )
    return [_summary(run) for run in runs]


def find_run(settings: TrackingSettings, reference: str) -> RunSummary:
    """Return the pipeline run that `reference` names: a harness run id, or an MLflow run id
    or a unique prefix of one.

    Raises:
        HarnessError: no run, or more than one, matches.
    """
    if not _store_exists(settings):
        raise HarnessError(
            f"no runs recorded yet: {settings.tracking_uri} does not exist. "
            "Fix: run `harness run` first, with the same configuration files."
        )
    client, experiment_id = open_client(settings)
    runs = client.search_runs(
        [experiment_id], filter_string=f"tags.`harness.run_id` = '{_quote(reference)}'"
    )
    if not runs:
        everything = client.search_runs(
            [experiment_id], filter_string="tags.`harness.kind` = 'run'", max_results=5000
        )
        runs = [run for run in everything if run.info.run_id.startswith(reference)]
    if len(runs) == 1:
        return _summary(runs[0])
    if not runs:
        raise HarnessError(
            f"run {reference!r} not found in experiment {settings.experiment!r}. "
            "Fix: use a RUN ID or MLFLOW RUN ID that `harness runs` lists."
        )
    # The same harness run id twice: a pipeline run recorded again with the same id.
    candidates = ", ".join(run.info.run_id for run in runs[:5])
    raise HarnessError(
        f"run {reference!r} matches {len(runs)} runs ({candidates}). "
        "Fix: use more characters of the MLflow run id."
    )


def compare_runs(first: RunSummary, second: RunSummary) -> list[Difference]:
    """Return the parameters that differ, every metric of either run, and the tags that
    differ, in that order.

    Tags that differ on every run (names, durations, run ids, job names) are left out.
    """
    skipped_tags = {"mlflow.runName", "harness.run_id", "harness.duration_seconds"}
    differences: list[Difference] = []
    for kind, a, b in (
        ("param", first.params, second.params),
        ("metric", first.metrics, second.metrics),
        ("tag", first.tags, second.tags),
    ):
        for name in sorted(set(a) | set(b)):
            if kind == "tag" and (name in skipped_tags or name.startswith("harness.job.")):
                continue
            if kind == "metric" or a.get(name) != b.get(name):
                differences.append(Difference(kind, name, a.get(name), b.get(name)))
    return differences


def _quote(text: str) -> str:
    return text.replace("'", "\\'")

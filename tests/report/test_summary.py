"""The run summary: where a run's explain report is."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from harness.local.pipeline import RunRecord, StepOutcome
from harness.report.summary import print_run_summary, print_tuning_table

RUN_PREFIX = "s3://harness-local-artifacts/ltr-ranking/runs/20261204120000"


def summary_text(record: RunRecord) -> str:
    console = Console(record=True, width=300)
    print_run_summary(console, record)
    return console.export_text()


def test_summary_prints_explain_report(tmp_path: Path) -> None:
    record = RunRecord("20261204120000", "ltr-ranking", "2026-12-04", workspace=str(tmp_path))
    outputs = {"explain": f"{RUN_PREFIX}/explain/explain"}
    record.steps.append(StepOutcome("explain", "job", "Completed", outputs=outputs))

    text = summary_text(record)

    report = tmp_path / "s3" / RUN_PREFIX.removeprefix("s3://") / "explain/explain/report.html"
    assert f"explain report: {report}" in text


def test_summary_without_explain_names_no_report(tmp_path: Path) -> None:
    record = RunRecord("20261204120000", "ltr-ranking", "2026-12-04", workspace=str(tmp_path))
    record.steps.append(StepOutcome("explain", "job", "Skipped"))

    assert "explain report" not in summary_text(record)


def test_summary_names_steps_per_prefix(tmp_path: Path) -> None:
    older = "s3://harness-local-artifacts/ltr-ranking/runs/20261204110000"
    record = RunRecord("20261204120000", "ltr-ranking", "2026-12-04", workspace=str(tmp_path))
    record.steps.append(
        StepOutcome("prepare", "job", "Completed", outputs={"train": f"{older}/prepare/train"})
    )
    record.steps.append(
        StepOutcome("train", "job", "Completed", outputs={"model": f"{RUN_PREFIX}/train/model"})
    )
    record.steps.append(
        StepOutcome("evaluate", "job", "Completed", outputs={"evaluation": f"{RUN_PREFIX}/eval"})
    )

    text = summary_text(record)

    assert f"Artifacts of train, evaluate: {RUN_PREFIX}/" in text
    assert f"Artifacts of prepare, from the cache of run 20261204110000: {older}/" in text


def test_tuning_table_keeps_values_in_logs() -> None:
    names = ["learning_rate", "batch_size", "hidden_units", "dropout"]
    table = {
        "tuning_job_name": "ltr-ranking-tune-57dfd20999f9",
        "strategy": "Bayesian",
        "objective": {"MetricName": "validation:best_ndcg@10", "Type": "Maximize"},
        "status": "Completed",
        "completion_reason": "MaxNumberOfTrainingJobs reached",
        "best_training_job": "ltr-ranking-tune-57dfd20999f9-001-85737b3f",
        "model": "s3://harness-local-artifacts/ltr-ranking/model.tar.gz",
        "tuned_hyperparameters": names,
        "training_jobs": [
            {
                "name": f"ltr-ranking-tune-57dfd20999f9-00{index}-85737b3f",
                "hyperparameters": {
                    "learning_rate": "0.0013372",
                    "batch_size": "16",
                    "hidden_units": "128,64",
                    "dropout": "0.2375",
                },
                "objective": 0.5123,
                "status": "Completed",
                "duration": 61.2,
            }
            for index in (1, 2)
        ],
    }
    # Not a terminal, 80 columns: the width of a log file or a CI job's output.
    console = Console(record=True, width=80, force_terminal=False)

    print_tuning_table(console, table)

    text = console.export_text()
    for heading in names:
        assert heading in text
    assert "0.001337" in text
    assert "…" not in text

"""The table of recorded runs that `harness runs` prints."""

from __future__ import annotations

from rich.console import Console

from harness.report.runs import print_runs
from harness.tracking.query import RunSummary


def runs_text(runs: list[RunSummary]) -> str:
    console = Console(record=True, width=200)
    print_runs(console, runs, "the workspace store")
    return console.export_text()


def test_runs_list_best_epoch_validation() -> None:
    run = RunSummary(
        mlflow_run_id="46e1ffb4c0de",
        run_id="20261205094717",
        name="ltr-ranking 20261205094717",
        status="Completed",
        started="2026-12-05 09:47:17",
        metrics={
            "train.validation:ndcg_at_10": 0.4378,
            "train.validation:best_ndcg_at_10": 0.4701,
            "evaluate.ndcg_at_10": 0.3398,
        },
        tags={"harness.cache_hits": "0/6"},
    )

    text = runs_text([run])

    assert "0.4701" in text
    assert "0.4378" not in text
    assert "0.3398" in text


def test_no_runs_names_config_files() -> None:
    assert "with the same -c files" in runs_text([])

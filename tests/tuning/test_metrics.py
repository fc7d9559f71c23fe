"""Metric extraction from training job logs, with SageMaker's MetricDefinitions semantics."""

from __future__ import annotations

from pathlib import Path

from harness.tuning import (
    FAILED,
    MetricExtractor,
    TrainingJobResult,
    extract_metrics,
    run_tuning_job,
)
from tests.tuning.scripted import METRIC_DEFINITIONS, OBJECTIVE, STATIC_HYPERPARAMETERS, make_tuning

LOG = [
    "Starting training",
    "epoch=1 train:loss=0.9100 validation:ndcg@10=0.3100",
    "saving checkpoint",
    "epoch=2 train:loss=0.7200 validation:ndcg@10=0.4400",
    "epoch=3 train:loss=0.6500 validation:ndcg@10=0.4200",
    "Training finished",
]


def test_metric_written_several_times() -> None:
    found = list(extract_metrics(METRIC_DEFINITIONS, LOG))

    assert found == [
        ("train:loss", 0.91),
        (OBJECTIVE, 0.31),
        ("train:loss", 0.72),
        (OBJECTIVE, 0.44),
        ("train:loss", 0.65),
        (OBJECTIVE, 0.42),
    ]
    objective_values = [value for name, value in found if name == OBJECTIVE]
    assert objective_values[-1] == 0.42


def test_values_yielded_as_lines_arrive() -> None:
    extractor = MetricExtractor(METRIC_DEFINITIONS)

    assert extractor.feed("Starting training") == []
    assert extractor.feed(LOG[1]) == [("train:loss", 0.91), (OBJECTIVE, 0.31)]


def test_text_with_several_lines_split() -> None:
    extractor = MetricExtractor({OBJECTIVE: METRIC_DEFINITIONS[OBJECTIVE]})

    assert extractor.feed(LOG[1] + "\n" + LOG[3]) == [(OBJECTIVE, 0.31), (OBJECTIVE, 0.44)]


def test_capture_that_is_not_a_number_skipped() -> None:
    extractor = MetricExtractor({"accuracy": r"accuracy=(\S+)"})

    assert extractor.feed("accuracy=n/a") == []
    assert extractor.feed("accuracy=1e-3") == [("accuracy", 0.001)]


def test_objective_never_written_fails_job(tmp_path: Path) -> None:
    def launch(name, hyperparameters, on_line, should_stop) -> TrainingJobResult:
        on_line("epoch=1 train:loss=0.9100")
        on_line("epoch=1 validation:ndcg=0.3100")
        return TrainingJobResult("Completed")

    result = run_tuning_job(
        "ltr-tuning",
        make_tuning(max_jobs=1),
        STATIC_HYPERPARAMETERS,
        METRIC_DEFINITIONS,
        launch,
        tmp_path,
    )

    record = result.trials[0]
    assert record.status == FAILED
    assert record.objective is None
    assert record.final_metrics == {"train:loss": 0.91}
    reason = record.failure_reason or ""
    assert record.name in reason
    assert f'"{OBJECTIVE}"' in reason
    assert repr(METRIC_DEFINITIONS[OBJECTIVE]) in reason
    assert result.best_trial is None

"""Resuming an interrupted tuning job, and warm start from parent tuning jobs."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from harness.config import ParameterRange
from harness.errors import TuningError
from harness.tuning import COMPLETED, TuningResult
from harness.tuning.storage import study_path
from tests.tuning.scripted import (
    ScriptedLauncher,
    flat_curve,
    run_tuning,
)

GRID_RANGES = (
    ParameterRange("hidden_units", "Categorical", values=("128,64", "64,32", "256,128")),
    ParameterRange("loss", "Categorical", values=("softmax", "pairwise_logistic")),
)


def by_learning_rate(hyperparameters: dict[str, str]) -> float:
    # Grid tuning jobs here tune no learning rate.
    return float(hyperparameters.get("learning_rate", "0.5"))


def run(
    folder: Path, launcher: ScriptedLauncher, name: str = "ltr-tuning", **changes: object
) -> TuningResult:
    return run_tuning(folder, launcher, name, **changes)


def interrupted_run(folder: Path, on_call: int, **changes: object) -> ScriptedLauncher:
    """Run until the ``on_call``-th training job raises, and return that launcher."""
    launcher = ScriptedLauncher(flat_curve(by_learning_rate), raise_on_call=on_call)
    with pytest.raises(RuntimeError, match="tuning process killed"):
        run(folder, launcher, **changes)
    return launcher


def test_resume_keeps_finished_jobs(tmp_path: Path) -> None:
    first = interrupted_run(tmp_path, on_call=4)
    interrupted_name, interrupted_hyperparameters = first.calls[3]

    second = ScriptedLauncher(flat_curve(by_learning_rate))
    result = run(tmp_path, second)

    assert len(result.trials) == 6
    assert [record.status for record in result.trials] == [COMPLETED] * 6
    first_three = [(record.name, record.hyperparameters) for record in result.trials[:3]]
    assert first_three == first.calls[:3]
    # The interrupted training job runs again under its name, with its values.
    assert second.calls[0] == (interrupted_name, interrupted_hyperparameters)
    assert len(second.calls) == 3
    assert len({record.name for record in result.trials}) == 6


def test_resume_after_interruption_with_parallel_jobs(tmp_path: Path) -> None:
    first = interrupted_run(tmp_path, on_call=3, max_parallel_jobs=2)

    second = ScriptedLauncher(flat_curve(by_learning_rate))
    result = run(tmp_path, second, max_parallel_jobs=2)

    assert len(result.trials) == 6
    assert [record.status for record in result.trials] == [COMPLETED] * 6
    assert len({record.name for record in result.trials}) == 6
    # The job that raised runs again, and no job runs twice to completion.
    assert first.calls[2] in second.calls
    assert len(first.calls) + len(second.calls) - 6 <= 2


def test_resumed_run_matches_uninterrupted_run(tmp_path: Path) -> None:
    interrupted_run(tmp_path / "resumed", on_call=3)
    resumed = run(tmp_path / "resumed", ScriptedLauncher(flat_curve(by_learning_rate)))

    straight = run(tmp_path / "straight", ScriptedLauncher(flat_curve(by_learning_rate)))

    assert [record.hyperparameters for record in resumed.trials] == [
        record.hyperparameters for record in straight.trials
    ]
    assert [record.name for record in resumed.trials] == [record.name for record in straight.trials]


def test_grid_resume_covers_each_combination_once(tmp_path: Path) -> None:
    grid = {"strategy": "Grid", "ranges": GRID_RANGES, "max_jobs": 6}
    interrupted_run(tmp_path, on_call=3, **grid)

    result = run(tmp_path, ScriptedLauncher(flat_curve(by_learning_rate)), **grid)

    combinations = [
        (record.hyperparameters["hidden_units"], record.hyperparameters["loss"])
        for record in result.trials
    ]
    assert len(combinations) == 6
    assert len(set(combinations)) == 6


def test_rerun_of_finished_job_launches_nothing(tmp_path: Path) -> None:
    first = run(tmp_path, ScriptedLauncher(flat_curve(by_learning_rate)))

    again = ScriptedLauncher(flat_curve(by_learning_rate))
    second = run(tmp_path, again)

    assert again.calls == []
    assert second.trials == first.trials
    assert second.best_trial == first.best_trial


def test_more_jobs_on_rerun(tmp_path: Path) -> None:
    run(tmp_path, ScriptedLauncher(flat_curve(by_learning_rate)), max_jobs=3)

    again = ScriptedLauncher(flat_curve(by_learning_rate))
    result = run(tmp_path, again, max_jobs=5)

    assert len(again.calls) == 2
    assert len(result.trials) == 5


def test_resume_with_changed_ranges_rejected(tmp_path: Path) -> None:
    interrupted_run(tmp_path, on_call=2)
    narrower = (ParameterRange("learning_rate", "Continuous", "0.001", "0.1", "Logarithmic"),)

    with pytest.raises(TuningError) as raised:
        run(tmp_path, ScriptedLauncher(flat_curve(by_learning_rate)), ranges=narrower)

    message = str(raised.value)
    assert "different ranges" in message
    assert str(study_path(tmp_path, "ltr-tuning")) in message
    assert "Fix:" in message


def test_study_file_is_sqlite(tmp_path: Path) -> None:
    run(tmp_path, ScriptedLauncher(flat_curve(by_learning_rate)), max_jobs=1)

    with sqlite3.connect(study_path(tmp_path, "ltr-tuning")) as connection:
        names = [row[0] for row in connection.execute("SELECT study_name FROM studies")]
    assert names == ["ltr-tuning"]


def test_warm_start_copies_parent_jobs(tmp_path: Path) -> None:
    parent = run(tmp_path, ScriptedLauncher(flat_curve(by_learning_rate)), name="parent")

    child_launcher = ScriptedLauncher(flat_curve(by_learning_rate))
    child = run(
        tmp_path,
        child_launcher,
        name="child",
        strategy="Bayesian",
        max_jobs=2,
        warm_start_parents=("parent",),
        warm_start_type="IdenticalDataAndAlgorithm",
    )

    assert child.warm_start_trials == len(parent.trials)
    assert len(child.trials) == 2
    assert len(child_launcher.calls) == 2
    assert all(record.name.startswith("child-") for record in child.trials)


def test_warm_start_skips_jobs_outside_ranges(tmp_path: Path) -> None:
    parent = run(tmp_path, ScriptedLauncher(flat_curve(by_learning_rate)), name="parent")
    learning_rates = sorted(float(r.hyperparameters["learning_rate"]) for r in parent.trials)
    low = repr(learning_rates[3])
    narrower = (
        ParameterRange("learning_rate", "Continuous", low, "0.1", "Logarithmic"),
        ParameterRange("batch_size", "Integer", "4", "64", "Linear"),
    )

    child = run(
        tmp_path,
        ScriptedLauncher(flat_curve(by_learning_rate)),
        name="child",
        max_jobs=1,
        ranges=narrower,
        warm_start_parents=("parent",),
        warm_start_type="TransferLearning",
    )

    assert child.warm_start_trials == 3


def test_warm_start_parent_not_found(tmp_path: Path) -> None:
    with pytest.raises(TuningError, match="warm start parent tuning job missing not found"):
        run(
            tmp_path,
            ScriptedLauncher(flat_curve(by_learning_rate)),
            warm_start_parents=("missing",),
            warm_start_type="TransferLearning",
        )


def test_warm_start_parent_with_other_objective(tmp_path: Path) -> None:
    run(tmp_path, ScriptedLauncher(flat_curve(by_learning_rate)), name="parent", max_jobs=1)

    with pytest.raises(TuningError, match="same objective metric"):
        run(
            tmp_path,
            ScriptedLauncher(flat_curve(by_learning_rate)),
            name="child",
            objective_type="Minimize",
            warm_start_parents=("parent",),
            warm_start_type="TransferLearning",
        )

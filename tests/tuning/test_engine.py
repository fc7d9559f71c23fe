"""run_tuning_job: strategies, seeds, early stopping and completion criteria on scripted logs."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pytest

from harness.config import ParameterRange
from harness.errors import TuningError
from harness.tuning import (
    COMPLETED,
    FAILED,
    STOPPED,
    TUNING_OBJECTIVE_METRIC,
    TrainingJobResult,
    TuningResult,
)
from harness.tuning.engine import LaunchTrial
from tests.tuning.scripted import (
    OBJECTIVE,
    STATIC_HYPERPARAMETERS,
    ScriptedLauncher,
    flat_curve,
    log_line,
    run_tuning,
)


def run(
    tmp_path: Path, launcher: LaunchTrial, name: str = "ltr-tuning", **changes: object
) -> TuningResult:
    return run_tuning(tmp_path / "tuning", launcher, name, **changes)


def in_call_order(
    curves: Sequence[Sequence[float]],
) -> Callable[[Mapping[str, str]], Sequence[float]]:
    """Return a curve function that hands out ``curves`` one per training job, in start order."""
    remaining = iter(curves)
    lock = threading.Lock()

    def next_curve(hyperparameters: Mapping[str, str]) -> Sequence[float]:
        with lock:
            return next(remaining)

    return next_curve


def by_learning_rate(hyperparameters: Mapping[str, str]) -> float:
    return float(hyperparameters["learning_rate"])


GRID_RANGES = (
    ParameterRange("hidden_units", "Categorical", values=("128,64", "64,32", "256,128")),
    ParameterRange("loss", "Categorical", values=("softmax", "pairwise_logistic")),
)


def test_trial_hyperparameters_include_static_and_objective(tmp_path: Path) -> None:
    launcher = ScriptedLauncher(flat_curve(by_learning_rate))

    result = run(tmp_path, launcher, max_jobs=2)

    for (name, hyperparameters), record in zip(launcher.calls, result.trials, strict=True):
        assert record.name == name
        assert record.hyperparameters == hyperparameters
        assert hyperparameters["epochs"] == "9"
        assert hyperparameters["loss"] == "softmax"
        assert hyperparameters[TUNING_OBJECTIVE_METRIC] == OBJECTIVE
        assert 0.0001 <= float(hyperparameters["learning_rate"]) <= 0.1
        assert 4 <= int(hyperparameters["batch_size"]) <= 64
        # The tuned value replaces the static batch_size of 8 in every trial of this seed.
        assert hyperparameters["batch_size"] != STATIC_HYPERPARAMETERS["batch_size"]
        assert all(isinstance(value, str) for value in hyperparameters.values())


def test_records_carry_log_values_and_times(tmp_path: Path) -> None:
    launcher = ScriptedLauncher(in_call_order([[0.2, 0.4, 0.3]]))

    result = run(tmp_path, launcher, max_jobs=1)

    record = result.trials[0]
    assert record.name.startswith("ltr-tuning-001-")
    assert record.status == COMPLETED
    assert record.intermediate_values == (0.2, 0.4, 0.3)
    assert record.objective == 0.3
    assert record.final_metrics == {"train:loss": 0.7, OBJECTIVE: 0.3}
    assert record.start_time is not None and record.end_time is not None
    assert record.start_time <= record.end_time
    assert record.failure_reason is None
    assert result.best_trial == record
    assert result.completion_reason == "MaxNumberOfTrainingJobs"


def test_grid_runs_each_combination_once(tmp_path: Path) -> None:
    launcher = ScriptedLauncher(flat_curve(lambda hyperparameters: 0.5))

    result = run(
        tmp_path,
        launcher,
        strategy="Grid",
        ranges=GRID_RANGES,
        max_jobs=6,
        max_parallel_jobs=2,
    )

    combinations = [
        (record.hyperparameters["hidden_units"], record.hyperparameters["loss"])
        for record in result.trials
    ]
    expected = itertools.product(("128,64", "64,32", "256,128"), ("softmax", "pairwise_logistic"))
    assert sorted(combinations) == sorted(expected)
    assert len(launcher.calls) == 6


def tuned_values(result: TuningResult) -> list[tuple[str, str]]:
    return [
        (record.hyperparameters["learning_rate"], record.hyperparameters["batch_size"])
        for record in result.trials
    ]


@pytest.mark.parametrize("strategy", ["Random", "Bayesian"])
def test_same_seed_same_trials(tmp_path: Path, strategy: str) -> None:
    # 12 Bayesian jobs go past the 4 random startup jobs (a third of max_jobs).
    first = run(
        tmp_path / "a",
        ScriptedLauncher(flat_curve(by_learning_rate)),
        strategy=strategy,
        max_jobs=12,
        random_seed=5,
    )
    second = run(
        tmp_path / "b",
        ScriptedLauncher(flat_curve(by_learning_rate)),
        strategy=strategy,
        max_jobs=12,
        random_seed=5,
    )

    assert tuned_values(first) == tuned_values(second)
    assert len(set(tuned_values(first))) == 12


def test_bayesian_leaves_random_after_startup(tmp_path: Path) -> None:
    # With the same seed, Bayesian's startup jobs are Random's jobs. The jobs after them
    # follow TPE's model of the objective, which rises with the learning rate here.
    random, bayesian = (
        tuned_values(
            run(
                tmp_path / strategy,
                ScriptedLauncher(flat_curve(by_learning_rate)),
                strategy=strategy,
                max_jobs=9,
                random_seed=3,
            )
        )
        for strategy in ("Random", "Bayesian")
    )

    assert bayesian[:3] == random[:3]
    assert bayesian[3:] != random[3:]


@pytest.mark.parametrize("strategy", ["Random", "Bayesian", "Grid"])
def test_different_seed_different_trials(tmp_path: Path, strategy: str) -> None:
    changes: dict[str, object] = {"strategy": strategy}
    if strategy == "Grid":
        changes.update(ranges=GRID_RANGES, max_jobs=6)
    first = run(
        tmp_path / "a", ScriptedLauncher(flat_curve(lambda h: 0.5)), random_seed=5, **changes
    )
    second = run(
        tmp_path / "b", ScriptedLauncher(flat_curve(lambda h: 0.5)), random_seed=6, **changes
    )

    first_values = [record.hyperparameters for record in first.trials]
    second_values = [record.hyperparameters for record in second.trials]
    assert first_values != second_values


def test_hyperband_stops_poor_training_jobs(tmp_path: Path) -> None:
    ranges = (
        ParameterRange("learning_rate", "Continuous", "0.0001", "0.1", "Logarithmic"),
        ParameterRange("optimizer", "Categorical", values=("good", "poor")),
    )

    def curve(hyperparameters: Mapping[str, str]) -> list[float]:
        start = 0.7 if hyperparameters["optimizer"] == "good" else 0.2
        return [start + epoch * 0.01 for epoch in range(9)]

    launcher = ScriptedLauncher(curve)

    result = run(
        tmp_path,
        launcher,
        strategy="Hyperband",
        ranges=ranges,
        max_jobs=12,
        min_resource=1,
        max_resource=9,
    )

    stopped = [record for record in result.trials if record.status == STOPPED]
    assert stopped, "Hyperband stopped no training job"
    for record in stopped:
        assert record.hyperparameters["optimizer"] == "poor"
        assert len(record.intermediate_values) < 9
        assert record.objective == record.intermediate_values[-1]
        assert record.stop_reason is not None and "Hyperband" in record.stop_reason
        assert record.name in launcher.stopped
    best = result.best_trial
    assert best is not None
    assert best.status == COMPLETED
    assert best.hyperparameters["optimizer"] == "good"


def test_hyperband_stops_at_max_resource(tmp_path: Path) -> None:
    # The static epochs (9) exceed MaxResource (4), so the jobs would run past it.
    launcher = ScriptedLauncher(flat_curve(lambda hyperparameters: 0.5, epochs=9))

    result = run(
        tmp_path, launcher, strategy="Hyperband", max_jobs=2, min_resource=1, max_resource=4
    )

    for record in result.trials:
        assert record.status == STOPPED
        assert record.intermediate_values == (0.5,) * 4
        assert record.objective == 0.5
        assert record.stop_reason == "it reached MaxResource (4 epochs)"


def test_auto_early_stopping_median_rule(tmp_path: Path) -> None:
    # Job 2 is below job 1's epoch-1 value 0.5. At epoch 2, job 4 is below the median of the
    # running averages of jobs 1 and 3 (0.55 and 0.65). Job 2 never reached epoch 2.
    curves = [[0.5, 0.6, 0.7], [0.2, 0.3, 0.4], [0.6, 0.7, 0.8], [0.55, 0.5, 0.45]]
    launcher = ScriptedLauncher(in_call_order(curves))

    result = run(tmp_path, launcher, max_jobs=4, early_stopping="Auto")

    assert [record.status for record in result.trials] == [COMPLETED, STOPPED, COMPLETED, STOPPED]
    assert [record.intermediate_values for record in result.trials] == [
        (0.5, 0.6, 0.7),
        (0.2,),
        (0.6, 0.7, 0.8),
        (0.55, 0.5),
    ]
    assert [record.objective for record in result.trials] == [0.7, 0.2, 0.8, 0.5]
    assert result.best_trial == result.trials[2]


def test_early_stopping_off_runs_every_epoch(tmp_path: Path) -> None:
    curves = [[0.5, 0.6, 0.7], [0.2, 0.3, 0.4]]
    launcher = ScriptedLauncher(in_call_order(curves))

    result = run(tmp_path, launcher, max_jobs=2)

    assert [record.status for record in result.trials] == [COMPLETED, COMPLETED]
    assert launcher.stopped == []


def test_target_objective_value_completes_early(tmp_path: Path) -> None:
    values = [0.3, 0.5, 0.95, 0.4, 0.6]
    launcher = ScriptedLauncher(in_call_order([[value] for value in values]))

    result = run(tmp_path, launcher, max_jobs=5, target_objective_value=0.9)

    assert len(launcher.calls) == 3
    assert [record.objective for record in result.trials] == [0.3, 0.5, 0.95]
    assert result.completion_reason == "TargetObjectiveMetricValue"


def test_best_objective_not_improving_completes_early(tmp_path: Path) -> None:
    # 0.601 improves on 0.6 by less than 1%, so it counts as not improving.
    values = [0.5, 0.6, 0.601, 0.59, 0.3, 0.99]
    launcher = ScriptedLauncher(in_call_order([[value] for value in values]))

    result = run(tmp_path, launcher, max_jobs=6, max_jobs_not_improving=3)

    assert len(launcher.calls) == 5
    assert result.completion_reason == "BestObjectiveNotImproving"
    assert result.best_trial is not None
    assert result.best_trial.objective == 0.601


def test_completion_stops_running_jobs(tmp_path: Path) -> None:
    # With 2 jobs at once, job 2 reaches the target while job 1 still runs.
    second_done = threading.Event()

    def launch(name, hyperparameters, on_line, should_stop) -> TrainingJobResult:
        if "-001-" in name:
            for epoch in range(1, 1000):
                on_line(log_line(epoch, 0.1))
                if should_stop():
                    return TrainingJobResult(STOPPED)
                second_done.wait(0.01)
            return TrainingJobResult(COMPLETED)
        on_line(log_line(1, 0.99))
        second_done.set()
        return TrainingJobResult(COMPLETED)

    result = run(tmp_path, launch, max_jobs=10, max_parallel_jobs=2, target_objective_value=0.9)

    assert [record.status for record in result.trials] == [STOPPED, COMPLETED]
    assert result.trials[0].stop_reason == "the tuning job completed (TargetObjectiveMetricValue)"
    assert result.completion_reason == "TargetObjectiveMetricValue"


def test_parallel_jobs_run_at_once(tmp_path: Path) -> None:
    barrier = threading.Barrier(3, timeout=10)
    inner = ScriptedLauncher(flat_curve(by_learning_rate))

    def launch(name, hyperparameters, on_line, should_stop) -> TrainingJobResult:
        barrier.wait()  # Breaks with an error unless 3 training jobs run at the same time.
        return inner(name, hyperparameters, on_line, should_stop)

    result = run(tmp_path, launch, max_jobs=6, max_parallel_jobs=3)

    assert [record.status for record in result.trials] == [COMPLETED] * 6


def test_failed_training_job_recorded(tmp_path: Path) -> None:
    launcher = ScriptedLauncher(
        flat_curve(by_learning_rate), status=FAILED, failure_reason="AlgorithmError: out of memory"
    )

    result = run(tmp_path, launcher, max_jobs=2)

    assert [record.status for record in result.trials] == [FAILED, FAILED]
    assert result.trials[0].failure_reason == "AlgorithmError: out of memory"
    assert result.trials[0].objective is None
    assert result.best_trial is None
    assert result.completion_reason == "MaxNumberOfTrainingJobs"


def test_minimize_picks_lowest_objective(tmp_path: Path) -> None:
    values = [0.4, 0.1, 0.3]
    launcher = ScriptedLauncher(in_call_order([[value] for value in values]))

    result = run(tmp_path, launcher, max_jobs=3, objective_type="Minimize")

    assert result.best_trial == result.trials[1]


def test_invalid_status_from_launcher_raises(tmp_path: Path) -> None:
    launcher = ScriptedLauncher(flat_curve(by_learning_rate), status="Succeeded")

    with pytest.raises(ValueError, match="'Succeeded'"):
        run(tmp_path, launcher, max_jobs=1)


def test_invalid_tuning_job_name_rejected(tmp_path: Path) -> None:
    with pytest.raises(TuningError, match="invalid tuning job name"):
        run(tmp_path, ScriptedLauncher(flat_curve(by_learning_rate)), name="ltr_tuning")


def test_grid_with_numeric_range_rejected(tmp_path: Path) -> None:
    launcher = ScriptedLauncher(flat_curve(by_learning_rate))

    with pytest.raises(TuningError, match="only categorical ranges"):
        run(tmp_path, launcher, strategy="Grid")


def test_objective_without_definition_rejected(tmp_path: Path) -> None:
    launcher = ScriptedLauncher(flat_curve(by_learning_rate))

    with pytest.raises(TuningError, match='"validation:map"'):
        run(tmp_path, launcher, objective_metric="validation:map")

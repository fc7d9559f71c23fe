"""SeededHyperbandPruner: brackets dealt from the random seed, whatever the tuning job's name."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from harness.config import ParameterRange
from harness.tuning import STOPPED, TrialRecord
from harness.tuning.strategies import SeededHyperbandPruner
from tests.tuning.scripted import ScriptedLauncher, run_tuning


def test_each_round_deals_every_bracket_its_share() -> None:
    pruner = SeededHyperbandPruner(7, min_resource=3, max_resource=30)
    # 3 brackets (rungs from epoch 3, 9 and 27) with shares 9, 5 and 3 of every 17 jobs.
    for first in (1, 18, 35):
        brackets = [pruner.bracket_of(index) for index in range(first, first + 17)]
        assert Counter(brackets) == {0: 9, 1: 5, 2: 3}


def test_seed_alone_decides_the_brackets() -> None:
    def deal(seed: int) -> list[int]:
        pruner = SeededHyperbandPruner(seed, min_resource=1, max_resource=27)
        return [pruner.bracket_of(index) for index in range(1, 41)]

    assert deal(11) == deal(11)
    assert deal(11) != deal(12)


def test_bracket_follows_launch_index() -> None:
    import optuna

    pruner = SeededHyperbandPruner(3, min_resource=1, max_resource=27)
    study = optuna.create_study(direction="maximize")
    # A rerun of an interrupted training job: a new trial number, the same launch index.
    trial = study.ask()
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    rerun = study.ask()
    rerun.set_user_attr("training_job", {"launch_index": 1})
    frozen = study.trials[rerun.number]
    assert frozen.number == 1
    assert pruner._get_bracket_id(study, frozen) == pruner.bracket_of(1)


def learning_curve(hyperparameters: Mapping[str, str]) -> list[float]:
    """Return 9 epochs that rise faster with a larger learning rate."""
    rate = float(hyperparameters["learning_rate"])
    return [min(0.9, rate * 10 * epoch) for epoch in range(1, 10)]


def run_hyperband(
    folder: Path,
    name: str = "ltr-tuning",
    seed: int = 4,
    stop_lag: int = 0,
    on_record: Callable[[TrialRecord], None] | None = None,
) -> list[TrialRecord]:
    """Run a Hyperband tuning job of 12 scripted jobs, one at a time; return its trials."""
    result = run_tuning(
        folder,
        ScriptedLauncher(learning_curve, stop_lag=stop_lag),
        name,
        on_record,
        strategy="Hyperband",
        ranges=(ParameterRange("learning_rate", "Continuous", "0.001", "0.1", "Logarithmic"),),
        max_jobs=12,
        max_parallel_jobs=1,
        min_resource=1,
        max_resource=9,
        random_seed=seed,
    )
    return list(result.trials)


def stop_epochs(tmp_path: Path, name: str, seed: int) -> list[int | None]:
    """Return each job's stop epoch (None: completed) in a tuning job named `name`."""
    return [
        len(record.intermediate_values) if record.status == STOPPED else None
        for record in run_hyperband(tmp_path / name, name, seed)
    ]


@pytest.mark.parametrize("seed", [4, 9])
def test_stops_ignore_tuning_job_name(tmp_path: Path, seed: int) -> None:
    first = stop_epochs(tmp_path, "ltr-tuning-a", seed)
    assert any(epoch is not None for epoch in first), "Hyperband stopped no training job"
    assert stop_epochs(tmp_path, "ltr-tuning-b", seed) == first


def test_epochs_after_stop_change_nothing(tmp_path: Path) -> None:
    """A job that trains on while its stop reaches it keeps the objective of the decision."""
    prompt = run_hyperband(tmp_path / "prompt")
    lagging = run_hyperband(tmp_path / "lagging", stop_lag=2)
    stopped = [record for record in lagging if record.status == STOPPED]
    assert stopped, "Hyperband stopped no training job"
    for fast, slow in zip(prompt, lagging, strict=True):
        assert slow.status == fast.status
        assert slow.objective == fast.objective
        assert slow.stop_reason == fast.stop_reason
        assert slow.final_metrics == fast.final_metrics
    for record in stopped:
        epoch = int(record.stop_reason.rsplit(" ", 1)[-1])
        # The curve keeps the epochs trained after the decision.
        assert len(record.intermediate_values) > epoch
        assert record.objective == record.intermediate_values[epoch - 1]


def test_progress_report_matches_record(tmp_path: Path) -> None:
    """The progress line of each job gets the objective and status the tuning job stores."""
    reported: list[TrialRecord] = []
    trials = run_hyperband(tmp_path, stop_lag=2, on_record=reported.append)
    assert len(reported) == len(trials) == 12
    by_name = {record.name: record for record in reported}
    for record in trials:
        assert by_name[record.name].status == record.status
        assert by_name[record.name].objective == record.objective

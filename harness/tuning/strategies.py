"""The Optuna sampler and pruner behind each tuning strategy and early stopping type.

- Grid: GridSampler over every combination of the categorical values. Each combination runs
  once, in an order shuffled by the random seed.
- Random: RandomSampler.
- Bayesian: TPESampler, after a third of max_jobs (2 to 10) random startup jobs. Optuna's
  GPSampler needs PyTorch, which harness does not install.
- Hyperband: RandomSampler with SeededHyperbandPruner, Optuna's HyperbandPruner with brackets
  dealt from the random seed (see there). Its resource is the epoch: the n-th value of the
  objective metric is step n. The Hyperband paper pairs it with random sampling, as
  HyperbandPruner's documentation notes, and TPE would need about 10 startup trials in each
  bracket.
- Early stopping Auto: MedianRunningAveragePruner, SageMaker's documented rule.

Random and TPE samplers get a seed per training job, derived from the tuning job's random seed
and the job's launch index (1, 2, ...). A resumed tuning job therefore samples the jobs it still
has to run as an uninterrupted one would, instead of replaying the first jobs' values.
"""

from __future__ import annotations

import statistics

import numpy as np
from optuna.pruners import BasePruner, HyperbandPruner, NopPruner
from optuna.samplers import BaseSampler, GridSampler, RandomSampler, TPESampler
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from harness.config import TuningConfig
from harness.tuning import records
from harness.tuning.space import grid_search_space


def trial_seed(random_seed: int, launch_index: int) -> int:
    """Return a 32-bit seed for one training job, independent of its neighbours' seeds."""
    return int(np.random.SeedSequence([random_seed, launch_index]).generate_state(1)[0])


def startup_jobs(max_jobs: int) -> int:
    """Return how many training jobs Bayesian samples at random before TPE's model guides it.

    TPE's default of 10 would leave a tuning job of 10 or fewer jobs purely random, so a third
    of the budget is used, from 2 to 10 jobs.
    """
    return max(2, min(10, max_jobs // 3))


def make_sampler(tuning: TuningConfig, random_seed: int, launch_index: int) -> BaseSampler:
    """Return the sampler that chooses the values of the ``launch_index``-th training job."""
    if tuning.strategy == "Grid":
        # GridSampler's seed only shuffles the grid, and the same seed must give the same
        # order for every trial, so it takes the tuning job's seed.
        return GridSampler(grid_search_space(tuning.ranges), seed=random_seed)
    seed = trial_seed(random_seed, launch_index)
    if tuning.strategy == "Bayesian":
        return TPESampler(seed=seed, n_startup_trials=startup_jobs(tuning.max_jobs))
    return RandomSampler(seed=seed)


def make_pruner(tuning: TuningConfig, random_seed: int) -> BasePruner:
    """Return the pruner that decides when a training job is stopped early."""
    if tuning.strategy == "Hyperband":
        assert tuning.min_resource is not None and tuning.max_resource is not None
        return SeededHyperbandPruner(
            random_seed, min_resource=tuning.min_resource, max_resource=tuning.max_resource
        )
    if tuning.early_stopping == "Auto":
        return MedianRunningAveragePruner()
    return NopPruner()


class SeededHyperbandPruner(HyperbandPruner):
    """HyperbandPruner whose brackets are dealt from the tuning job's random seed.

    HyperbandPruner puts trial n in a bracket by a CRC-32 of the study name and n, with each
    bracket's share of trials as Hyperband prescribes only on average. The study name is the
    tuning job's name, so the same seed gave another assignment under another name, and a
    resumed job's rerun of an interrupted training job took a new trial number and could
    change bracket. Here the training jobs are dealt in rounds: each round contains every
    bracket exactly as many times as its share, in an order shuffled by the seed and the
    round. A job's bracket depends only on the seed and its launch index.

    NOTE: this overrides HyperbandPruner's private `_get_bracket_id` and reads its bracket
    budgets. tests/tuning/test_hyperband.py fails if an Optuna release changes them.
    """

    def __init__(self, random_seed: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self._random_seed = random_seed
        self._rounds: dict[int, list[int]] = {}

    def bracket_of(self, launch_index: int) -> int:
        """Return the bracket of the training job with this launch index (1, 2, ...)."""
        self._try_initialization(None)  # type: ignore[arg-type]
        size = self._total_trial_allocation_budget
        round_number, position = divmod(launch_index - 1, size)
        if round_number not in self._rounds:
            deck = [
                bracket
                for bracket, share in enumerate(self._trial_allocation_budgets)
                for _ in range(share)
            ]
            np.random.default_rng([self._random_seed, round_number]).shuffle(deck)
            self._rounds[round_number] = deck
        return self._rounds[round_number][position]

    def _try_initialization(self, study: Study | None) -> None:
        # MaxResource is always given, so the brackets never depend on the study.
        if not self._pruners:
            super()._try_initialization(study)  # type: ignore[arg-type]

    def _get_bracket_id(self, study: Study, trial: FrozenTrial) -> int:
        index = records.launch_index(trial)
        return self.bracket_of(trial.number + 1 if index is None else index)


class MedianRunningAveragePruner(BasePruner):
    """SageMaker's early stopping rule for TrainingJobEarlyStoppingType Auto.

    From "Stop Training Jobs Early" in the SageMaker Developer Guide: after each epoch, take
    the running average of the objective metric of every previous training job up to the same
    epoch, and the median of those averages. The training job stops when its value is worse
    than that median. Previous training jobs are those that finished (Completed or Stopped)
    and reached the epoch; with none, the job continues.
    """

    def prune(self, study: Study, trial: FrozenTrial) -> bool:
        step = trial.last_step
        if step is None:
            return False
        value = trial.intermediate_values[step]

        averages = []
        finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        for previous in finished:
            values = [previous.intermediate_values.get(epoch) for epoch in range(1, step + 1)]
            if None in values:
                continue
            averages.append(statistics.fmean(v for v in values if v is not None))
        if not averages:
            return False

        median = statistics.median(averages)
        if study.direction == StudyDirection.MAXIMIZE:
            return value < median
        return value > median

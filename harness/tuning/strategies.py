"""The Optuna sampler and pruner behind each tuning strategy and early stopping type.

- Grid: GridSampler over every combination of the categorical values. Each combination runs
  once, in an order shuffled by the random seed.
- Random: RandomSampler.
- Bayesian: TPESampler, after a third of max_jobs (2 to 10) random startup jobs. Optuna's
  GPSampler needs PyTorch, which harness does not install.
- Hyperband: RandomSampler with HyperbandPruner, whose resource is the epoch: the n-th value
  of the objective metric is step n. The Hyperband paper pairs it with random sampling, as
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


def make_pruner(tuning: TuningConfig) -> BasePruner:
    """Return the pruner that decides when a training job is stopped early."""
    if tuning.strategy == "Hyperband":
        assert tuning.min_resource is not None and tuning.max_resource is not None
        return HyperbandPruner(min_resource=tuning.min_resource, max_resource=tuning.max_resource)
    if tuning.early_stopping == "Auto":
        return MedianRunningAveragePruner()
    return NopPruner()


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

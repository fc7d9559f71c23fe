"""Build the CreateHyperParameterTuningJob request of ``[tuning]`` for the train step.

The training job definition reuses the planned CreateTrainingJob request of the train step,
so a tuning job's training jobs get the same image, channels, resources and environment as
the untuned training job.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.config import Config, ParameterRange, TuningConfig
from harness.config.ranges import check_tuning_job_name
from harness.plan.build import PlanError

# ParameterRanges list for each kind of range.
_RANGE_LISTS = {
    "Integer": "IntegerParameterRanges",
    "Continuous": "ContinuousParameterRanges",
    "Categorical": "CategoricalParameterRanges",
}


def tuning_job_request(
    config: Config, training_request: Mapping[str, Any], tuning_job_name: str
) -> dict[str, Any]:
    """Return the CreateHyperParameterTuningJob request for ``config.tuning``.

    ``training_request`` is the train step's CreateTrainingJob request from build_plan().
    Its hyperparameters minus the tuned ones become StaticHyperParameters. SageMaker adds
    ``_tuning_objective_metric`` to each training job itself, so the request leaves it out.

    Raises:
        PlanError: the configuration has no [tuning] section, or the name is not a valid
            HyperParameterTuningJobName.
    """
    tuning = config.tuning
    if tuning is None:
        raise PlanError(
            "the configuration has no [tuning] section. Fix: add [tuning] and [tuning.ranges]."
        )
    issue = check_tuning_job_name(tuning_job_name)
    if issue is not None:
        raise PlanError(f"{issue.message}. Fix: {issue.fix}.")

    request: dict[str, Any] = {
        "HyperParameterTuningJobName": tuning_job_name,
        "HyperParameterTuningJobConfig": _tuning_job_config(tuning),
        "TrainingJobDefinition": _training_job_definition(tuning, training_request),
    }
    if tuning.warm_start_parents:
        request["WarmStartConfig"] = {
            "ParentHyperParameterTuningJobs": [
                {"HyperParameterTuningJobName": parent} for parent in tuning.warm_start_parents
            ],
            "WarmStartType": tuning.warm_start_type,
        }
    return request


def _tuning_job_config(tuning: TuningConfig) -> dict[str, Any]:
    job_config: dict[str, Any] = {
        "Strategy": tuning.strategy,
        "HyperParameterTuningJobObjective": {
            "Type": tuning.objective_type,
            "MetricName": tuning.objective_metric,
        },
        "ResourceLimits": {
            "MaxNumberOfTrainingJobs": tuning.max_jobs,
            "MaxParallelTrainingJobs": tuning.max_parallel_jobs,
        },
        "ParameterRanges": parameter_ranges(tuning.ranges),
        "TrainingJobEarlyStoppingType": tuning.early_stopping,
    }
    if tuning.strategy == "Hyperband":
        job_config["StrategyConfig"] = {
            "HyperbandStrategyConfig": {
                "MinResource": tuning.min_resource,
                "MaxResource": tuning.max_resource,
            }
        }
    if tuning.random_seed is not None:
        job_config["RandomSeed"] = tuning.random_seed

    criteria: dict[str, Any] = {}
    if tuning.target_objective_value is not None:
        criteria["TargetObjectiveMetricValue"] = tuning.target_objective_value
    if tuning.max_jobs_not_improving is not None:
        criteria["BestObjectiveNotImproving"] = {
            "MaxNumberOfTrainingJobsNotImproving": tuning.max_jobs_not_improving
        }
    if criteria:
        job_config["TuningJobCompletionCriteria"] = criteria
    return job_config


def parameter_ranges(ranges: tuple[ParameterRange, ...]) -> dict[str, list[dict[str, Any]]]:
    """Return the API's ParameterRanges, with only the lists that have ranges."""
    lists: dict[str, list[dict[str, Any]]] = {}
    for parameter_range in ranges:
        if parameter_range.kind == "Categorical":
            entry: dict[str, Any] = {
                "Name": parameter_range.name,
                "Values": list(parameter_range.values),
            }
        else:
            entry = {
                "Name": parameter_range.name,
                "MinValue": parameter_range.min_value,
                "MaxValue": parameter_range.max_value,
                "ScalingType": parameter_range.scaling_type,
            }
        lists.setdefault(_RANGE_LISTS[parameter_range.kind], []).append(entry)
    return lists


def _training_job_definition(
    tuning: TuningConfig, training_request: Mapping[str, Any]
) -> dict[str, Any]:
    tuned = set(tuning.tuned_names)
    algorithm = training_request["AlgorithmSpecification"]
    definition: dict[str, Any] = {
        "StaticHyperParameters": {
            key: value
            for key, value in training_request["HyperParameters"].items()
            if key not in tuned
        },
        "AlgorithmSpecification": {
            "TrainingImage": algorithm["TrainingImage"],
            "TrainingInputMode": algorithm["TrainingInputMode"],
            "MetricDefinitions": [dict(item) for item in algorithm["MetricDefinitions"]],
        },
        "RoleArn": training_request["RoleArn"],
        "InputDataConfig": [dict(channel) for channel in training_request["InputDataConfig"]],
        "OutputDataConfig": dict(training_request["OutputDataConfig"]),
        "ResourceConfig": dict(training_request["ResourceConfig"]),
        "StoppingCondition": dict(training_request["StoppingCondition"]),
    }
    if training_request.get("Environment"):
        definition["Environment"] = dict(training_request["Environment"])
    return definition

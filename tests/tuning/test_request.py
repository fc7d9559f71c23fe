"""The CreateHyperParameterTuningJob request, checked against botocore's SageMaker model."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import botocore.session
import pytest
from botocore.validate import ParamValidator

from harness.config import Config, load_config
from harness.plan.build import PlanError, build_plan
from harness.plan.tuning import tuning_job_request

REPO = Path(__file__).resolve().parents[2]
RUN_ID = "20261204120000"

TUNING = """\
[tuning]
strategy = {strategy}
objective_metric = validation:ndcg@10
objective_type = Maximize
{settings}

[tuning.ranges]
{ranges}
"""

NUMERIC_RANGES = """\
learning_rate = continuous 0.0001..0.01 Logarithmic
batch_size = integer 2..8
dropout = continuous 0..0.5 ReverseLogarithmic
hidden_units = categorical 32,16 | 64,32
"""

GRID_RANGES = """\
hidden_units = categorical 32,16 | 64,32 | 128,64
loss = categorical softmax | pairwise_logistic
"""


def load(tmp_path: Path, strategy: str, settings: str, ranges: str) -> Config:
    tuning_file = tmp_path / "tuning.ini"
    tuning_file.write_text(TUNING.format(strategy=strategy, settings=settings, ranges=ranges))
    return load_config(
        REPO / "config.ini",
        [REPO / "fixtures" / "fixtures.ini", tuning_file],
        use_local=False,
    )


def untuned_training_request(config: Config) -> dict:
    """Return the CreateTrainingJob request that train would get without [tuning]."""
    return build_plan(dataclasses.replace(config, tuning=None), RUN_ID).job("train").request


def request_for(config: Config) -> dict:
    training_request = untuned_training_request(config)
    return tuning_job_request(config, training_request, "ltr-tuning-1")


def assert_valid(request: dict) -> None:
    model = botocore.session.get_session().get_service_model("sagemaker")
    shape = model.operation_model("CreateHyperParameterTuningJob").input_shape
    report = ParamValidator().validate(request, shape)
    assert not report.has_errors(), report.generate_report()


def test_bayesian_request_matches_api(tmp_path: Path) -> None:
    settings = (
        "max_jobs = 20\nmax_parallel_jobs = 2\nearly_stopping = Auto\nrandom_seed = 7\n"
        "target_objective_value = 0.6\nmax_jobs_not_improving = 5\n"
        "warm_start_parents = ltr-tuning-0\nwarm_start_type = IdenticalDataAndAlgorithm"
    )
    request = request_for(load(tmp_path, "Bayesian", settings, NUMERIC_RANGES))

    assert_valid(request)
    job_config = request["HyperParameterTuningJobConfig"]
    assert job_config["ResourceLimits"] == {
        "MaxNumberOfTrainingJobs": 20,
        "MaxParallelTrainingJobs": 2,
    }
    assert job_config["RandomSeed"] == 7
    assert job_config["TrainingJobEarlyStoppingType"] == "Auto"
    assert job_config["TuningJobCompletionCriteria"] == {
        "TargetObjectiveMetricValue": 0.6,
        "BestObjectiveNotImproving": {"MaxNumberOfTrainingJobsNotImproving": 5},
    }
    assert job_config["ParameterRanges"]["ContinuousParameterRanges"][1] == {
        "Name": "dropout",
        "MinValue": "0",
        "MaxValue": "0.5",
        "ScalingType": "ReverseLogarithmic",
    }
    assert job_config["ParameterRanges"]["CategoricalParameterRanges"] == [
        {"Name": "hidden_units", "Values": ["32,16", "64,32"]}
    ]
    assert request["WarmStartConfig"] == {
        "ParentHyperParameterTuningJobs": [{"HyperParameterTuningJobName": "ltr-tuning-0"}],
        "WarmStartType": "IdenticalDataAndAlgorithm",
    }


def test_training_definition_reuses_training_request(tmp_path: Path) -> None:
    config = load(tmp_path, "Random", "max_jobs = 4", NUMERIC_RANGES)
    training_request = untuned_training_request(config)

    definition = tuning_job_request(config, training_request, "ltr-tuning-1")[
        "TrainingJobDefinition"
    ]

    static = definition["StaticHyperParameters"]
    for tuned in ("learning_rate", "batch_size", "dropout", "hidden_units"):
        assert tuned not in static
    assert static["epochs"] == "8"
    assert static["sagemaker_program"] == "train/train.py"
    assert "_tuning_objective_metric" not in static
    metrics = training_request["AlgorithmSpecification"]["MetricDefinitions"]
    assert {"Name": "validation:ndcg@10", "Regex": "validation:ndcg@10=([0-9.eE+-]+)"} in metrics
    assert definition["AlgorithmSpecification"]["MetricDefinitions"] == metrics
    assert definition["InputDataConfig"] == training_request["InputDataConfig"]
    assert definition["ResourceConfig"] == training_request["ResourceConfig"]


def test_hyperband_request_matches_api(tmp_path: Path) -> None:
    request = request_for(
        load(tmp_path, "Hyperband", "max_jobs = 9\nmin_resource = 2", NUMERIC_RANGES)
    )

    assert_valid(request)
    assert request["HyperParameterTuningJobConfig"]["StrategyConfig"] == {
        "HyperbandStrategyConfig": {"MinResource": 2, "MaxResource": 8}
    }


def test_grid_request_matches_api(tmp_path: Path) -> None:
    request = request_for(load(tmp_path, "Grid", "", GRID_RANGES))

    assert_valid(request)
    limits = request["HyperParameterTuningJobConfig"]["ResourceLimits"]
    assert limits["MaxNumberOfTrainingJobs"] == 6


def test_invalid_tuning_job_name_rejected(tmp_path: Path) -> None:
    config = load(tmp_path, "Random", "max_jobs = 4", NUMERIC_RANGES)
    training_request = untuned_training_request(config)

    with pytest.raises(PlanError, match="invalid tuning job name"):
        tuning_job_request(config, training_request, "ltr-ranking-tuning-20261204120000")

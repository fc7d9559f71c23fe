"""The train step as a tuning job in the plan, and the training jobs made from it."""

from __future__ import annotations

from pathlib import Path

import botocore.session
import pytest
from botocore.validate import ParamValidator

from harness.check import check_steps
from harness.config import load_config
from harness.local.tuning_job import training_job_request, tuning_job_name
from harness.plan.build import build_plan

REPO = Path(__file__).resolve().parents[2]
RUN_ID = "20261204120000"
EXAMPLE = REPO / "docs" / "examples" / "tuning.ini"


def load(*overrides: str):
    return load_config(
        REPO / "config.ini",
        [REPO / "fixtures" / "fixtures.ini", EXAMPLE],
        list(overrides),
        use_local=False,
    )


@pytest.fixture(scope="module")
def plan():
    return build_plan(load(), RUN_ID)


def validate(operation: str, request: dict) -> None:
    model = botocore.session.get_session().get_service_model("sagemaker")
    report = ParamValidator().validate(request, model.operation_model(operation).input_shape)
    assert not report.has_errors(), report.generate_report()


def test_train_becomes_a_tuning_job(plan) -> None:
    train = plan.job("train")
    assert train.kind == "tuning"
    assert train.name == f"ltr-ranking-tune-{RUN_ID}"
    assert len(train.name) <= 32
    validate("CreateHyperParameterTuningJob", train.request)
    assert train.request["HyperParameterTuningJobName"] == train.name


def test_static_hyperparameters_leave_out_tuned_ones(plan) -> None:
    static = plan.job("train").request["TrainingJobDefinition"]["StaticHyperParameters"]
    assert static["epochs"] == "8"
    assert not {"learning_rate", "dropout", "hidden_units"} & set(static)
    assert static["sagemaker_job_name"] == plan.job("train").name


def test_downstream_reads_the_best_model_placeholder(plan) -> None:
    model = plan.job("train").outputs["model"]
    assert "best-training-job" in model
    inputs = plan.job("predict").request["ProcessingInputs"]
    assert model in [item["S3Input"]["S3Uri"] for item in inputs]


def test_training_job_request_from_definition(plan) -> None:
    definition = plan.job("train").request["TrainingJobDefinition"]
    hyperparameters = {
        **definition["StaticHyperParameters"],
        "learning_rate": "0.001",
        "_tuning_objective_metric": "validation:ndcg@10",
    }
    request = training_job_request(definition, "ltr-ranking-tune-abc-001-0a1b2c3d", hyperparameters)
    validate("CreateTrainingJob", request)
    assert request["HyperParameters"] == hyperparameters
    assert request["AlgorithmSpecification"] == definition["AlgorithmSpecification"]
    request["AlgorithmSpecification"]["MetricDefinitions"].clear()
    # The definition is copied, never shared with the request.
    assert definition["AlgorithmSpecification"]["MetricDefinitions"]


def test_tuning_job_name_is_stable_and_short() -> None:
    name = tuning_job_name("ltr-ranking-pipeline-with-a-long-name", "key", "code")
    assert name == tuning_job_name("ltr-ranking-pipeline-with-a-long-name", "key", "code")
    assert name != tuning_job_name("ltr-ranking-pipeline-with-a-long-name", "key", "other")
    assert len(name) <= 32
    assert name.startswith("ltr-ranking-p-tune-")


def test_contract_checks_see_train_hyperparameters() -> None:
    assert check_steps(load()) == []
    problems = check_steps(load("train.hyperparameters.learnng_rate=0.1"))
    assert any('hyperparameter "learnng_rate"' in problem.message for problem in problems)

"""The plan: job requests in the SageMaker API's shapes, wired step to step."""

from __future__ import annotations

from pathlib import Path

import botocore.session
import pytest
from botocore.validate import ParamValidator

from harness.config import load_config
from harness.local.conditions import JsonPathError, evaluate_condition, json_get
from harness.plan.build import build_plan

REPO = Path(__file__).resolve().parents[2]
RUN_ID = "20261204120000"


@pytest.fixture(scope="module")
def plan():
    config = load_config(REPO / "config.ini", [REPO / "fixtures" / "fixtures.ini"], use_local=False)
    return build_plan(config, RUN_ID)


@pytest.fixture(scope="module")
def sagemaker_model():
    return botocore.session.get_session().get_service_model("sagemaker")


def validate(model, operation: str, request: dict) -> None:
    shape = model.operation_model(operation).input_shape
    report = ParamValidator().validate(request, shape)
    assert not report.has_errors(), report.generate_report()


def test_requests_match_api_shapes(plan, sagemaker_model) -> None:
    operations = {"processing": "CreateProcessingJob", "training": "CreateTrainingJob"}
    for job in plan.jobs:
        if job.kind in operations:
            validate(sagemaker_model, operations[job.kind], job.request)
    for status in ("Approved", "Rejected"):
        register = dict(plan.job("register").request, ModelApprovalStatus=status)
        validate(sagemaker_model, "CreateModelPackage", register)


def test_steps_in_graph_order(plan) -> None:
    assert [job.step for job in plan.jobs] == [
        "prepare",
        "train",
        "predict",
        "evaluate",
        "explain",
        "condition",
        "register",
        "package",
    ]
    assert plan.job("package").branch == "if"


def test_train_channels_read_prepare_outputs(plan) -> None:
    prepare = plan.job("prepare").outputs
    channels = {
        c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"]
        for c in plan.job("train").request["InputDataConfig"]
    }
    assert channels == {"train": prepare["train"], "validation": prepare["validation"]}


def test_predict_input_sharded_by_key(plan) -> None:
    inputs = {i["InputName"]: i["S3Input"] for i in plan.job("predict").request["ProcessingInputs"]}
    assert inputs["test"]["S3DataDistributionType"] == "ShardedByS3Key"
    assert inputs["test"]["S3Uri"] == plan.job("prepare").outputs["test"]
    assert inputs["model"]["S3Uri"] == plan.job("train").outputs["model"]
    assert plan.job("predict").request["ProcessingResources"]["ClusterConfig"]["InstanceCount"] == 2


def test_explain_reads_model_test_and_schema(plan) -> None:
    job = plan.job("explain")
    inputs = {i["InputName"]: i["S3Input"] for i in job.request["ProcessingInputs"]}
    assert inputs["model"]["S3Uri"] == plan.job("train").outputs["model"]
    assert inputs["test"]["S3Uri"] == plan.job("prepare").outputs["test"]
    assert inputs["test"]["S3DataDistributionType"] == "FullyReplicated"
    assert inputs["schema"]["S3Uri"] == plan.job("prepare").outputs["schema"]
    assert job.depends_on == ("train", "prepare")
    assert set(plan.reads("explain")) == {"model", "test", "schema"}


def test_explain_request_runs_script_on_tensorflow(plan) -> None:
    request = plan.job("explain").request
    application = request["AppSpecification"]
    assert "tensorflow-training" in application["ImageUri"]
    assert application["ContainerEntrypoint"] == [
        "python3",
        "/opt/ml/processing/input/code/explain/explain.py",
    ]
    arguments = application["ContainerArguments"]
    pairs = dict(zip(arguments[::2], arguments[1::2], strict=True))
    assert pairs["--model-dir"] == "/opt/ml/processing/input/model"
    assert pairs["--input-dir"] == "/opt/ml/processing/input/test"
    assert pairs["--schema-dir"] == "/opt/ml/processing/input/schema"
    assert pairs["--output-dir"] == "/opt/ml/processing/output/explain"
    # fixtures.ini keeps the fixture run short.
    assert pairs["--max-queries"] == "2"
    assert pairs["--num-samples"] == "64"
    [output] = request["ProcessingOutputConfig"]["Outputs"]
    assert output["OutputName"] == "explain"
    assert output["S3Output"]["LocalPath"] == "/opt/ml/processing/output/explain"
    assert output["S3Output"]["S3Uri"] == plan.job("explain").outputs["explain"]
    assert request["ProcessingResources"]["ClusterConfig"]["InstanceCount"] == 1


def test_register_attaches_explain_report(plan) -> None:
    register = plan.job("register")
    report = register.request["ModelMetrics"]["Explainability"]["Report"]
    assert report == {
        "ContentType": "application/json",
        "S3Uri": plan.job("explain").outputs["explain"] + "analysis.json",
    }
    assert "explain" in register.depends_on
    assert plan.reads("register")["explainability"] == ("explain", "explain")


def test_register_without_explain_has_no_report() -> None:
    config = load_config(
        REPO / "config.ini",
        [REPO / "fixtures" / "fixtures.ini"],
        ["pipeline.steps=prepare, train, predict, evaluate, condition, register"],
        use_local=False,
    )
    plan = build_plan(config, RUN_ID)
    register = plan.job("register")
    assert "Explainability" not in register.request["ModelMetrics"]
    assert "explain" not in register.depends_on
    assert "explainability" not in plan.reads("register")


def test_explain_without_evaluate_plans() -> None:
    config = load_config(
        REPO / "config.ini",
        [REPO / "fixtures" / "fixtures.ini"],
        ["pipeline.steps=prepare, train, explain"],
        use_local=False,
    )
    plan = build_plan(config, RUN_ID)
    assert [job.step for job in plan.jobs] == ["prepare", "train", "explain"]


def test_hyperparameters_carry_framework_parameters(plan) -> None:
    hyperparameters = plan.job("train").request["HyperParameters"]
    assert hyperparameters["epochs"] == "8"
    assert hyperparameters["sagemaker_program"] == "train/train.py"
    assert hyperparameters["sagemaker_submit_directory"].endswith("/sourcedir.tar.gz")
    assert all(isinstance(value, str) for value in hyperparameters.values())


def test_job_names_fit_sagemaker_limit(plan) -> None:
    for job in plan.jobs:
        if job.kind in ("processing", "training"):
            assert len(job.name) <= 63
            assert job.name.endswith(RUN_ID)


def test_leading_steps_alone_plan() -> None:
    config = load_config(
        REPO / "config.ini",
        [REPO / "fixtures" / "fixtures.ini"],
        ["pipeline.steps=prepare, train"],
        use_local=False,
    )
    plan = build_plan(config, RUN_ID)
    assert [job.step for job in plan.jobs] == ["prepare", "train"]


@pytest.mark.parametrize(
    ("overrides", "instances", "per_host"),
    [
        (["train.instance_count=2"], 2, 1),
        (["train.processes_per_host=3"], 1, 3),
        (["train.instance_count=2", "train.processes_per_host=2"], 2, 2),
    ],
)
def test_ranks_carry_mpi_hyperparameters(
    overrides: list[str], instances: int, per_host: int, sagemaker_model
) -> None:
    config = load_config(
        REPO / "config.ini",
        [REPO / "fixtures" / "fixtures.ini"],
        [*overrides, "train.custom_mpi_options=-x NCCL_DEBUG=INFO"],
        use_local=False,
    )
    request = build_plan(config, RUN_ID).job("train").request
    validate(sagemaker_model, "CreateTrainingJob", request)
    assert request["ResourceConfig"]["InstanceCount"] == instances
    hyperparameters = request["HyperParameters"]
    assert hyperparameters["sagemaker_mpi_enabled"] == "true"
    assert hyperparameters["sagemaker_mpi_num_of_processes_per_host"] == str(per_host)
    assert hyperparameters["sagemaker_mpi_custom_mpi_options"] == "-x NCCL_DEBUG=INFO"


def test_one_rank_has_no_mpi_hyperparameters(plan) -> None:
    hyperparameters = plan.job("train").request["HyperParameters"]
    assert not [key for key in hyperparameters if key.startswith("sagemaker_mpi_")]


def test_json_get_reads_nested_values() -> None:
    report = {"ranking_metrics": {"ndcg_at_10": {"value": 0.41}}, "queries": [{"id": 3}]}
    assert json_get(report, "ranking_metrics.ndcg_at_10.value") == 0.41
    assert json_get(report, "queries[0].id") == 3


def test_json_get_names_missing_key() -> None:
    report = {"ranking_metrics": {"ndcg_at_10": {"value": 0.41}}}
    with pytest.raises(JsonPathError, match="no key 'ndcg_at_5'.*ndcg_at_10"):
        json_get(report, "ranking_metrics.ndcg_at_5.value")


@pytest.mark.parametrize(
    ("comparison", "left", "right", "expected"),
    [
        ("GreaterThanOrEqualTo", 0.3, 0.3, True),
        ("GreaterThan", 0.3, 0.3, False),
        ("LessThan", 0.2, 0.3, True),
        ("LessThanOrEqualTo", 0.4, 0.3, False),
        ("Equals", 0.3, 0.3, True),
    ],
)
def test_condition_comparisons(comparison: str, left: float, right: float, expected: bool) -> None:
    assert evaluate_condition(comparison, left, right) is expected

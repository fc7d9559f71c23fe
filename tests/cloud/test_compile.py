"""Parity of the local plan and the compiled SageMaker Pipeline definition, job by job.

The definition is compiled offline with the SageMaker Python SDK v3, under the socket guard:
compiling reaches no host at all. Each job must agree with the plan on hyperparameters, inputs,
outputs, metric definitions, instance settings and the condition. An input that reads an
upstream output appears in the definition as that step's property, which the test resolves back
to (step, output) to compare the wiring.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from harness.cloud.compile import THRESHOLD_PARAMETER, compile_pipeline
from harness.cloud.plan import cloud_plan
from harness.cloud.session import pipeline_session
from harness.plan.build import EVALUATION_PROPERTY_FILE, Plan
from tests.cloud.conftest import ALL_STEPS
from tests.support.guard import sitecustomize as guard
from tests.support.project import REPO

# The SDK pops this hyperparameter: a pipeline names each execution's jobs at run time.
RUNTIME_HYPERPARAMETERS = {"sagemaker_job_name"}


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Fake credentials, no endpoint, and the socket guard: any AWS call would be recorded."""
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    log = tmp_path / "guard.log"
    uninstall = guard.install(log)
    yield log
    uninstall()


def compiled(config) -> tuple[Plan, dict[str, Any]]:  # type: ignore[no-untyped-def]
    plan = cloud_plan(config)
    workspace = Path(config.pipeline.workspace)
    result = compile_pipeline(config, plan, pipeline_session(config, workspace))
    return plan, result.definition


def steps_by_name(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for step in definition["Steps"]:
        found[step["Name"]] = step
        if step["Type"] == "Condition":
            for branch in ("IfSteps", "ElseSteps"):
                for inner in step["Arguments"][branch]:
                    found[inner["Name"]] = {**inner, "Branch": branch}
    return found


def producer(value: Any, plan: Plan) -> Any:
    """Return (step, output) for a property reference, or the value itself."""
    if isinstance(value, dict) and "Get" in value:
        reference = value["Get"]
        assert reference.startswith("Steps.")
        step = reference.split(".")[1]
        if reference.endswith("ModelArtifacts.S3ModelArtifacts"):
            return (step, "model")
        output = reference.split("Outputs['")[1].split("']")[0]
        return (step, output)
    if isinstance(value, dict) and "Std:Join" in value:
        # A tuning step's best model: s3://bucket/prefix/<best training job>/output/model.tar.gz
        parts = value["Std:Join"]["Values"]
        [job] = [p["Get"] for p in parts if isinstance(p, dict)]
        assert job.endswith("TrainingJobSummaries[0].TrainingJobName")
        return (job.split(".")[1], "model")
    for job in plan.jobs:
        for name, uri in job.outputs.items():
            if value == uri:
                return (job.step, name)
    return value


def check_processing(job, step: dict[str, Any], plan: Plan) -> None:  # type: ignore[no-untyped-def]
    request, arguments = job.request, step["Arguments"]
    assert step["Type"] == "Processing"
    assert arguments["AppSpecification"]["ImageUri"] == request["AppSpecification"]["ImageUri"]
    assert (
        arguments["AppSpecification"]["ContainerEntrypoint"]
        == request["AppSpecification"]["ContainerEntrypoint"]
    )
    assert (
        arguments["AppSpecification"].get("ContainerArguments", [])
        == request["AppSpecification"]["ContainerArguments"]
    )
    assert arguments["ProcessingResources"] == request["ProcessingResources"]
    assert arguments["StoppingCondition"] == request["StoppingCondition"]
    assert arguments.get("Environment", {}) == request["Environment"]
    assert arguments["RoleArn"] == request["RoleArn"]
    assert len(arguments["ProcessingInputs"]) == len(request["ProcessingInputs"])
    for compiled_input, planned in zip(
        arguments["ProcessingInputs"], request["ProcessingInputs"], strict=True
    ):
        assert compiled_input["InputName"] == planned["InputName"]
        for key in ("LocalPath", "S3DataType", "S3InputMode", "S3DataDistributionType"):
            assert compiled_input["S3Input"][key] == planned["S3Input"][key], (job.step, key)
        assert producer(compiled_input["S3Input"]["S3Uri"], plan) == producer(
            planned["S3Input"]["S3Uri"], plan
        )
    assert (
        arguments["ProcessingOutputConfig"]["Outputs"]
        == request["ProcessingOutputConfig"]["Outputs"]
    )


def check_training(definition: dict[str, Any], request: dict[str, Any], plan: Plan) -> None:
    algorithm = definition["AlgorithmSpecification"]
    planned = request["AlgorithmSpecification"]
    assert algorithm["TrainingImage"] == planned["TrainingImage"]
    assert algorithm["TrainingInputMode"] == planned["TrainingInputMode"]
    assert algorithm["MetricDefinitions"] == planned["MetricDefinitions"]
    assert definition["ResourceConfig"] == request["ResourceConfig"]
    assert definition["StoppingCondition"] == request["StoppingCondition"]
    assert (
        definition["OutputDataConfig"]["S3OutputPath"]
        == request["OutputDataConfig"]["S3OutputPath"]
    )
    assert definition["RoleArn"] == request["RoleArn"]
    assert [c["ChannelName"] for c in definition["InputDataConfig"]] == [
        c["ChannelName"] for c in request["InputDataConfig"]
    ]
    for channel, planned_channel in zip(
        definition["InputDataConfig"], request["InputDataConfig"], strict=True
    ):
        source = channel["DataSource"]["S3DataSource"]
        planned_source = planned_channel["DataSource"]["S3DataSource"]
        assert producer(source["S3Uri"], plan) == producer(planned_source["S3Uri"], plan)
        assert source["S3DataDistributionType"] == planned_source["S3DataDistributionType"]


def check_register(step: dict[str, Any], request: dict[str, Any], status: str, plan: Plan) -> None:
    arguments = step["Arguments"]
    assert step["Type"] == "RegisterModel"
    assert arguments["ModelApprovalStatus"] == status
    assert arguments["ModelPackageGroupName"] == request["ModelPackageGroupName"]
    assert arguments["ModelMetrics"]["ModelQuality"] == request["ModelMetrics"]["ModelQuality"]
    assert arguments["ModelMetrics"]["Explainability"] == request["ModelMetrics"]["Explainability"]
    [container] = arguments["InferenceSpecification"]["Containers"]
    [planned] = request["InferenceSpecification"]["Containers"]
    assert container["Image"] == planned["Image"]
    assert producer(container["ModelDataUrl"], plan) == ("train", "model")
    for key in (
        "SupportedContentTypes",
        "SupportedResponseMIMETypes",
        "SupportedRealtimeInferenceInstanceTypes",
        "SupportedTransformInstanceTypes",
    ):
        assert arguments["InferenceSpecification"][key] == request["InferenceSpecification"][key]
    # The explainability report is attached only once explain has written it.
    assert step["DependsOn"] == ["explain"]


def check_condition(
    step: dict[str, Any], config, plan: Plan, parameters: list[dict[str, Any]]
) -> None:  # type: ignore[no-untyped-def]
    [condition] = step["Arguments"]["Conditions"]
    request = plan.job("condition").request
    assert condition["Type"] == request["Type"] == config.condition.comparison
    json_get = condition["LeftValue"]["Std:JsonGet"]
    assert json_get["Path"] == request["LeftValue"]["Std:JsonGet"]["Path"]
    assert json_get["PropertyFile"] == {
        "Get": f"Steps.evaluate.PropertyFiles.{EVALUATION_PROPERTY_FILE}"
    }
    assert condition["RightValue"] == {"Get": f"Parameters.{THRESHOLD_PARAMETER}"}
    assert parameters == [
        {"Name": THRESHOLD_PARAMETER, "Type": "Float", "DefaultValue": config.condition.threshold}
    ]
    assert [s["Name"] for s in step["Arguments"]["IfSteps"]] == ["register-approved", "package"]
    assert [s["Name"] for s in step["Arguments"]["ElseSteps"]] == ["register-rejected"]


def test_compiled_jobs_match_local_plan(load, offline: Path) -> None:  # type: ignore[no-untyped-def]
    config = load(ALL_STEPS)
    plan, definition = compiled(config)
    steps = steps_by_name(definition)
    for job in plan.jobs:
        if job.kind == "processing":
            check_processing(job, steps[job.step], plan)
            assert steps[job.step]["CacheConfig"] == {"Enabled": True, "ExpireAfter": "P30D"}
        elif job.kind == "training":
            arguments = steps["train"]["Arguments"]
            check_training(arguments, job.request, plan)
            expected = {
                k: v
                for k, v in job.request["HyperParameters"].items()
                if k not in RUNTIME_HYPERPARAMETERS
            }
            assert arguments["HyperParameters"] == expected
        elif job.kind == "condition":
            check_condition(steps["condition"], config, plan, definition["Parameters"])
        elif job.kind == "register":
            check_register(steps["register-approved"], job.request, "Approved", plan)
            check_register(steps["register-rejected"], job.request, "Rejected", plan)
    evaluate = steps["evaluate"]
    assert evaluate["PropertyFiles"] == [
        {
            "PropertyFileName": EVALUATION_PROPERTY_FILE,
            "OutputName": "evaluation",
            "FilePath": "evaluation.json",
        }
    ]
    assert not offline.exists(), offline.read_text()


@pytest.mark.parametrize("strategy", ["Bayesian", "Hyperband"])
def test_tuning_step_matches_local_tuning_job(load, offline: Path, strategy: str) -> None:  # type: ignore[no-untyped-def]
    config = load(f"tuning.strategy={strategy}", files=(REPO / "docs" / "examples" / "tuning.ini",))
    plan, definition = compiled(config)
    step = steps_by_name(definition)["train"]
    assert step["Type"] == "Tuning"
    request = plan.job("train").request
    arguments = step["Arguments"]
    planned_config = request["HyperParameterTuningJobConfig"]
    compiled_config = arguments["HyperParameterTuningJobConfig"]
    for key in (
        "Strategy",
        "HyperParameterTuningJobObjective",
        "ResourceLimits",
        "ParameterRanges",
        "TrainingJobEarlyStoppingType",
        "RandomSeed",
        "StrategyConfig",
    ):
        assert compiled_config.get(key) == planned_config.get(key), key
    training = arguments["TrainingJobDefinition"]
    check_training(training, request["TrainingJobDefinition"], plan)
    # The tuning job keeps every static value, the job name of the toolkit included.
    assert (
        training["StaticHyperParameters"]
        == request["TrainingJobDefinition"]["StaticHyperParameters"]
    )
    # Downstream steps read the best training job's model.
    predict = steps_by_name(definition)["predict"]
    [model] = [i for i in predict["Arguments"]["ProcessingInputs"] if i["InputName"] == "model"]
    assert producer(model["S3Input"]["S3Uri"], plan) == ("train", "model")
    assert not offline.exists(), offline.read_text()


def test_distributed_train_carries_mpi_settings(load, offline: Path) -> None:  # type: ignore[no-untyped-def]
    plan, definition = compiled(load("train.instance_count=2", "train.processes_per_host=2"))
    arguments = steps_by_name(definition)["train"]["Arguments"]
    assert arguments["ResourceConfig"]["InstanceCount"] == 2
    hyperparameters = arguments["HyperParameters"]
    assert hyperparameters["sagemaker_mpi_enabled"] == "true"
    assert hyperparameters["sagemaker_mpi_num_of_processes_per_host"] == "2"
    planned = plan.job("train").request["HyperParameters"]
    assert hyperparameters == {k: v for k, v in planned.items() if k not in RUNTIME_HYPERPARAMETERS}
    assert not offline.exists(), offline.read_text()


def test_profiled_train_keeps_tensorboard_output(load, offline: Path) -> None:  # type: ignore[no-untyped-def]
    plan, definition = compiled(load("train.profile_steps=5,25"))
    arguments = steps_by_name(definition)["train"]["Arguments"]
    planned = plan.job("train").request
    assert arguments["TensorBoardOutputConfig"] == planned["TensorBoardOutputConfig"]
    assert arguments["HyperParameters"]["profile_steps"] == "5,25"
    assert not offline.exists(), offline.read_text()


def test_output_prefixes_follow_request_content(load) -> None:  # type: ignore[no-untyped-def]
    first = cloud_plan(load())
    again = cloud_plan(load())
    assert [job.outputs for job in first.jobs] == [job.outputs for job in again.jobs]
    changed = cloud_plan(load("train.hyperparameters.learning_rate=0.002"))
    same = {job.step for job in first.jobs if job.outputs == changed.job(job.step).outputs}
    # A train setting moves train's outputs and those of every step that reads them.
    assert same == {"prepare", "condition", "register"}
    assert (
        os.path.commonprefix(
            [
                first.job("predict").outputs["predictions"],
                "s3://ranking-team-ml/ltr-ranking/pipeline/predict/",
            ]
        )
        == "s3://ranking-team-ml/ltr-ranking/pipeline/predict/"
    )

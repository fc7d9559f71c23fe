"""Preflight of the cloud target: each problem SageMaker would report, found before upload."""

from __future__ import annotations

import pytest

from harness.cloud.plan import cloud_plan
from harness.cloud.preflight import PreflightError, check, preflight


def problems_of(config, parameters=None) -> list[str]:  # type: ignore[no-untyped-def]
    with pytest.raises(PreflightError) as raised:
        check(config, cloud_plan, parameters or {})
    assert str(raised.value).startswith("Preflight found")
    return [str(problem) for problem in raised.value.problems]


def test_preflight_passes_valid_cloud_config(load) -> None:  # type: ignore[no-untyped-def]
    plan = check(load(), cloud_plan, {"Threshold": "0.4"})
    assert [job.step for job in plan.jobs][:2] == ["prepare", "train"]


def test_preflight_rejects_example_role(load) -> None:  # type: ignore[no-untyped-def]
    [problem] = problems_of(
        load("session.role_arn=arn:aws:iam::111122223333:role/HarnessSageMakerExecution")
    )
    assert problem.startswith("--set #2 [session] role_arn = 'arn:aws:iam::111122223333:")
    assert (
        "example account" in problem
        and "Fix: set the ARN of your SageMaker execution role" in problem
    )


def test_preflight_rejects_local_bucket(load) -> None:  # type: ignore[no-untyped-def]
    found = problems_of(
        load(
            "session.bucket=harness-local-artifacts",
            "pipeline.output_prefix=s3://harness-local-artifacts/ltr-ranking",
        )
    )
    assert found == [
        "--set #2 [session] bucket = 'harness-local-artifacts': this is the local target's "
        "bucket, not "
        "one of your account. Fix: set the name of an S3 bucket that your account owns in the "
        "same region."
    ]


def test_preflight_rejects_output_prefix_elsewhere(load) -> None:  # type: ignore[no-untyped-def]
    [problem] = problems_of(load("pipeline.output_prefix=s3://other-team-bucket/ltr"))
    assert problem.startswith("--set #2 [pipeline] output_prefix = 's3://other-team-bucket/ltr'")
    assert "Fix: use s3://ranking-team-ml/ltr-ranking" in problem


def test_preflight_rejects_framework_without_image(load) -> None:  # type: ignore[no-untyped-def]
    found = problems_of(load("train.framework_version=2.99"))
    assert any(
        p.startswith(
            "[train] framework_version / py_version: no SageMaker tensorflow training image has version '2.99'"
        )
        for p in found
    ), found


def test_preflight_rejects_python_without_image(load) -> None:  # type: ignore[no-untyped-def]
    found = problems_of(load("train.py_version=py38"))
    assert any("has no py38 build. Fix: use py_version = py310" in p for p in found), found


def test_preflight_rejects_transform_instance_type(load) -> None:  # type: ignore[no-untyped-def]
    # ml.t3.medium runs processing jobs, but the model package lists predict's instance type
    # as a transform instance type, which CreateModelPackage checks against another enum.
    [problem] = problems_of(load("predict.instance_type=ml.t3.medium"))
    assert problem.startswith(
        "step register (CreateModelPackage) "
        "InferenceSpecification.SupportedTransformInstanceTypes[0] = 'ml.t3.medium': "
        "not a valid TransformInstanceType"
    )


def test_preflight_rejects_empty_parameter(load) -> None:  # type: ignore[no-untyped-def]
    # aws/sagemaker-python-sdk#4016: local mode accepted it, StartPipelineExecution does not.
    [problem] = problems_of(load(), {"Threshold": ""})
    assert problem == (
        "--parameter Threshold: SageMaker rejects an empty pipeline parameter value. "
        "Fix: give Threshold a value, or leave it out to use its default."
    )


def test_preflight_rejects_explain_step(load) -> None:  # type: ignore[no-untyped-def]
    from tests.cloud.conftest import ALL_STEPS

    [problem] = problems_of(load(ALL_STEPS))
    assert problem.startswith(
        "--set #2 [pipeline] steps = 'prepare, train, predict, evaluate, explain"
    )
    assert "shap, which SageMaker's TensorFlow images do not include" in problem


def test_preflight_suggests_close_region(load) -> None:  # type: ignore[no-untyped-def]
    # One problem: the images of a region that does not exist are not listed as well.
    [problem] = problems_of(load("session.region=eu-westt-1"))
    assert problem.endswith('SageMaker is not offered in this region. Fix: use "eu-west-1".')


def test_preflight_names_problem_origin(load, cloud_file) -> None:  # type: ignore[no-untyped-def]
    cloud_file.write_text(
        cloud_file.read_text().replace(
            "bucket = ranking-team-ml", "bucket = harness-local-artifacts"
        )
    )
    found = problems_of(load())
    assert found[0].startswith(f"{cloud_file}:6 [session] bucket = 'harness-local-artifacts'")


def test_preflight_rejects_unknown_parameter(load) -> None:  # type: ignore[no-untyped-def]
    [problem] = problems_of(load(), {"Treshold": "0.4"})
    assert (
        problem
        == "--parameter Treshold = '0.4': the pipeline has no such parameter. Fix: use \"Threshold\"."
    )


def test_preflight_rejects_non_number_threshold(load) -> None:  # type: ignore[no-untyped-def]
    [problem] = problems_of(load(), {"Threshold": "abc"})
    assert problem == (
        "--parameter Threshold = 'abc': not a number, and the parameter is a Float. "
        "Fix: give a number, e.g. --parameter Threshold=0.35."
    )


def test_preflight_checks_service_side_limits(load) -> None:  # type: ignore[no-untyped-def]
    # botocore's validator checks required members, types and minimums; the maximum lengths,
    # patterns and enums of the model are only enforced by SageMaker itself.
    config = load()
    plan = cloud_plan(config)
    predict = plan.job("predict").request
    predict["ProcessingJobName"] = "ltr_ranking_predict"
    predict["ProcessingResources"]["ClusterConfig"]["InstanceCount"] = 101
    predict["AppSpecification"]["ContainerArguments"] += ["x" * 300]
    found = [str(problem) for problem in preflight(config, plan)]
    assert found == [
        "step predict (CreateProcessingJob) ProcessingJobName = 'ltr_ranking_predict': does not "
        "match the pattern [a-zA-Z0-9](-*[a-zA-Z0-9]){0,62} of ProcessingJobName. Fix: change "
        "the value to match it.",
        "step predict (CreateProcessingJob) ProcessingResources.ClusterConfig.InstanceCount = "
        "'101': above the maximum 100. Fix: use at most 100.",
        "step predict (CreateProcessingJob) AppSpecification.ContainerArguments[6] = "
        f"'{'x' * 57}...': 300 characters, more than the limit of 256. Fix: shorten it to at "
        "most 256.",
    ]


def test_preflight_reports_every_problem(load) -> None:  # type: ignore[no-untyped-def]
    found = problems_of(
        load(
            "session.role_arn=arn:aws:iam::111122223333:role/R",
            "train.py_version=py38",
            "predict.instance_type=ml.t3.medium",
        ),
        {"Threshold": ""},
    )
    assert len(found) == 4
    assert [p.split(" [")[0].split(" ")[0] for p in found] == [
        "--set",
        "[train]",
        "step",
        "--parameter",
    ]

"""Value checks, instance types and the SageMaker limits taken from botocore's model."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from botocore.loaders import create_loader  # type: ignore[import-untyped]

from harness.config import checks
from harness.config.checks import Boolean, CheckContext, bucket_name_issue
from harness.config.instance_types import check_instance_type, known_instance_types

if TYPE_CHECKING:
    from tests.config.conftest import Project

CONTEXT = CheckContext(Path("."))


def test_limits_match_botocore_model() -> None:
    shapes = create_loader().load_service_model("sagemaker", "service-2")["shapes"]

    assert shapes["HyperParameters"]["max"] == checks.MAX_HYPERPARAMETERS
    assert shapes["HyperParameterKey"]["max"] == checks.MAX_HYPERPARAMETER_KEY_LENGTH
    assert shapes["HyperParameterValue"]["max"] == checks.MAX_HYPERPARAMETER_VALUE_LENGTH
    assert shapes["MetricDefinitionList"]["max"] == checks.MAX_METRIC_DEFINITIONS
    assert shapes["MetricName"]["max"] == checks.MAX_METRIC_NAME_LENGTH
    assert shapes["MetricRegex"]["max"] == checks.MAX_METRIC_REGEX_LENGTH
    assert shapes["TrainingEnvironmentMap"]["max"] == checks.MAX_ENVIRONMENT_VARIABLES
    assert shapes["ProcessingEnvironmentMap"]["max"] == checks.MAX_ENVIRONMENT_VARIABLES
    assert shapes["TrainingEnvironmentValue"]["max"] == checks.MAX_TRAINING_ENVIRONMENT_LENGTH
    assert shapes["ProcessingEnvironmentValue"]["max"] == checks.MAX_PROCESSING_ENVIRONMENT_LENGTH
    assert shapes["ContainerArguments"]["max"] == checks.MAX_CONTAINER_ARGUMENTS
    assert shapes["ContainerArgument"]["max"] == checks.MAX_CONTAINER_ARGUMENT_LENGTH
    assert shapes["ProcessingMaxRuntimeInSeconds"]["max"] == checks.MAX_PROCESSING_RUNTIME_SECONDS
    assert shapes["ProcessingInstanceCount"]["max"] == checks.MAX_PROCESSING_INSTANCE_COUNT
    assert shapes["ProcessingVolumeSizeInGB"]["max"] == checks.MAX_PROCESSING_VOLUME_SIZE_GB
    assert shapes["ProcessingJobName"]["max"] == checks.MAX_JOB_NAME_LENGTH
    assert shapes["TrainingJobName"]["max"] == checks.MAX_JOB_NAME_LENGTH


def test_pipeline_name_limit_fits_longest_job_name() -> None:
    name = "a" * checks.MAX_PIPELINE_NAME_LENGTH
    job_name = f"{name}-{checks.LONGEST_JOB_STEP_NAME}-{'2' * checks.RUN_ID_LENGTH}"

    assert len(job_name) == checks.MAX_JOB_NAME_LENGTH
    assert checks.check_pipeline_name(name, CONTEXT) is None
    assert checks.check_pipeline_name(name + "a", CONTEXT) is not None


def test_instance_type_lists_loaded() -> None:
    for kind in ("training", "processing", "hosting"):
        known = known_instance_types(kind)
        assert known is not None
        assert "ml.m5.xlarge" in known


def test_instance_type_for_wrong_job_kind() -> None:
    training = known_instance_types("training") or frozenset()
    processing = known_instance_types("processing") or frozenset()
    only_training = sorted(training - processing)
    if not only_training:
        pytest.skip("this botocore offers every training instance type for processing too")

    found = check_instance_type(only_training[0], "processing")

    assert found is not None
    assert found[0] == "SageMaker offers this type for training jobs but not for processing jobs"


def test_hosting_instance_type_checked(project: Project) -> None:
    problems = project.problems(overrides=["register.inference_instance_type=ml.m5.huge"])

    assert len(problems) == 1
    assert problems[0].key == "inference_instance_type"
    assert "for endpoints" in problems[0].message


@pytest.mark.parametrize(
    ("bucket", "reason"),
    [
        ("ab", "3 to 63 characters"),
        ("a" * 64, "3 to 63 characters"),
        ("-artifacts", "start and end with a letter or digit"),
        ("artifacts.", "start and end with a letter or digit"),
        ("my..artifacts", "no two adjacent dots"),
        ("192.168.5.4", "not IP addresses"),
        ("xn--artifacts", 'do not start with "xn--"'),
        ("artifacts-s3alias", 'do not end with "-s3alias"'),
    ],
)
def test_bucket_rules(bucket: str, reason: str) -> None:
    issue = bucket_name_issue(bucket)

    assert issue is not None
    assert reason in issue


@pytest.mark.parametrize("bucket", ["abc", "harness-local-artifacts", "my.artifacts.2024"])
def test_valid_bucket_names(bucket: str) -> None:
    assert bucket_name_issue(bucket) is None


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:iam::111122223333:role/Harness",
        "arn:aws-cn:iam::111122223333:role/service-role/Harness+Exec@2",
        "arn:aws-us-gov:iam::111122223333:role/a/b/Harness",
    ],
)
def test_valid_role_arns(arn: str) -> None:
    assert checks.check_role_arn(arn, CONTEXT) is None


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:iam::111122223333:user/Harness",
        "arn:aws:iam::11112222333:role/Harness",
        "arn:aws:iam::111122223333:role/",
        "arn:aws:s3:::bucket",
    ],
)
def test_invalid_role_arns(arn: str) -> None:
    assert checks.check_role_arn(arn, CONTEXT) is not None


@pytest.mark.parametrize("path", ["a", "a.b[0].c", "ranking_metrics.ndcg_at_10.value", "a[1][2]"])
def test_valid_json_paths(path: str) -> None:
    assert checks.check_json_path(path, CONTEXT) is None


@pytest.mark.parametrize("path", ["", ".a", "a.", "a[x]", "a b", "$.a"])
def test_invalid_json_paths(path: str) -> None:
    assert checks.check_json_path(path, CONTEXT) is not None


@pytest.mark.parametrize(
    ("text", "expected"), [("true", True), ("Yes", True), ("0", False), ("off", False)]
)
def test_boolean_converts(text: str, expected: bool) -> None:
    boolean = Boolean()

    assert boolean.check(text, CONTEXT) is None
    assert boolean.convert(text) is expected


def test_boolean_rejects_other_words() -> None:
    issue = Boolean().check("maybe", CONTEXT)

    assert issue is not None
    assert issue.message == "not a boolean"
    assert issue.fix == "use true or false"

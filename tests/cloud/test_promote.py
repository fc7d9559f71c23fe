"""`harness promote` end to end against a moto server on 127.0.0.1, under the socket guard.

moto plays S3 and the SageMaker control plane: promote uploads the step code and the fixtures
dataset, creates the pipeline and starts an execution there. A pipeline execution in moto does
not run its steps, so what is checked is what SageMaker receives.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from moto.moto_server.threaded_moto_server import ThreadedMotoServer

from harness.tracking import tracking_settings
from harness.tracking.recorder import open_client
from tests.support.project import REPO

GUARD = REPO / "tests" / "support" / "guard"
REGION = "eu-west-1"
BUCKET = "ranking-team-ml"


@pytest.fixture(scope="module")
def moto_endpoint():  # type: ignore[no-untyped-def]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def fake_credentials() -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }


def client(service: str, endpoint: str):  # type: ignore[no-untyped-def]
    return boto3.client(
        service,
        region_name=REGION,
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def harness(
    args: list[str], tmp_path: Path, endpoint: str | None, credentials: bool = True
) -> subprocess.CompletedProcess[str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("AWS_") and key not in ("PYTHONPATH", "HARNESS_GUARD_LOG")
    }
    env.update(fake_credentials())
    if not credentials:
        del env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]
    env["PYTHONPATH"] = str(GUARD)
    env["HARNESS_GUARD_LOG"] = str(tmp_path / "guard.log")
    if endpoint is not None:
        env["AWS_ENDPOINT_URL"] = endpoint
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def promote_arguments(cloud_file: Path, workspace: Path, *extra: str) -> list[str]:
    return [
        "--no-local",
        "-c",
        str(REPO / "fixtures" / "fixtures.ini"),
        "-c",
        str(cloud_file),
        "--set",
        f"pipeline.workspace={workspace}",
        *extra,
    ]


def new_bucket(endpoint: str, bucket: str) -> list[str]:
    """Create `bucket` in moto; return the --set arguments that make it the run's bucket."""
    client("s3", endpoint).create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    return [
        "--set",
        f"session.bucket={bucket}",
        "--set",
        f"pipeline.output_prefix=s3://{bucket}/ltr",
    ]


def assert_no_other_host(tmp_path: Path) -> None:
    log = tmp_path / "guard.log"
    assert Path(str(log) + ".active").exists(), "the guard was not loaded"
    assert not log.exists(), log.read_text()


def test_promote_creates_pipeline_and_execution(
    moto_endpoint: str, cloud_file: Path, tmp_path: Path, load
) -> None:
    s3 = client("s3", moto_endpoint)
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    workspace = tmp_path / "ws"

    result = harness(
        ["promote", *promote_arguments(cloud_file, workspace, "--parameter", "Threshold=0.25")],
        tmp_path,
        moto_endpoint,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "preflight passed in" in result.stdout
    assert "uploaded the step code to s3://ranking-team-ml/ltr-ranking/code/" in result.stdout
    assert "pipeline: arn:aws:sagemaker:eu-west-1:" in result.stdout
    [execution_arn] = [
        line.split(": ", 1)[1]
        for line in result.stdout.splitlines()
        if line.startswith("execution: ")
    ]

    sagemaker = client("sagemaker", moto_endpoint)
    described = sagemaker.describe_pipeline(PipelineName="ltr-ranking")
    written = json.loads((workspace / "cloud" / "ltr-ranking.json").read_text())
    assert json.loads(described["PipelineDefinition"]) == written
    assert described["RoleArn"] == "arn:aws:iam::123456789012:role/RankingPipelineExecution"
    executions = sagemaker.list_pipeline_executions(PipelineName="ltr-ranking")[
        "PipelineExecutionSummaries"
    ]
    assert [e["PipelineExecutionArn"] for e in executions] == [execution_arn]
    parameters = sagemaker.list_pipeline_parameters_for_execution(
        PipelineExecutionArn=execution_arn
    )["PipelineParameters"]
    assert parameters == [{"Name": "Threshold", "Value": "0.25"}]

    # The code archive that every training job's sagemaker_submit_directory names, and the
    # dataset that prepare reads, are in the bucket under their content digests.
    train = next(step for step in written["Steps"] if step["Name"] == "train")
    archive = train["Arguments"]["HyperParameters"]["sagemaker_submit_directory"]
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert archive.removeprefix(f"s3://{BUCKET}/") in keys
    prepare = next(step for step in written["Steps"] if step["Name"] == "prepare")
    [raw] = [i for i in prepare["Arguments"]["ProcessingInputs"] if i["InputName"] == "raw"]
    dataset = raw["S3Input"]["S3Uri"].removeprefix(f"s3://{BUCKET}/")
    assert sorted(k for k in keys if k.startswith(dataset)) == sorted(
        dataset + p.relative_to(REPO / "fixtures" / "letor").as_posix()
        for p in (REPO / "fixtures" / "letor").rglob("*")
        if p.is_file()
    )
    assert_no_other_host(tmp_path)

    # The execution is recorded in MLflow (the workspace store here) by the code that records
    # local runs, with the configuration as parameters.
    execution_id = execution_arn.rsplit("/", 1)[-1]
    assert f"recorded in MLflow as run {execution_id}" in result.stdout
    config = load()
    mlflow_client, experiment_id = open_client(tracking_settings(config, workspace))
    (run,) = mlflow_client.search_runs([experiment_id], "tags.`harness.kind` = 'run'")
    assert run.info.status == "RUNNING"
    assert run.data.tags["harness.run_id"] == execution_id
    assert run.data.tags["harness.target"] == "cloud"
    assert run.data.tags["harness.status"] == "Executing"
    assert run.data.tags["harness.pipeline_execution_arn"] == execution_arn
    assert run.data.tags["harness.pipeline_arn"] == described["PipelineArn"]
    assert run.data.tags["harness.pipeline_parameter.Threshold"] == "0.25"
    assert run.data.tags["harness.code.train"]
    epochs = config.section_values("train.hyperparameters")["epochs"]
    assert run.data.params["train.hyperparameters.epochs"] == epochs

    # Unchanged code and data: nothing is uploaded again, and the same definition is upserted.
    again = harness(["promote", *promote_arguments(cloud_file, workspace)], tmp_path, moto_endpoint)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "step code unchanged" in again.stdout
    assert "dataset unchanged" in again.stdout
    assert json.loads((workspace / "cloud" / "ltr-ranking.json").read_text()) == written
    assert (
        len(
            sagemaker.list_pipeline_executions(PipelineName="ltr-ranking")[
                "PipelineExecutionSummaries"
            ]
        )
        == 2
    )


def test_promote_dry_run_stays_offline(cloud_file: Path, tmp_path: Path) -> None:
    output = tmp_path / "definition.json"
    # No endpoint: any AWS call would go to AWS, which the guard would record and block.
    result = harness(
        [
            "promote",
            "--dry-run",
            "--output",
            str(output),
            *promote_arguments(cloud_file, tmp_path / "ws"),
        ],
        tmp_path,
        None,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "dry run: nothing uploaded, no pipeline created" in result.stdout
    for line in (
        "prepare",
        "Training  ml.m5.xlarge x 1  tensorflow-training:2.18-cpu-py310",
        "if the condition holds:",
        "register-rejected",
    ):
        assert line in result.stdout
    definition = json.loads(output.read_text())
    assert [step["Name"] for step in definition["Steps"]] == [
        "prepare",
        "train",
        "predict",
        "evaluate",
        "condition",
    ]
    assert_no_other_host(tmp_path)


def test_promote_preflight_failure_uploads_nothing(
    moto_endpoint: str, cloud_file: Path, tmp_path: Path
) -> None:
    bucket = "ranking-team-preflight"
    result = harness(
        [
            "promote",
            *promote_arguments(
                cloud_file,
                tmp_path / "ws",
                *new_bucket(moto_endpoint, bucket),
                "--set",
                "train.py_version=py38",
                "--parameter",
                "Threshold=",
            ),
        ],
        tmp_path,
        moto_endpoint,
    )
    assert result.returncode == 2
    assert "Preflight found 2 problems; nothing was uploaded:" in result.stdout
    assert "has no py38 build" in result.stdout
    assert "--parameter Threshold" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    assert client("s3", moto_endpoint).list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_run_cloud_target_promotes(moto_endpoint: str, cloud_file: Path, tmp_path: Path) -> None:
    result = harness(
        [
            "run",
            *promote_arguments(
                cloud_file,
                tmp_path / "ws",
                *new_bucket(moto_endpoint, "ranking-team-run"),
                "--set",
                "pipeline.name=ltr-from-run",
            ),
        ],
        tmp_path,
        moto_endpoint,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[session] target = cloud: promoting the pipeline to SageMaker" in result.stdout
    sagemaker = client("sagemaker", moto_endpoint)
    assert (
        len(
            sagemaker.list_pipeline_executions(PipelineName="ltr-from-run")[
                "PipelineExecutionSummaries"
            ]
        )
        == 1
    )


def test_promote_rejects_bucket_in_other_region(
    moto_endpoint: str, cloud_file: Path, tmp_path: Path
) -> None:
    bucket = "ranking-team-virginia"
    boto3.client(
        "s3",
        region_name="us-east-1",
        endpoint_url=moto_endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_bucket(Bucket=bucket)
    arguments = [
        "--set",
        f"session.bucket={bucket}",
        "--set",
        f"pipeline.output_prefix=s3://{bucket}/ltr",
    ]
    result = harness(
        ["promote", *promote_arguments(cloud_file, tmp_path / "ws", *arguments)],
        tmp_path,
        moto_endpoint,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "is in us-east-1, but [session] region is eu-west-1" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    assert client("s3", moto_endpoint).list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_promote_without_credentials_says_how_to_sign_in(
    moto_endpoint: str, cloud_file: Path, tmp_path: Path
) -> None:
    result = harness(
        ["promote", *promote_arguments(cloud_file, tmp_path / "ws")],
        tmp_path,
        moto_endpoint,
        credentials=False,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "no AWS credentials" in result.stdout
    assert "aws sso login" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_run_cloud_target_rejects_local_options(cloud_file: Path, tmp_path: Path) -> None:
    result = harness(
        ["run", "--no-cache", *promote_arguments(cloud_file, tmp_path / "ws")], tmp_path, None
    )
    assert result.returncode == 2
    assert "--no-cache: the local target's options" in result.stdout


@pytest.mark.parametrize(
    ("status", "mlflow_status"),
    [("Succeeded", "FINISHED"), ("Failed", "FAILED"), ("Stopped", "KILLED")],
)
def test_followed_execution_ends_mlflow_run(load, tmp_path: Path, status, mlflow_status) -> None:
    from harness.cloud.plan import cloud_plan
    from harness.tracking.recorder import finish_promotion, record_promotion

    config = load()
    workspace = tmp_path / "ws"
    execution_arn = f"arn:aws:sagemaker:{REGION}:123456789012:pipeline/ltr-ranking/execution/x1"
    pipeline_arn = f"arn:aws:sagemaker:{REGION}:123456789012:pipeline/ltr-ranking"
    run_id = record_promotion(
        config, cloud_plan(config), workspace, execution_arn, pipeline_arn, {}
    )
    assert run_id is not None

    finish_promotion(config, workspace, run_id, status)

    mlflow_client, _ = open_client(tracking_settings(config, workspace))
    run = mlflow_client.get_run(run_id)
    assert run.info.status == mlflow_status
    assert run.data.tags["harness.status"] == status
    assert run.data.tags["harness.run_id"] == "x1"

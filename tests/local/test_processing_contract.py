"""The processing job contract: config files, input paths, sharding, outputs, failures."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from harness.local.embedded import EmbeddedAWS
from harness.local.jobs import remap_path, run_processing_job
from harness.local.warm import WarmPool

from .conftest import BUCKET, collect_lines

# Runs inside the job with its paths passed as arguments, as a processing script gets them.
PROBE = """
import json, os, sys, time
from pathlib import Path
input_dir, output_dir = Path(sys.argv[1]), Path(sys.argv[2])
base = Path(os.environ.get("SAGEMAKER_BASE_DIR", "/opt/ml"))
resource = json.loads((base / "config" / "resourceconfig.json").read_text())
job = json.loads((base / "config" / "processingjobconfig.json").read_text())
if os.environ.get("PROBE_FAIL") in ("yes", resource["current_host"]):
    (base / "output" / "message").write_text("StepError: bad input on line 7")
    sys.exit(2)
if os.environ.get("PROBE_FAIL"):
    # The other instance of a job whose first instance fails: it must be stopped.
    print("waiting", flush=True)
    time.sleep(120)
record = {
    "host": resource["current_host"],
    "hosts": resource["hosts"],
    "job": job["ProcessingJobName"],
    "files": sorted(os.listdir(input_dir)),
    "output_exists": output_dir.is_dir(),
    "cwd": os.getcwd(),
    "mode": os.environ.get("PROBE_MODE"),
}
(output_dir / f"record-{resource['current_host']}.json").write_text(json.dumps(record))
print("probe done on", resource["current_host"], flush=True)
"""


def processing_request(name: str, instances: int, environment: dict[str, str]) -> dict:
    return {
        "ProcessingJobName": name,
        "ProcessingInputs": [
            {
                "InputName": "shards",
                "S3Input": {
                    "S3Uri": f"s3://{BUCKET}/data/shards/",
                    "LocalPath": "/opt/ml/processing/input/shards",
                    "S3DataType": "S3Prefix",
                    "S3InputMode": "File",
                    "S3DataDistributionType": "ShardedByS3Key",
                },
            },
            {
                "InputName": "code",
                "S3Input": {
                    "S3Uri": f"s3://{BUCKET}/code/",
                    "LocalPath": "/opt/ml/processing/input/code",
                    "S3DataType": "S3Prefix",
                    "S3InputMode": "File",
                    "S3DataDistributionType": "FullyReplicated",
                },
            },
        ],
        "ProcessingOutputConfig": {
            "Outputs": [
                {
                    "OutputName": "records",
                    "S3Output": {
                        "S3Uri": f"s3://{BUCKET}/out/{name}/records",
                        "LocalPath": "/opt/ml/processing/output/records",
                        "S3UploadMode": "EndOfJob",
                    },
                }
            ]
        },
        "ProcessingResources": {
            "ClusterConfig": {
                "InstanceCount": instances,
                "InstanceType": "ml.m5.xlarge",
                "VolumeSizeInGB": 30,
            }
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": 600},
        "AppSpecification": {
            "ImageUri": "image",
            "ContainerEntrypoint": ["python3", "/opt/ml/processing/input/code/probe.py"],
            "ContainerArguments": [
                "/opt/ml/processing/input/shards",
                "/opt/ml/processing/output/records",
            ],
        },
        "Environment": environment,
        "RoleArn": "arn:aws:iam::111122223333:role/Test",
    }


def prepare(aws: EmbeddedAWS) -> None:
    aws.put_bytes(PROBE.encode(), f"s3://{BUCKET}/code/probe.py")
    for index in range(4):
        aws.put_bytes(b"x", f"s3://{BUCKET}/data/shards/part-{index}.parquet")


def records(aws: EmbeddedAWS, name: str) -> dict[str, dict]:
    found = {}
    for key, _ in aws.list_objects(f"s3://{BUCKET}/out/{name}/records/"):
        record = json.loads(aws.get_bytes(f"s3://{BUCKET}/{key}"))
        found[record["host"]] = record
    return found


@pytest.fixture(scope="module")
def warm_pool() -> Iterator[WarmPool]:
    with WarmPool() as pool:
        yield pool


@pytest.fixture(params=["cold", "warm"])
def launcher(request: pytest.FixtureRequest) -> WarmPool | None:
    """No launcher (a new process per instance), or the warm pool of `harness watch`."""
    return request.getfixturevalue("warm_pool") if request.param == "warm" else None


def test_sharded_input_splits_files(aws: EmbeddedAWS, launcher: WarmPool | None) -> None:
    prepare(aws)
    lines, sink = collect_lines()
    request = processing_request("sharded", 2, {"PROBE_MODE": "two"})
    result = run_processing_job(aws, request, aws.environment(), sink, launcher=launcher)
    assert result.status == "Completed", result.log_tail()

    found = records(aws, "sharded")
    assert set(found) == {"algo-1", "algo-2"}
    assert found["algo-1"]["files"] == ["part-0.parquet", "part-2.parquet"]
    assert found["algo-2"]["files"] == ["part-1.parquet", "part-3.parquet"]
    for record in found.values():
        assert record["hosts"] == ["algo-1", "algo-2"]
        assert record["job"] == "sharded"
        assert record["output_exists"] is True
        assert record["mode"] == "two"
    assert {host for host, _ in lines} == {"algo-1", "algo-2"}
    described = aws.sagemaker.describe_processing_job(ProcessingJobName="sharded")
    assert described["ProcessingJobStatus"] == "Completed"


def test_message_file_becomes_reason(aws: EmbeddedAWS) -> None:
    prepare(aws)
    lines, sink = collect_lines()
    result = run_processing_job(
        aws, processing_request("failing", 1, {"PROBE_FAIL": "yes"}), aws.environment(), sink
    )
    assert result.status == "Failed"
    assert result.failure_reason == "StepError: bad input on line 7"
    described = aws.sagemaker.describe_processing_job(ProcessingJobName="failing")
    assert described["ProcessingJobStatus"] == "Failed"
    assert described["ExitMessage"] == "StepError: bad input on line 7"
    assert records(aws, "failing") == {}


def test_failed_instance_stops_the_others(aws: EmbeddedAWS, launcher: WarmPool | None) -> None:
    prepare(aws)
    lines, sink = collect_lines()
    request = processing_request("one-fails", 2, {"PROBE_FAIL": "algo-1"})
    started = time.monotonic()
    result = run_processing_job(aws, request, aws.environment(), sink, launcher=launcher)

    assert result.status == "Failed"
    assert "StepError: bad input on line 7" in result.failure_reason
    # algo-2 sleeps for 120 s unless the failure of algo-1 ends it (a bound, not a benchmark).
    assert time.monotonic() - started < 60, "the second instance was not stopped"
    assert all(host == "algo-2" and line == "waiting" for host, line in lines), lines
    assert records(aws, "one-fails") == {}


def test_remap_path_rewrites_container_paths(tmp_path) -> None:
    root = tmp_path / "opt" / "ml"
    assert remap_path("/opt/ml/processing/input", root) == f"{root}/processing/input"
    assert remap_path("--out=/opt/ml/model", root) == f"--out={root}/model"
    assert remap_path("/opt/mlx", root) == "/opt/mlx"
    assert remap_path("0.2", root) == "0.2"

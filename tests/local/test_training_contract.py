"""The training job contract, checked with the sagemaker-training toolkit's own parser."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

from harness.local.embedded import EmbeddedAWS
from harness.local.jobs import run_training_job

from .conftest import BUCKET, collect_lines, upload_source

# Runs inside the job: records what the container contract gave it.
PROBE = """
import json, os, sys
from pathlib import Path
model_dir = Path(os.environ["SM_MODEL_DIR"])
record = {
    "argv": sys.argv[1:],
    "env": {k: v for k, v in os.environ.items() if k.startswith("SM_")},
    "train_files": sorted(os.listdir(os.environ["SM_CHANNEL_TRAIN"])),
}
(model_dir / "probe.json").write_text(json.dumps(record))
print("epoch=1 train:loss=0.9 validation:ndcg@10=0.31", flush=True)
print("epoch=2 train:loss=0.5 validation:ndcg@10=0.42", flush=True)
if os.environ.get("SM_HP_FAIL") == "yes":
    Path(os.environ["SM_OUTPUT_DIR"], "failure").write_text("ValueError: the probe was told to fail")
    sys.exit(3)
"""


def training_request(name: str, hyperparameters: dict[str, str]) -> dict:
    return {
        "TrainingJobName": name,
        "HyperParameters": {
            **hyperparameters,
            "sagemaker_program": "train/probe.py",
            "sagemaker_submit_directory": f"s3://{BUCKET}/code/sourcedir.tar.gz",
            "sagemaker_region": "us-east-1",
        },
        "AlgorithmSpecification": {
            "TrainingImage": "763104351884.dkr.ecr.us-east-1.amazonaws.com/tensorflow-training:2.18-cpu-py310",
            "TrainingInputMode": "File",
            "MetricDefinitions": [
                {"Name": "validation:ndcg@10", "Regex": r"validation:ndcg@10=([0-9.]+)"},
            ],
        },
        "RoleArn": "arn:aws:iam::111122223333:role/Test",
        "InputDataConfig": [
            {
                "ChannelName": "train",
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": f"s3://{BUCKET}/data/train/",
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
                "ContentType": "application/x-parquet",
                "InputMode": "File",
            }
        ],
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/output"},
        "ResourceConfig": {
            "InstanceType": "ml.m5.xlarge",
            "InstanceCount": 1,
            "VolumeSizeInGB": 30,
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": 600},
    }


def prepare(aws: EmbeddedAWS) -> None:
    upload_source(aws, {"train/probe.py": PROBE}, f"s3://{BUCKET}/code/sourcedir.tar.gz")
    aws.put_bytes(b"a", f"s3://{BUCKET}/data/train/part-0.parquet")
    aws.put_bytes(b"b", f"s3://{BUCKET}/data/train/part-1.parquet")


def test_toolkit_parses_job_folder(aws: EmbeddedAWS) -> None:
    prepare(aws)
    lines, sink = collect_lines()
    result = run_training_job(
        aws,
        training_request("contract-job", {"epochs": "3", "hidden_units": "128,64"}),
        aws.environment(),
        sink,
    )
    assert result.status == "Completed", result.log_tail()

    # The toolkit's own parser, pointed at the emulated /opt/ml, reads the same job.
    opt_ml = aws.workspace / "jobs" / "contract-job" / "algo-1" / "opt" / "ml"
    script = (
        "import json; from sagemaker_training import environment as e; env = e.Environment(); "
        "print(json.dumps({'hosts': env.hosts, 'current_host': env.current_host, "
        "'channels': env.channel_input_dirs, 'hps': env.hyperparameters, "
        "'model_dir': env.model_dir, 'entry': env.user_entry_point}))"
    )
    parsed = json.loads(
        subprocess.run(
            [sys.executable, "-c", script],
            env={"SAGEMAKER_BASE_DIR": str(opt_ml), "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    assert parsed["hosts"] == ["algo-1"]
    assert parsed["current_host"] == "algo-1"
    assert parsed["channels"] == {"train": str(opt_ml / "input" / "data" / "train")}
    assert parsed["hps"] == {"epochs": 3, "hidden_units": "128,64"}
    assert parsed["model_dir"] == str(opt_ml / "model")
    assert parsed["entry"] == "train/probe.py"


def test_entry_point_sees_contract(aws: EmbeddedAWS) -> None:
    prepare(aws)
    lines, sink = collect_lines()
    result = run_training_job(
        aws,
        training_request("probe-job", {"epochs": "3", "loss": "softmax"}),
        aws.environment(),
        sink,
    )
    assert result.status == "Completed", result.log_tail()

    with tarfile.open(aws.workspace / "jobs" / "probe-job" / "model.tar.gz") as tar:
        probe = json.loads(tar.extractfile("probe.json").read())
    assert probe["argv"] == ["--epochs", "3", "--loss", "softmax"]
    assert probe["train_files"] == ["part-0.parquet", "part-1.parquet"]
    assert probe["env"]["SM_HP_EPOCHS"] == "3"
    assert json.loads(probe["env"]["SM_HOSTS"]) == ["algo-1"]
    assert probe["env"]["SM_CURRENT_HOST"] == "algo-1"
    assert json.loads(probe["env"]["SM_CHANNELS"]) == ["train"]
    assert "sagemaker_program" not in json.loads(probe["env"]["SM_HPS"])

    # model/ is tarred to model.tar.gz in S3 and the job is recorded as the API returns it.
    described = aws.sagemaker.describe_training_job(TrainingJobName="probe-job")
    assert described["TrainingJobStatus"] == "Completed"
    model_uri = described["ModelArtifacts"]["S3ModelArtifacts"]
    assert model_uri == f"s3://{BUCKET}/output/probe-job/output/model.tar.gz"
    assert aws.list_objects(model_uri)
    final = {m["MetricName"]: m["Value"] for m in described["FinalMetricDataList"]}
    assert final == {"validation:ndcg@10": 0.42}
    assert result.metrics["validation:ndcg@10"] == [0.31, 0.42]


def test_failure_file_becomes_reason(aws: EmbeddedAWS) -> None:
    prepare(aws)
    lines, sink = collect_lines()
    result = run_training_job(
        aws, training_request("failing-job", {"fail": "yes"}), aws.environment(), sink
    )
    assert result.status == "Failed"
    assert "the probe was told to fail" in result.failure_reason
    described = aws.sagemaker.describe_training_job(TrainingJobName="failing-job")
    assert described["TrainingJobStatus"] == "Failed"
    assert "the probe was told to fail" in described["FailureReason"]
    assert not aws.list_objects(f"s3://{BUCKET}/output/failing-job/")


def test_job_records_survive_restart(aws: EmbeddedAWS, tmp_path: Path) -> None:
    prepare(aws)
    lines, sink = collect_lines()
    run_training_job(aws, training_request("kept-job", {}), aws.environment(), sink)
    before = aws.sagemaker.describe_training_job(TrainingJobName="kept-job")
    aws.stop()

    with EmbeddedAWS(aws.workspace, "us-east-1") as restarted:
        described = restarted.sagemaker.describe_training_job(TrainingJobName="kept-job")
        assert described["TrainingJobStatus"] == "Completed"
        assert described["CreationTime"] == before["CreationTime"]
        assert described["TrainingEndTime"] == before["TrainingEndTime"]
        uri = described["ModelArtifacts"]["S3ModelArtifacts"]
        assert restarted.list_objects(uri)

"""Distributed training jobs: Horovod ranks started by horovodrun over Gloo on 127.0.0.1.

The probe jobs check the contract each rank sees and how a job ends when a rank fails or the
job is stopped. The train jobs run the real train step on the fixtures on 2 ranks and on one
process, and compare the models.
"""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from harness.local import horovod_jobs
from harness.local.embedded import EmbeddedAWS
from harness.local.jobs import run_training_job

from .conftest import BUCKET, collect_lines
from .test_training_contract import training_request

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    horovod_jobs.missing_horovod() is not None,
    reason=f"Horovod is not usable here ({horovod_jobs.missing_horovod()}); CI installs it",
)

# Runs on every rank: records the contract the rank sees, then prints metrics on rank 0 only.
CONTRACT_PROBE = """
import json, os
from pathlib import Path
rank = os.environ["HOROVOD_RANK"]
config = Path(os.environ["SAGEMAKER_BASE_DIR"], "input", "config")
record = {
    "rank": int(rank),
    "size": int(os.environ["HOROVOD_SIZE"]),
    "env": {k: v for k, v in os.environ.items() if k.startswith("SM_")},
    "resourceconfig": json.loads((config / "resourceconfig.json").read_text()),
    "hyperparameters": json.loads((config / "hyperparameters.json").read_text()),
}
Path(os.environ["SM_OUTPUT_DATA_DIR"], f"rank-{rank}.json").write_text(json.dumps(record))
if rank == "0":
    print("epoch=1 train:loss=0.9 validation:ndcg@10=0.31", flush=True)
"""

# Rank 1 fails after Horovod starts, writing its reason where SageMaker reads it. Rank 0
# waits for it in an allreduce, which would hang forever if nothing ended the job.
FAILING_PROBE = """
import os, sys, time
from pathlib import Path
import horovod.tensorflow as hvd
import tensorflow as tf
hvd.init()
if hvd.rank() == 1:
    Path(os.environ["SM_OUTPUT_DIR"], "failure").write_text("ValueError: rank 1 failed on purpose")
    sys.exit(1)
hvd.allreduce(tf.constant(1.0))
time.sleep(600)
"""

SLEEPING_PROBE = """
import os, time
print(f"rank {os.environ['HOROVOD_RANK']} sleeping", flush=True)
time.sleep(600)
"""


def upload_code(aws: EmbeddedAWS, files: dict[str, str]) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            encoded = data.encode()
            info = tarfile.TarInfo(name)
            info.size = len(encoded)
            tar.addfile(info, io.BytesIO(encoded))
    aws.put_bytes(buffer.getvalue(), f"s3://{BUCKET}/code/sourcedir.tar.gz")


def distributed_request(
    name: str,
    program: str,
    instance_count: int,
    processes_per_host: int,
    hyperparameters: dict[str, str] | None = None,
    channels: tuple[str, ...] = ("train",),
) -> dict:
    request = training_request(name, hyperparameters or {})
    request["HyperParameters"]["sagemaker_program"] = program
    if instance_count * processes_per_host > 1:
        request["HyperParameters"].update(
            {
                "sagemaker_mpi_enabled": "true",
                "sagemaker_mpi_num_of_processes_per_host": str(processes_per_host),
                "sagemaker_mpi_custom_mpi_options": "",
            }
        )
    request["ResourceConfig"]["InstanceCount"] = instance_count
    template = request["InputDataConfig"][0]
    request["InputDataConfig"] = [
        {
            **template,
            "ChannelName": channel,
            "DataSource": {
                "S3DataSource": {
                    **template["DataSource"]["S3DataSource"],
                    "S3Uri": f"s3://{BUCKET}/data/{channel}/",
                }
            },
        }
        for channel in channels
    ]
    request["AlgorithmSpecification"]["MetricDefinitions"] = [
        {"Name": "train:loss", "Regex": r"train:loss=([0-9.eE+-]+)"},
        {"Name": "validation:ndcg@10", "Regex": r"validation:ndcg@10=([0-9.eE+-]+)"},
    ]
    return request


def host_root(aws: EmbeddedAWS, job: str, host: str) -> Path:
    return aws.workspace / "jobs" / job / host / "opt" / "ml"


def test_each_rank_sees_its_host(aws: EmbeddedAWS) -> None:
    upload_code(aws, {"probe.py": CONTRACT_PROBE})
    aws.put_bytes(b"a", f"s3://{BUCKET}/data/train/part-0.parquet")
    lines, sink = collect_lines()
    result = run_training_job(
        aws, distributed_request("contract-4", "probe.py", 2, 2), aws.environment(), sink
    )
    assert result.status == "Completed", result.log_tail(40)

    # 2 hosts with 2 processes each: ranks 0 and 1 on algo-1, ranks 2 and 3 on algo-2.
    expected_hosts = {0: "algo-1", 1: "algo-1", 2: "algo-2", 3: "algo-2"}
    for rank, host in expected_hosts.items():
        path = host_root(aws, "contract-4", host) / "output" / "data" / f"rank-{rank}.json"
        record = json.loads(path.read_text())
        assert record["size"] == 4
        assert record["env"]["SM_CURRENT_HOST"] == host
        assert json.loads(record["env"]["SM_HOSTS"]) == ["algo-1", "algo-2"]
        assert record["resourceconfig"]["current_host"] == host
        assert record["resourceconfig"]["hosts"] == ["algo-1", "algo-2"]
        framework = json.loads(record["env"]["SM_FRAMEWORK_PARAMS"])
        assert framework["sagemaker_mpi_enabled"] is True
        assert framework["sagemaker_mpi_num_of_processes_per_host"] == 2
        assert record["hyperparameters"]["sagemaker_mpi_enabled"] == "true"
        assert record["hyperparameters"]["sagemaker_mpi_num_of_processes_per_host"] == "2"
        assert "sagemaker_mpi_custom_mpi_options" in record["hyperparameters"]

    # Output lines are attributed to the host of the rank that printed them.
    assert ("algo-1", "epoch=1 train:loss=0.9 validation:ndcg@10=0.31") in lines
    assert result.metrics["validation:ndcg@10"] == [0.31]


def test_failed_rank_fails_job(aws: EmbeddedAWS) -> None:
    upload_code(aws, {"probe.py": FAILING_PROBE})
    aws.put_bytes(b"a", f"s3://{BUCKET}/data/train/part-0.parquet")
    request = distributed_request("failing-2", "probe.py", 2, 1)
    # The bound: a job still running after 300 s would end as Stopped (MaxRuntimeExceeded).
    request["StoppingCondition"]["MaxRuntimeInSeconds"] = 300
    lines, sink = collect_lines()
    result = run_training_job(aws, request, aws.environment(), sink)

    assert result.status == "Failed", (result.status, result.failure_reason)
    assert result.failure_reason.startswith("rank 1 on algo-2:")
    assert "ValueError: rank 1 failed on purpose" in result.failure_reason
    described = aws.sagemaker.describe_training_job(TrainingJobName="failing-2")
    assert described["TrainingJobStatus"] == "Failed"
    assert "rank 1 failed on purpose" in described["FailureReason"]


def test_stop_ends_every_rank(aws: EmbeddedAWS) -> None:
    upload_code(aws, {"probe.py": SLEEPING_PROBE})
    aws.put_bytes(b"a", f"s3://{BUCKET}/data/train/part-0.parquet")
    stop = threading.Event()
    sleeping: set[str] = set()

    def sink(host: str, line: str) -> None:
        if "sleeping" in line:
            sleeping.add(line)
        if len(sleeping) == 2:
            stop.set()

    result = run_training_job(
        aws,
        distributed_request("stopped-2", "probe.py", 2, 1),
        aws.environment(),
        sink,
        stop=stop,
    )
    assert result.status == "Stopped"
    assert sleeping == {"rank 0 sleeping", "rank 1 sleeping"}
    job_dir = aws.workspace / "jobs" / "stopped-2"
    assert not list_processes_in(job_dir)


def list_processes_in(folder: Path) -> list[int]:
    """Return the ids of running processes whose working directory is under `folder`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if cwd.startswith(str(folder)):
            found.append(int(entry.name))
    return found


# Training on the fixtures.


def write_fixture_splits(aws: EmbeddedAWS) -> int:
    """Upload train and validation Parquet splits of the fixture queries; return train queries.

    Features are scaled to [0, 1] per column. Train keeps an even number of
    queries, each with at least one relevant document, so that the 2 ranks get equal shares
    and their softmax losses average over the same number of queries.
    """
    rows = []
    for path in sorted((REPO / "fixtures" / "letor").glob("*.txt")):
        for line in path.read_text().splitlines():
            body = line.partition("#")[0]
            tokens = body.split()
            if not tokens:
                continue
            features = np.zeros(12)
            for token in tokens[2:]:
                index, value = token.split(":")
                features[int(index) - 1] = float(value)
            # The doc column is the row's position, as prepare numbers documents.
            rows.append((int(tokens[1][4:]), len(rows), int(tokens[0]), features))
    matrix = np.array([row[3] for row in rows])
    span = np.where(
        matrix.max(axis=0) > matrix.min(axis=0), matrix.max(axis=0) - matrix.min(axis=0), 1
    )
    scaled = (matrix - matrix.min(axis=0)) / span

    qids = sorted({row[0] for row in rows})
    relevant = sorted({row[0] for row in rows if row[2] > 0})
    validation = set(qids[::4])
    train = [qid for qid in relevant if qid not in validation]
    train = set(train[: len(train) - len(train) % 2])
    for split, chosen in (("train", train), ("validation", validation)):
        indexes = [i for i, row in enumerate(rows) if row[0] in chosen]
        table = pa.table(
            {
                "qid": [rows[i][0] for i in indexes],
                "doc": [rows[i][1] for i in indexes],
                "label": [rows[i][2] for i in indexes],
                "features": [scaled[i].tolist() for i in indexes],
            }
        )
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        aws.put_bytes(buffer.getvalue(), f"s3://{BUCKET}/data/{split}/part-0.parquet")
    return len(train)


def upload_train_step(aws: EmbeddedAWS) -> None:
    files = {"train/train.py": (REPO / "steps" / "train" / "train.py").read_text()}
    for path in sorted((REPO / "steps" / "common").glob("*.py")):
        files[f"common/{path.name}"] = path.read_text()
    upload_code(aws, files)


# Full-batch training: each rank's one batch is all of its share, so the averaged gradient
# of the 2 ranks is the gradient of the whole train split, which one process computes.
FULL_BATCH = {
    "epochs": "4",
    "batch_size": "1000",
    "learning_rate": "0.01",
    "hidden_units": "16,8",
    "dropout": "0",
    "loss": "softmax",
    "seed": "7",
}


def load_weights(aws: EmbeddedAWS, job: str) -> list[np.ndarray]:
    import keras

    model_path = host_root(aws, job, "algo-1") / "model" / "model.keras"
    return keras.saving.load_model(model_path, compile=False).get_weights()


def test_two_ranks_match_one_process(aws: EmbeddedAWS) -> None:
    train_queries = write_fixture_splits(aws)
    assert train_queries % 2 == 0
    assert train_queries >= 4
    upload_train_step(aws)
    channels = ("train", "validation")

    lines, sink = collect_lines()
    distributed = run_training_job(
        aws,
        distributed_request("train-2", "train/train.py", 2, 1, FULL_BATCH, channels),
        aws.environment(),
        sink,
    )
    assert distributed.status == "Completed", distributed.log_tail(40)
    single = run_training_job(
        aws,
        distributed_request("train-1", "train/train.py", 1, 1, FULL_BATCH, channels),
        aws.environment(),
        lambda host, line: None,
    )
    assert single.status == "Completed", single.log_tail(40)

    # Metrics are printed once, by rank 0.
    metric_lines = [line for host, line in lines if line.startswith("epoch=")]
    assert len(metric_lines) == 4
    assert {host for host, line in lines if line.startswith("epoch=")} == {"algo-1"}
    assert len(distributed.metrics["validation:ndcg@10"]) == 4

    # Both ranks end with the same weights: each logs a digest, and the step checks that
    # the digests agree.
    digests = {}
    for host, line in lines:
        match = re.search(r"rank (\d): weights digest ([0-9a-f]+)", line)
        if match:
            digests[(host, int(match.group(1)))] = match.group(2)
    assert set(digests) == {("algo-1", 0), ("algo-2", 1)}
    assert len(set(digests.values())) == 1

    # Only rank 0 (algo-1) writes the model.
    assert (host_root(aws, "train-2", "algo-1") / "model" / "model.keras").exists()
    assert not (host_root(aws, "train-2", "algo-2") / "model" / "model.keras").exists()
    summary = json.loads(
        (host_root(aws, "train-2", "algo-1") / "model" / "training_summary.json").read_text()
    )
    assert summary["workers"] == 2

    # The same 4 full-batch steps on one process reach the same model, up to rounding. The
    # averaged gradient adds float32 numbers in another order. Adam's first steps move each
    # weight by about the learning rate (0.01) whatever the gradient's size, so a rounding
    # difference in a near-zero gradient can show. Measured: at most 1.7e-5 on weights up to
    # 0.7. The tolerance 1e-3 is well above that and well below one step's change.
    for distributed_weights, single_weights in zip(
        load_weights(aws, "train-2"), load_weights(aws, "train-1"), strict=True
    ):
        np.testing.assert_allclose(distributed_weights, single_weights, rtol=0, atol=1e-3)
    np.testing.assert_allclose(
        distributed.metrics["train:loss"], single.metrics["train:loss"], rtol=0, atol=1e-3
    )


def test_two_ranks_several_steps_per_call(aws: EmbeddedAWS) -> None:
    """Horovod's allreduce in the graph loop of several steps per call trains as one step per
    call does: the two jobs print the same metrics."""
    write_fixture_splits(aws)
    upload_train_step(aws)
    channels = ("train", "validation")
    hyperparameters = {**FULL_BATCH, "epochs": "2", "batch_size": "2", "dropout": "0.1"}
    metric_lines = {}
    for steps in ("1", "3"):
        lines, sink = collect_lines()
        result = run_training_job(
            aws,
            distributed_request(
                f"train-2-steps-{steps}",
                "train/train.py",
                2,
                1,
                {**hyperparameters, "steps_per_execution": steps},
                channels,
            ),
            aws.environment(),
            sink,
        )
        assert result.status == "Completed", result.log_tail(40)
        metric_lines[steps] = [line for _, line in lines if line.startswith("epoch=")]
    assert len(metric_lines["1"]) == 2
    assert metric_lines["3"] == metric_lines["1"]

"""End-to-end runs of the whole pipeline on the fixtures: real moto, Spark and TensorFlow."""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

import pytest

from harness.cli import main
from harness.config import load_config
from harness.local.embedded import EmbeddedAWS
from tests.support.guard import sitecustomize as guard
from tests.support.project import fixture_run_arguments

REPO = Path(__file__).resolve().parents[2]
GUARD = REPO / "tests" / "support" / "guard"

pytestmark = pytest.mark.slow


def run_harness(workspace: Path, *extra: str) -> int:
    return main([*fixture_run_arguments(workspace), *extra])


def latest_run(workspace: Path) -> dict:
    records = sorted((workspace / "runs").glob("*.json"))
    return json.loads(records[-1].read_text())


@pytest.fixture(scope="module")
def approved_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, Path, Path]:
    """One guarded run of the full pipeline; the tests below read what it left."""
    workspace = tmp_path_factory.mktemp("approved") / "ws"
    guard_log = workspace.parent / "guard.log"
    saved = {key: os.environ.get(key) for key in ("PYTHONPATH", "HARNESS_GUARD_LOG")}
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(GUARD), saved["PYTHONPATH"]]))
    os.environ["HARNESS_GUARD_LOG"] = str(guard_log)
    # The harness process itself (moto server, boto3 clients) is guarded as well.
    uninstall = guard.install(guard_log)
    try:
        code = run_harness(workspace)
    finally:
        uninstall()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return code, workspace, guard_log


def test_run_completes_every_step(approved_run) -> None:
    code, workspace, _ = approved_run
    assert code == 0
    record = latest_run(workspace)
    statuses = {step["step"]: step["status"] for step in record["steps"]}
    assert statuses == {
        "prepare": "Completed",
        "train": "Completed",
        "predict": "Completed",
        "evaluate": "Completed",
        "condition": "Completed",
        "register": "Completed",
        "package": "Completed",
    }


def test_model_beats_random_baseline(approved_run) -> None:
    _, workspace, _ = approved_run
    evaluation = latest_run(workspace)["evaluation"]
    model = evaluation["ranking_metrics"]["ndcg_at_10"]["value"]
    random = evaluation["baselines"]["random"]["ndcg_at_10"]["value"]
    assert model > random


def test_registered_approved_with_metrics(approved_run) -> None:
    _, workspace, _ = approved_run
    record = latest_run(workspace)
    assert record["approval_status"] == "Approved"
    with EmbeddedAWS(workspace, "us-east-1") as aws:
        package = aws.sagemaker.describe_model_package(ModelPackageName=record["model_package_arn"])
        assert package["ModelApprovalStatus"] == "Approved"
        statistics = package["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"]
        report = json.loads(aws.get_bytes(statistics))
        assert report["ranking_metrics"]["ndcg_at_10"]["value"] == pytest.approx(
            record["condition"]["value"]
        )
        model_url = package["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]
        assert aws.list_objects(model_url)


def test_jobs_recorded_in_embedded_api(approved_run) -> None:
    _, workspace, _ = approved_run
    record = latest_run(workspace)
    names = {step["step"]: step["name"] for step in record["steps"]}
    with EmbeddedAWS(workspace, "us-east-1") as aws:
        training = aws.sagemaker.describe_training_job(TrainingJobName=names["train"])
        assert training["TrainingJobStatus"] == "Completed"
        metric_names = {m["MetricName"] for m in training["FinalMetricDataList"]}
        assert metric_names == {"train:loss", "validation:ndcg@10"}
        for step in ("prepare", "predict", "evaluate", "package"):
            job = aws.sagemaker.describe_processing_job(ProcessingJobName=names[step])
            assert job["ProcessingJobStatus"] == "Completed"


def test_package_has_serving_layout(approved_run) -> None:
    _, workspace, _ = approved_run
    record = latest_run(workspace)
    package = next(step for step in record["steps"] if step["step"] == "package")
    bucket_key = package["outputs"]["package"].removeprefix("s3://")
    archive = workspace / "s3" / bucket_key / "model.tar.gz"
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert "1/saved_model.pb" in names
    assert "code/inference.py" in names


def test_models_command_lists_package(approved_run, capsys) -> None:
    _, workspace, _ = approved_run
    code = main(
        [
            "models",
            "--json",
            "--no-local",
            "--config",
            str(REPO / "config.ini"),
            "-c",
            str(REPO / "fixtures" / "fixtures.ini"),
            "--set",
            f"pipeline.workspace={workspace}",
        ]
    )
    assert code == 0
    packages = json.loads(capsys.readouterr().out)
    assert [p["ModelApprovalStatus"] for p in packages] == ["Approved"]


def test_no_connection_leaves_loopback(approved_run) -> None:
    _, workspace, guard_log = approved_run
    active = Path(str(guard_log) + ".active")
    # The guard was loaded in the jobs' processes, and none of them reached another host.
    assert active.exists()
    assert len(active.read_text().splitlines()) >= 5
    blocked = guard_log.read_text() if guard_log.exists() else ""
    assert blocked == ""


def test_high_threshold_registers_rejected(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    assert run_harness(workspace, "--set", "condition.threshold=0.99") == 0
    record = latest_run(workspace)
    assert record["approval_status"] == "Rejected"
    statuses = {step["step"]: step["status"] for step in record["steps"]}
    assert statuses["register"] == "Completed"
    assert statuses["package"] == "Skipped"


def test_failing_step_keeps_finished_outputs(tmp_path: Path, capsys) -> None:
    workspace = tmp_path / "ws"
    code = run_harness(workspace, "--set", "train.hyperparameters.loss=bogus")
    assert code == 1
    output = capsys.readouterr().out
    assert "bogus" in output
    record = latest_run(workspace)
    statuses = {step["step"]: step["status"] for step in record["steps"]}
    assert statuses["prepare"] == "Completed"
    assert statuses["train"] == "Failed"
    assert {statuses[s] for s in ("predict", "evaluate", "condition", "register", "package")} == {
        "Skipped"
    }
    prepare = next(step for step in record["steps"] if step["step"] == "prepare")
    train_split = prepare["outputs"]["train"].removeprefix("s3://")
    assert any((workspace / "s3" / train_split).glob("*.parquet"))


def test_fixture_config_is_valid() -> None:
    config = load_config(REPO / "config.ini", [REPO / "fixtures" / "fixtures.ini"], use_local=False)
    assert config.pipeline.dataset == "fixtures/letor"

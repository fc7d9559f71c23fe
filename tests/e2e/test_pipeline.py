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


def first_run(workspace: Path) -> dict:
    """Return the workspace's first run record: approved_run's, whatever ran after it there."""
    records = sorted((workspace / "runs").glob("*.json"))
    return json.loads(records[0].read_text())


def models_command(workspace: Path, *extra: str) -> int:
    return main(
        [
            "models",
            "--no-local",
            "--config",
            str(REPO / "config.ini"),
            "-c",
            str(REPO / "fixtures" / "fixtures.ini"),
            "--set",
            f"pipeline.workspace={workspace}",
            *extra,
        ]
    )


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


@pytest.fixture(scope="module")
def rejected_run(approved_run) -> dict:
    """A second run in approved_run's workspace with another train seed and a threshold that
    rejects the model: version 2 of the group. Only prepare comes from the cache."""
    _, workspace, _ = approved_run
    code = run_harness(
        workspace,
        "--set",
        "train.hyperparameters.seed=7",
        "--set",
        "condition.threshold=0.99",
    )
    assert code == 0
    return latest_run(workspace)


@pytest.fixture(scope="module")
def unexplained_version(rejected_run, approved_run) -> dict:
    """Version 3: approved_run's model registered again by a run without explain.

    Every job comes from the cache, and the register request without an explainability
    report registers a new version.
    """
    _, workspace, _ = approved_run
    code = run_harness(
        workspace, "--set", "pipeline.steps=prepare, train, predict, evaluate, condition, register"
    )
    assert code == 0
    return latest_run(workspace)


def test_run_completes_every_step(approved_run) -> None:
    code, workspace, _ = approved_run
    assert code == 0
    record = first_run(workspace)
    statuses = {step["step"]: step["status"] for step in record["steps"]}
    assert statuses == {
        "prepare": "Completed",
        "train": "Completed",
        "predict": "Completed",
        "evaluate": "Completed",
        "explain": "Completed",
        "condition": "Completed",
        "register": "Completed",
        "package": "Completed",
    }


def test_model_beats_random_baseline(approved_run) -> None:
    _, workspace, _ = approved_run
    evaluation = first_run(workspace)["evaluation"]
    model = evaluation["ranking_metrics"]["ndcg_at_10"]["value"]
    random = evaluation["baselines"]["random"]["ndcg_at_10"]["value"]
    assert model > random


def test_registered_approved_with_metrics(approved_run) -> None:
    _, workspace, _ = approved_run
    record = first_run(workspace)
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
        report = package["ModelMetrics"]["Explainability"]["Report"]
        assert report["ContentType"] == "application/json"
        analysis = json.loads(aws.get_bytes(report["S3Uri"]))
        assert "global_shap_values" in analysis["explanations"]["kernel_shap"]["score"]


def test_jobs_recorded_in_embedded_api(approved_run) -> None:
    _, workspace, _ = approved_run
    record = first_run(workspace)
    names = {step["step"]: step["name"] for step in record["steps"]}
    with EmbeddedAWS(workspace, "us-east-1") as aws:
        training = aws.sagemaker.describe_training_job(TrainingJobName=names["train"])
        assert training["TrainingJobStatus"] == "Completed"
        metric_names = {m["MetricName"] for m in training["FinalMetricDataList"]}
        assert metric_names == {"train:loss", "validation:ndcg@10", "validation:best_ndcg@10"}
        for step in ("prepare", "predict", "evaluate", "explain", "package"):
            job = aws.sagemaker.describe_processing_job(ProcessingJobName=names[step])
            assert job["ProcessingJobStatus"] == "Completed"


def test_package_has_serving_layout(approved_run) -> None:
    _, workspace, _ = approved_run
    record = first_run(workspace)
    package = next(step for step in record["steps"] if step["step"] == "package")
    bucket_key = package["outputs"]["package"].removeprefix("s3://")
    archive = workspace / "s3" / bucket_key / "model.tar.gz"
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert "1/saved_model.pb" in names
    assert "code/inference.py" in names


def test_explain_writes_clarify_outputs(approved_run) -> None:
    _, workspace, _ = approved_run
    record = first_run(workspace)
    explain = next(step for step in record["steps"] if step["step"] == "explain")
    output = workspace / "s3" / explain["outputs"]["explain"].removeprefix("s3://")
    analysis = json.loads((output / "analysis.json").read_text())
    values = analysis["explanations"]["kernel_shap"]["score"]["global_shap_values"]
    assert list(values) == [f"f{index}" for index in range(1, 13)]
    # fixtures.ini explains 2 test queries.
    assert analysis["explainer"]["queries"] == 2
    assert (output / "explanations_shap" / "out.csv").is_file()
    report = (output / "report.html").read_text()
    assert report.startswith("<!DOCTYPE html>")
    assert "<svg" in report


def test_models_command_lists_package(approved_run, rejected_run, capsys) -> None:
    _, workspace, _ = approved_run
    assert models_command(workspace, "--json") == 0
    packages = json.loads(capsys.readouterr().out)
    assert [p["ModelApprovalStatus"] for p in packages] == ["Approved", "Rejected"]


def test_rejected_version_keeps_explain_report(approved_run, rejected_run) -> None:
    _, workspace, _ = approved_run
    assert rejected_run["approval_status"] == "Rejected"
    statuses = {step["step"]: step["status"] for step in rejected_run["steps"]}
    assert statuses["explain"] == "Completed"
    assert statuses["register"] == "Completed"
    assert statuses["package"] == "Skipped"
    explain = next(step for step in rejected_run["steps"] if step["step"] == "explain")
    assert explain["cached"] is False
    with EmbeddedAWS(workspace, "us-east-1") as aws:
        package = aws.sagemaker.describe_model_package(
            ModelPackageName=rejected_run["model_package_arn"]
        )
    report = package["ModelMetrics"]["Explainability"]["Report"]
    assert report["S3Uri"] == explain["outputs"]["explain"] + "/analysis.json"


def test_compare_two_versions_json(approved_run, rejected_run, capsys) -> None:
    _, workspace, _ = approved_run
    assert models_command(workspace, "--compare", "1", "ltr-ranking/2", "--json") == 0
    comparison = json.loads(capsys.readouterr().out)

    analyses = []
    for record in (first_run(workspace), rejected_run):
        explain = next(step for step in record["steps"] if step["step"] == "explain")
        output = workspace / "s3" / explain["outputs"]["explain"].removeprefix("s3://")
        analysis = json.loads((output / "analysis.json").read_text())
        analyses.append(analysis["explanations"]["kernel_shap"]["score"]["global_shap_values"])
    rows = {row["feature"]: row for row in comparison["features"]}
    assert comparison["a"]["model_package"] == "ltr-ranking/1"
    assert comparison["b"]["model_package"] == "ltr-ranking/2"
    assert set(rows) == set(analyses[0])
    for name, row in rows.items():
        assert row["a"] == pytest.approx(analyses[0][name])
        assert row["b"] == pytest.approx(analyses[1][name])
        assert row["change"] == pytest.approx(analyses[1][name] - analyses[0][name])
        assert row["rank_change"] == row["rank_a"] - row["rank_b"]
    # The two train seeds give two different models.
    assert any(abs(row["change"]) > 1e-6 for row in rows.values())
    assert sorted(row["rank_b"] for row in rows.values()) == list(range(1, 13))


def test_compare_two_versions_table(approved_run, rejected_run, capsys) -> None:
    _, workspace, _ = approved_run
    assert models_command(workspace, "--compare", "1", "2") == 0
    output = capsys.readouterr().out
    assert "Global SHAP values" in output
    assert "rank change" in output
    assert "A = ltr-ranking/1: s3://" in output
    assert "B = ltr-ranking/2: s3://" in output


def test_compare_unknown_version_fails(approved_run, unexplained_version, capsys) -> None:
    _, workspace, _ = approved_run
    assert models_command(workspace, "--compare", "1", "9") == 2
    output = " ".join(capsys.readouterr().out.split())
    assert "model package ltr-ranking/9 not found" in output
    assert "versions 1, 2, 3" in output


def test_compare_version_without_report_fails(approved_run, unexplained_version, capsys) -> None:
    _, workspace, _ = approved_run
    statuses = {step["step"]: step["status"] for step in unexplained_version["steps"]}
    assert "explain" not in statuses
    assert unexplained_version["model_package_arn"].endswith("/3")
    assert models_command(workspace, "--compare", "3", "1") == 2
    output = " ".join(capsys.readouterr().out.split())
    assert "model package ltr-ranking/3 has no explainability report" in output
    assert "explain in [pipeline] steps" in output


def test_no_connection_leaves_loopback(approved_run) -> None:
    _, workspace, guard_log = approved_run
    active = Path(str(guard_log) + ".active")
    # The guard was loaded in the jobs' processes, and none of them reached another host.
    assert active.exists()
    assert len(active.read_text().splitlines()) >= 5
    blocked = guard_log.read_text() if guard_log.exists() else ""
    assert blocked == ""


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
    skipped = ("predict", "evaluate", "explain", "condition", "register", "package")
    assert {statuses[s] for s in skipped} == {"Skipped"}
    prepare = next(step for step in record["steps"] if step["step"] == "prepare")
    train_split = prepare["outputs"]["train"].removeprefix("s3://")
    assert any((workspace / "s3" / train_split).glob("*.parquet"))


def test_fixture_config_is_valid() -> None:
    config = load_config(REPO / "config.ini", [REPO / "fixtures" / "fixtures.ini"], use_local=False)
    assert config.pipeline.dataset == "fixtures/letor"

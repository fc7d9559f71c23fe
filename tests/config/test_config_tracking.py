"""[tracking] and [train] profile_steps: validation, where runs are recorded, cloud variables."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from harness.local.pipeline import RunRecord
from harness.plan.build import build_plan
from harness.tracking import RunTracker, cloud_tracking_environment, tracking_settings

if TYPE_CHECKING:
    from tests.config.conftest import Project

SERVER_ARN = "arn:aws:sagemaker:us-east-1:111122223333:mlflow-tracking-server/ltr-tracking"


def test_tracking_uri_rejects_http(project: Project) -> None:
    project.write("config.local.ini", "[tracking]\nuri = http://127.0.0.1:5000\n")
    problems = project.problems()
    assert len(problems) == 1
    problem = problems[0]
    assert problem.file == "config.local.ini"
    assert problem.line == 2
    assert problem.section == "tracking"
    assert problem.key == "uri"
    assert problem.value == "http://127.0.0.1:5000"
    assert "not a tracking store" in problem.message
    assert "mlflow-tracking-server" in problem.fix


def test_tracking_enabled_rejects_yes(project: Project) -> None:
    project.write("config.local.ini", "[tracking]\nenabled = yes\n")
    problems = project.problems()
    assert [(p.section, p.key, p.value) for p in problems] == [("tracking", "enabled", "yes")]


@pytest.mark.parametrize("value", ["25,5", "0,3", "5", "a,b", "5,25,30"])
def test_profile_steps_rejects_bad_range(project: Project, value: str) -> None:
    problems = project.problems(overrides=[f"train.profile_steps={value}"])
    assert len(problems) == 1
    assert (problems[0].section, problems[0].key, problems[0].value) == (
        "train",
        "profile_steps",
        value,
    )
    assert "FIRST,LAST" in problems[0].fix


def test_local_target_uses_workspace_store(project: Project) -> None:
    project.write("config.local.ini", f"[tracking]\nuri = {SERVER_ARN}\n")
    config = project.load()
    workspace = project.root / ".harness"
    settings = tracking_settings(config, workspace)
    assert settings.tracking_uri == f"sqlite:///{workspace.resolve()}/mlflow/mlflow.db"
    assert settings.artifact_location == (workspace.resolve() / "mlflow" / "artifacts").as_uri()
    assert settings.experiment == "ltr-ranking"
    assert settings.enabled


def test_cloud_target_uses_server_arn(project: Project) -> None:
    project.write(
        "config.local.ini",
        f"[session]\ntarget = cloud\n\n[tracking]\nuri = {SERVER_ARN}\nexperiment = ranking\n",
    )
    config = project.load()
    settings = tracking_settings(config, project.root / ".harness")
    assert settings.tracking_uri == SERVER_ARN
    assert settings.artifact_location is None
    assert cloud_tracking_environment(config) == {
        "MLFLOW_TRACKING_URI": SERVER_ARN,
        "MLFLOW_EXPERIMENT_NAME": "ranking",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }


def test_cloud_environment_empty_without_server(project: Project) -> None:
    assert cloud_tracking_environment(project.load()) == {}
    project.write("config.local.ini", f"[tracking]\nuri = {SERVER_ARN}\nenabled = false\n")
    assert cloud_tracking_environment(project.load()) == {}


def write_dataset(project: Project) -> None:
    project.write("data/letor/train.txt", "2 qid:1 1:0.5 2:0.1\n0 qid:1 1:0.2 2:0.3\n")


def test_disabled_tracking_creates_no_store(project: Project) -> None:
    write_dataset(project)
    project.write("config.local.ini", "[tracking]\nenabled = false\n")
    config = project.load()
    workspace = project.root / ".harness"
    tracker = RunTracker.start(config, build_plan(config, "20260101000000"), workspace)
    record = RunRecord(
        run_id="20260101000000", pipeline="ltr-ranking", started="", status="Completed"
    )
    tracker.finish(config, record, {}, workspace)
    assert not tracker.settings.enabled
    assert not (workspace / "mlflow").exists()


def test_profile_steps_reach_training_request(project: Project) -> None:
    write_dataset(project)
    config = project.load(overrides=["train.profile_steps=5,25"])
    train = build_plan(config, "20260101000000").job("train").request
    assert train["HyperParameters"]["profile_steps"] == "5,25"
    assert train["TensorBoardOutputConfig"]["LocalPath"] == "/opt/ml/output/tensorboard"
    output_path = train["OutputDataConfig"]["S3OutputPath"].rstrip("/")
    assert train["TensorBoardOutputConfig"]["S3OutputPath"] == f"{output_path}/tensorboard"
    assert train["ProfilerConfig"]["S3OutputPath"] == f"{output_path}/profiler"


def test_unprofiled_request_has_no_profiler(project: Project) -> None:
    write_dataset(project)
    train = build_plan(project.load(), "20260101000000").job("train").request
    assert "profile_steps" not in train["HyperParameters"]
    assert "TensorBoardOutputConfig" not in train
    assert "ProfilerConfig" not in train


def test_workspace_store_path_is_absolute(project: Project) -> None:
    settings = tracking_settings(project.load(), Path(".harness"))
    assert settings.tracking_uri.startswith("sqlite:////")

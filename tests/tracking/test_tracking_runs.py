"""Experiment tracking on real runs of the fixtures: MLflow's sqlite store in the workspace."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from harness.cli import main
from harness.config import load_config
from harness.plan.build import hash_files
from harness.plan.code import step_code_files
from harness.tracking import mlflow_name, tracking_settings
from harness.tracking.flush import flush_pending
from harness.tracking.recorder import open_client
from tests.support.guard import sitecustomize as guard
from tests.support.project import REPO, fixture_run_arguments, start_harness

GUARD = REPO / "tests" / "support" / "guard"
# Enough steps for evaluation metrics and the evaluation report, without explain's minutes.
STEPS = "pipeline.steps=prepare,train,predict,evaluate"

pytestmark = pytest.mark.slow


def harness(workspace: Path, command: str, *extra: str) -> int:
    arguments = fixture_run_arguments(workspace)
    if command != "run":
        # `runs` and `ui` take the configuration options but no output options.
        arguments = [command, *[a for a in arguments[1:] if a != "--quiet"]]
    return main([*arguments, *extra])


def config_of(workspace: Path, *overrides: str):  # type: ignore[no-untyped-def]
    return load_config(
        REPO / "config.ini",
        [REPO / "fixtures" / "fixtures.ini"],
        [f"pipeline.workspace={workspace}", STEPS, *overrides],
        use_local=False,
    )


def evaluation_report(workspace: Path, record: dict) -> dict:
    evaluate = next(step for step in record["steps"] if step["step"] == "evaluate")
    uri = evaluate["outputs"]["evaluation"].rstrip("/") + "/evaluation.json"
    return json.loads((workspace / "s3" / uri.removeprefix("s3://")).read_text())


def mlflow_runs(workspace: Path, kind: str = "run") -> list:
    client, experiment_id = open_client(tracking_settings(config_of(workspace), workspace))
    return client.search_runs(
        [experiment_id],
        filter_string=f"tags.`harness.kind` = '{kind}'",
        order_by=["attributes.start_time ASC"],
    )


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[dict]]:
    """Two guarded runs in one workspace that differ in the learning rate."""
    workspace = tmp_path_factory.mktemp("tracking") / "ws"
    guard_log = workspace.parent / "guard.log"
    saved = {key: os.environ.get(key) for key in ("PYTHONPATH", "HARNESS_GUARD_LOG")}
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(GUARD), saved["PYTHONPATH"]]))
    os.environ["HARNESS_GUARD_LOG"] = str(guard_log)
    # The harness process, which records into MLflow, is guarded as well as its jobs.
    uninstall = guard.install(guard_log)
    try:
        codes = [
            harness(workspace, "run", "--set", STEPS),
            harness(
                workspace,
                "run",
                "--set",
                STEPS,
                "--set",
                "train.hyperparameters.learning_rate=0.01",
            ),
        ]
        # Each run left its record to a detached MLflow writer; wait for them.
        flush_pending(workspace)
    finally:
        uninstall()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    assert codes == [0, 0]
    records = [json.loads(path.read_text()) for path in sorted((workspace / "runs").glob("*.json"))]
    return workspace, guard_log, records


def test_params_match_configuration(two_runs) -> None:
    workspace, _, records = two_runs
    runs = mlflow_runs(workspace)
    assert len(runs) == 2
    expected = {
        mlflow_name(f"{section}.{key}"): value
        for section, keys in config_of(workspace).effective().items()
        for key, (value, _) in keys.items()
    }
    assert runs[0].data.params == expected
    assert runs[1].data.params["train.hyperparameters.learning_rate"] == "0.01"
    assert runs[0].data.params["train.hyperparameters.learning_rate"] == "0.001"


def test_epoch_metrics_match_job(two_runs) -> None:
    workspace, _, records = two_runs
    run = mlflow_runs(workspace)[0]
    client, _ = open_client(tracking_settings(config_of(workspace), workspace))
    train = next(step for step in records[0]["steps"] if step["step"] == "train")
    history = client.get_metric_history(run.info.run_id, "train.validation:ndcg_at_10")
    values = [metric.value for metric in sorted(history, key=lambda m: m.step)]
    assert values == train["metrics"]["validation:ndcg@10"]
    assert [metric.step for metric in sorted(history, key=lambda m: m.step)] == list(
        range(1, len(values) + 1)
    )


def test_evaluation_metrics_match_report(two_runs) -> None:
    workspace, _, records = two_runs
    run = mlflow_runs(workspace)[0]
    ranking = evaluation_report(workspace, records[0])["ranking_metrics"]
    assert run.data.metrics["evaluate.ndcg_at_10"] == ranking["ndcg_at_10"]["value"]
    assert run.data.metrics["evaluate.map"] == ranking["map"]["value"]


def test_evaluation_recorded_without_condition(two_runs) -> None:
    workspace, _, records = two_runs
    assert "condition" not in {step["step"] for step in records[0]["steps"]}
    assert records[0]["evaluation"] == evaluation_report(workspace, records[0])


def test_tags_match_run(two_runs) -> None:
    workspace, _, records = two_runs
    first, second = mlflow_runs(workspace)
    assert first.data.tags["harness.run_id"] == records[0]["run_id"]
    assert first.data.tags["harness.status"] == "Completed"
    assert first.data.tags["harness.target"] == "local"
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert first.data.tags["mlflow.source.git.commit"] == commit
    config = config_of(workspace)
    root = REPO / "steps"
    code = hash_files(root, step_code_files(root, REPO / config.steps["train"].entry_point))
    assert first.data.tags["harness.code.train"] == code
    # The second run took prepare from the cache and ran the rest.
    assert first.data.tags["harness.cache.prepare"] == "miss"
    assert second.data.tags["harness.cache.prepare"] == "hit"
    assert second.data.tags["harness.cache.train"] == "miss"
    assert second.data.tags["harness.cache_hits"] == "1/4"
    assert (
        first.data.tags["harness.data.dataset.raw"] == second.data.tags["harness.data.dataset.raw"]
    )
    train_job = next(step["name"] for step in records[1]["steps"] if step["step"] == "train")
    assert second.data.tags["harness.job.train"] == train_job


def test_jobs_are_nested_runs(two_runs) -> None:
    workspace, _, records = two_runs
    parent = mlflow_runs(workspace)[1]
    jobs = [
        run
        for run in mlflow_runs(workspace, kind="job")
        if run.data.tags["mlflow.parentRunId"] == parent.info.run_id
    ]
    assert sorted(run.data.tags["harness.step"] for run in jobs) == [
        "evaluate",
        "predict",
        "prepare",
        "train",
    ]
    train = next(run for run in jobs if run.data.tags["harness.step"] == "train")
    assert "validation:ndcg_at_10" in train.data.metrics


def test_evaluation_report_is_artifact(two_runs) -> None:
    workspace, _, records = two_runs
    run = mlflow_runs(workspace)[0]
    artifacts = Path(run.info.artifact_uri.removeprefix("file://"))
    assert artifacts.is_relative_to(workspace.resolve())
    report = json.loads((artifacts / "evaluation" / "evaluation.json").read_text())
    assert report == evaluation_report(workspace, records[0])
    assert (artifacts / "run" / f"{records[0]['run_id']}.json").is_file()


def test_runs_lists_newest_first(two_runs, capsys) -> None:
    workspace, _, records = two_runs
    capsys.readouterr()
    assert harness(workspace, "runs", "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert [run["run_id"] for run in listed] == [records[1]["run_id"], records[0]["run_id"]]


@pytest.mark.parametrize("json_first", [False, True])
def test_runs_compare_shows_learning_rate(two_runs, capsys, json_first: bool) -> None:
    workspace, _, records = two_runs
    capsys.readouterr()
    first, second = records[0]["run_id"], records[1]["run_id"]
    if json_first:
        assert harness(workspace, "runs", "--json", "compare", first, second) == 0
    else:
        assert harness(workspace, "runs", "compare", first, second, "--json") == 0
    differences = json.loads(capsys.readouterr().out)
    params = [d for d in differences if d["kind"] == "param"]
    assert params == [
        {
            "kind": "param",
            "name": "train.hyperparameters.learning_rate",
            "first": "0.001",
            "second": "0.01",
        }
    ]
    metrics = {d["name"]: d for d in differences if d["kind"] == "metric"}
    ndcg = metrics["evaluate.ndcg_at_10"]
    first_report, second_report = (evaluation_report(workspace, r) for r in records)
    assert ndcg["first"] == first_report["ranking_metrics"]["ndcg_at_10"]["value"]
    assert ndcg["second"] == second_report["ranking_metrics"]["ndcg_at_10"]["value"]


def test_runs_compare_table(two_runs, capsys) -> None:
    workspace, _, records = two_runs
    capsys.readouterr()
    first, second = records[0]["run_id"], records[1]["run_id"]
    assert harness(workspace, "runs", "compare", first, second) == 0
    output = capsys.readouterr().out
    assert "train.hyperparameters.learning_rate" in output
    assert "evaluate.ndcg_at_10" in output


def test_runs_compare_unknown_run(two_runs, capsys) -> None:
    workspace, _, records = two_runs
    capsys.readouterr()
    assert harness(workspace, "runs", "compare", records[0]["run_id"], "19990101000000") == 2
    output = capsys.readouterr().out
    assert "'19990101000000' not found" in output


def test_interrupted_run_recorded_killed(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    arguments = [*fixture_run_arguments(workspace), "--set", STEPS]
    process = start_harness(arguments)
    # Interrupt once the train job has started, so prepare has finished.
    jobs = workspace / "jobs"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if jobs.is_dir() and any("-train-" in path.name for path in jobs.iterdir()):
            break
        time.sleep(0.2)
    assert process.poll() is None, "the run ended before its train job started"
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=120) == 130
    [record] = [json.loads(path.read_text()) for path in (workspace / "runs").glob("*.json")]
    assert record["status"] == "Stopped"

    flush_pending(workspace)
    [run] = mlflow_runs(workspace)
    assert run.data.tags["harness.run_id"] == record["run_id"]
    assert run.info.status == "KILLED"
    finished = [step["step"] for step in record["steps"]]
    assert "prepare" in finished
    jobs_recorded = mlflow_runs(workspace, kind="job")
    assert "prepare" in {job.data.tags.get("harness.step") for job in jobs_recorded}


def test_no_connection_leaves_loopback(two_runs) -> None:
    _, guard_log, _ = two_runs
    active = Path(str(guard_log) + ".active")
    assert str(os.getpid()) in active.read_text().split()
    blocked = guard_log.read_text() if guard_log.exists() else ""
    assert blocked == ""


def test_unwritable_store_keeps_run(two_runs, tmp_path: Path, caplog) -> None:
    workspace, _, records = two_runs
    copy = tmp_path / "ws"
    shutil.copytree(workspace, copy)
    # A file where the store's folder belongs: sqlite cannot create mlflow.db.
    shutil.rmtree(copy / "mlflow")
    (copy / "mlflow").write_text("not a folder")
    with caplog.at_level(logging.WARNING, logger="harness.tracking"):
        code = harness(copy, "run", "--set", STEPS)
    assert code == 0
    warnings = [r.getMessage() for r in caplog.records if r.name.startswith("harness.tracking")]
    assert any("experiment tracking is off for this run" in text for text in warnings)
    latest = json.loads(sorted((copy / "runs").glob("*.json"))[-1].read_text())
    assert latest["status"] == "Completed"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_ui_serves_on_loopback(two_runs, tmp_path: Path) -> None:
    workspace, _, _ = two_runs
    port = free_port()
    guard_log = tmp_path / "guard.log"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(GUARD), os.environ.get("PYTHONPATH")])),
        "HARNESS_GUARD_LOG": str(guard_log),
    }
    arguments = [a for a in fixture_run_arguments(workspace)[1:] if a != "--quiet"]
    command = [sys.executable, "-m", "harness.cli", "ui", *arguments, "--port", str(port)]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        status, deadline = None, time.monotonic() + 120
        while status is None and time.monotonic() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as reply:
                    status = reply.status
            except OSError:
                time.sleep(1)
    finally:
        # The UI's server runs in a child of this process group: end the group we started.
        os.killpg(process.pid, 15)
        output = process.communicate(timeout=30)[0].decode(errors="replace")
    assert status == 200, output
    blocked = guard_log.read_text() if guard_log.exists() else ""
    assert blocked == ""

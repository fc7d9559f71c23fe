"""The cache across real runs on the fixtures: hits, damaged entries, resume, interruption."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.config import load_config
from harness.local.pipeline import LocalRunner, RunRecord
from harness.local.processes import PROCESSES_FILE, start_time
from harness.plan.build import build_plan
from tests.support.project import fixture_run_arguments

REPO = Path(__file__).resolve().parents[2]
TWO_STEPS = "pipeline.steps=prepare, train"

pytestmark = pytest.mark.slow


def run(workspace: Path, *overrides: str, run_id: str) -> RunRecord:
    config = load_config(
        REPO / "config.ini",
        [REPO / "fixtures" / "fixtures.ini"],
        [
            f"pipeline.workspace={workspace}",
            TWO_STEPS,
            "train.hyperparameters.epochs=2",
            *overrides,
        ],
        use_local=False,
    )
    return LocalRunner(config, build_plan(config, run_id)).run()


def sources(record: RunRecord) -> dict[str, str]:
    return {s.step: "cache" if s.cached else s.status for s in record.steps}


@pytest.fixture(scope="module")
def warm_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workspace = tmp_path_factory.mktemp("cache") / "ws"
    first = run(workspace, run_id="20260101000001")
    assert sources(first) == {"prepare": "Completed", "train": "Completed"}
    return workspace


def test_second_run_served_from_cache(warm_workspace: Path) -> None:
    second = run(warm_workspace, run_id="20260101000002")
    assert sources(second) == {"prepare": "cache", "train": "cache"}
    first = json.loads((warm_workspace / "runs" / "20260101000001.json").read_text())
    assert second.step("train").outputs == first["steps"][1]["outputs"]


def test_corrupted_artifact_recomputed(warm_workspace: Path) -> None:
    record = run(warm_workspace, run_id="20260101000003")
    model_uri = record.step("train").outputs["model"]
    model = warm_workspace / "s3" / model_uri.removeprefix("s3://")
    model.write_bytes(b"not a tarball")

    again = run(warm_workspace, run_id="20260101000004")
    assert sources(again) == {"prepare": "cache", "train": "Completed"}
    assert again.step("train").outputs["model"] != model_uri


def test_deleted_artifact_recomputed(warm_workspace: Path) -> None:
    record = run(warm_workspace, run_id="20260101000005")
    split = record.step("prepare").outputs["validation"]
    folder = warm_workspace / "s3" / split.removeprefix("s3://")
    for path in folder.iterdir():
        path.unlink()

    again = run(warm_workspace, run_id="20260101000006")
    assert again.step("prepare").cached is False
    assert again.step("prepare").status == "Completed"


def test_explain_outputs_served_from_cache(warm_workspace: Path) -> None:
    with_explain = "pipeline.steps=prepare, train, explain"
    first = run(warm_workspace, with_explain, run_id="20260101000011")
    # Earlier tests in this workspace may have left prepare or train to rerun here.
    assert sources(first)["explain"] == "Completed"
    output = warm_workspace / "s3" / first.step("explain").outputs["explain"].removeprefix("s3://")
    assert (output / "analysis.json").is_file()
    assert (output / "report.html").is_file()
    assert (output / "explanations_shap" / "out.csv").is_file()

    # test_cache_keys checks that a change of [explain.arguments] changes the key.
    again = run(warm_workspace, with_explain, run_id="20260101000012")
    assert sources(again) == {"prepare": "cache", "train": "cache", "explain": "cache"}


def test_resume_after_failure(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    failed = run(workspace, "train.hyperparameters.loss=bogus", run_id="20260101000007")
    assert sources(failed) == {"prepare": "Completed", "train": "Failed"}
    assert not (workspace / "cache" / "train").exists()

    resumed = run(workspace, run_id="20260101000008")
    assert sources(resumed) == {"prepare": "cache", "train": "Completed"}


def test_from_step_reruns_it(warm_workspace: Path) -> None:
    config = load_config(
        REPO / "config.ini",
        [REPO / "fixtures" / "fixtures.ini"],
        [f"pipeline.workspace={warm_workspace}", TWO_STEPS, "train.hyperparameters.epochs=2"],
        use_local=False,
    )
    record = LocalRunner(config, build_plan(config, "20260101000009"), rerun_from="train").run()
    assert sources(record) == {"prepare": "cache", "train": "Completed"}


def test_interrupted_run_leaves_nothing(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    command = [
        sys.executable,
        "-m",
        "harness.cli",
        *fixture_run_arguments(workspace),
        "--set",
        TWO_STEPS,
        "--set",
        "train.hyperparameters.epochs=200",
    ]
    harness = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # Wait (bounded) until the training job's processes are running.
        deadline = time.monotonic() + 300
        records: list[Path] = []
        while time.monotonic() < deadline and not records:
            records = list((workspace / "jobs").glob(f"*-train-*/{PROCESSES_FILE}"))
            time.sleep(0.2)
        assert records, "the training job did not start within 300 s"
        pids = [entry["pid"] for entry in json.loads(records[0].read_text())]
        harness.send_signal(signal.SIGTERM)
        assert harness.wait(timeout=60) == 130
    finally:
        if harness.poll() is None:
            harness.kill()

    for pid in pids:
        assert start_time(pid) is None, f"job process {pid} outlived harness"
    assert not (workspace / "cache" / "train").exists()
    assert list((workspace / "jobs").glob(f"*/{PROCESSES_FILE}")) == []

    resumed = run(workspace, run_id="20260101000010")
    assert sources(resumed) == {"prepare": "cache", "train": "Completed"}


def test_orphans_of_killed_run_ended(tmp_path: Path) -> None:
    """A harness killed with SIGKILL cannot clean up: the next run ends what it left."""
    from harness.local.processes import end_orphans, record_processes

    job_dir = tmp_path / "ws" / "jobs" / "left-behind"
    job_dir.mkdir(parents=True)
    orphan = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True
    )
    try:
        record_processes(job_dir, [orphan.pid])
        assert end_orphans(tmp_path / "ws") == 1
        assert orphan.wait(timeout=10) == -signal.SIGKILL
        assert not (job_dir / PROCESSES_FILE).exists()
    finally:
        if orphan.poll() is None:
            os.kill(orphan.pid, signal.SIGKILL)

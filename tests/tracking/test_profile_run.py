"""`harness run --profile train` on the fixtures: a trace, step_time.json and the breakdown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main
from harness.config import load_config
from harness.report.profile import profile_folder
from harness.tracking import tracking_settings
from harness.tracking.flush import flush_pending
from harness.tracking.recorder import open_client
from tests.support.project import REPO, fixture_run_arguments

pytestmark = pytest.mark.slow


def test_profile_train_writes_trace(tmp_path: Path, capsys) -> None:
    workspace = tmp_path / "ws"
    steps = "pipeline.steps=prepare,train"
    arguments = [a for a in fixture_run_arguments(workspace) if a != "--quiet"]
    code = main([*arguments, "--set", steps, "--profile", "train"])
    output = capsys.readouterr().out
    assert code == 0, output

    record = json.loads(next((workspace / "runs").glob("*.json")).read_text())
    train = next(step for step in record["steps"] if step["step"] == "train")
    folder = profile_folder(workspace, train["name"])
    assert list(folder.glob("plugins/profile/*/*.xplane.pb"))
    profile = json.loads((folder / "step_time.json").read_text())
    # Each call of steps_per_execution steps is traced whole, and the first call, which
    # builds the graph, is not traced. So tracing starts at step 5 or at the second call.
    first, last = profile["traced_steps"]
    assert profile["steps"] > 5
    assert 1 < first <= max(5, profile["first_call_steps"] + 1)
    assert last >= min(25, profile["steps"])
    assert last <= profile["steps"]
    assert 0.0 <= profile["input_share"] <= 1.0
    assert profile["slowest_operations"]

    # The breakdown is printed, and the TensorBoard folder is uploaded as SageMaker does.
    assert "ms per step: waiting for input" in output
    assert f"Slowest TensorFlow operations in steps {first} to {last}" in output
    assert profile["slowest_operations"][0]["type"] in output
    tensorboard = train["outputs"]["model"].rsplit("/", 3)[0] + "/tensorboard"
    mirror = workspace / "s3" / tensorboard.removeprefix("s3://")
    assert json.loads((mirror / "step_time.json").read_text()) == profile

    config = load_config(
        REPO / "config.ini",
        [REPO / "fixtures" / "fixtures.ini"],
        [f"pipeline.workspace={workspace}"],
        use_local=False,
    )
    flush_pending(workspace)
    client, experiment_id = open_client(tracking_settings(config, workspace))
    (run,) = client.search_runs([experiment_id], "tags.`harness.kind` = 'run'")
    assert run.data.metrics["train.profile.ms_per_step"] == pytest.approx(profile["ms_per_step"])
    assert run.data.params["train.profile_steps"] == "5,25"

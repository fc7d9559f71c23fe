"""Training jobs of a tuning job become MLflow runs nested under the train step's run."""

from __future__ import annotations

import json
from pathlib import Path

from harness.local.pipeline import StepOutcome
from harness.tracking import TrackingSettings, workspace_store
from harness.tracking.recorder import _now_ms, _record_job, open_client

TABLE = {
    "tuning_job_name": "ltr-ranking-tune-0123456789ab",
    "objective": {"Type": "Maximize", "MetricName": "validation:ndcg@10"},
    "training_jobs": [
        {
            "name": "ltr-ranking-tune-0123456789ab-001-aaaa",
            "hyperparameters": {"learning_rate": "0.01", "epochs": "3"},
            "status": "Completed",
            "objective": 0.52,
            "intermediate_values": [0.41, 0.47, 0.52],
            "final_metrics": {"validation:ndcg@10": 0.52, "train:loss": 0.31},
        },
        {
            "name": "ltr-ranking-tune-0123456789ab-002-bbbb",
            "hyperparameters": {"learning_rate": "0.001", "epochs": "3"},
            "status": "Stopped",
            "objective": 0.38,
            "intermediate_values": [0.35, 0.38],
            "final_metrics": {},
        },
    ],
}


def test_trials_nested_under_train(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    (workspace / "tuning").mkdir(parents=True)
    (workspace / "tuning" / f"{TABLE['tuning_job_name']}.json").write_text(json.dumps(TABLE))
    tracking_uri, artifact_location = workspace_store(workspace)
    client, experiment_id = open_client(
        TrackingSettings(True, tracking_uri, artifact_location, "tuning-test")
    )
    parent = client.create_run(experiment_id, tags={"harness.kind": "run"})
    outcome = StepOutcome(
        "train",
        TABLE["tuning_job_name"],
        "Completed",
        12.5,
        metrics={"validation:ndcg@10": [0.41, 0.47, 0.52]},
    )

    _record_job(client, parent.info.run_id, outcome, workspace, _now_ms())

    (job,) = client.search_runs([experiment_id], "tags.`harness.kind` = 'job'")
    assert job.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert job.data.tags["harness.job"] == TABLE["tuning_job_name"]
    trials = client.search_runs(
        [experiment_id], "tags.`harness.kind` = 'trial'", order_by=["tags.`harness.job` ASC"]
    )
    assert [t.data.tags["harness.job"] for t in trials] == [
        trial["name"] for trial in TABLE["training_jobs"]
    ]
    assert {t.data.tags["mlflow.parentRunId"] for t in trials} == {job.info.run_id}
    first, second = trials
    assert first.data.params == {"learning_rate": "0.01", "epochs": "3"}
    assert first.info.status == "FINISHED"
    assert second.info.status == "KILLED"
    history = client.get_metric_history(first.info.run_id, "validation:ndcg_at_10")
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == [0.41, 0.47, 0.52]
    assert first.data.metrics["train:loss"] == 0.31
    artifacts = [item.path for item in client.list_artifacts(job.info.run_id, "tuning")]
    assert artifacts == [f"tuning/{TABLE['tuning_job_name']}.json"]

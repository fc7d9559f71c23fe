"""The train step as a tuning job in `harness run`: real training jobs on the fixtures, the
tuning job recorded in the embedded SageMaker API, the best model used downstream, resume."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import optuna
import pytest

from harness.cli import main
from harness.local.embedded import EmbeddedAWS
from tests.support.project import REPO, fixture_run_arguments, start_harness

pytestmark = pytest.mark.slow

TUNING = """
[tuning]
strategy = Random
objective_metric = validation:ndcg@10
objective_type = Maximize
max_jobs = 3
max_parallel_jobs = {parallel}
random_seed = 7

[tuning.ranges]
learning_rate = continuous 0.0005..0.05 Logarithmic
dropout = continuous 0.0..0.3
"""

STEPS = "pipeline.steps=prepare,train,predict"


def tuning_arguments(workspace: Path, parallel: int) -> list[str]:
    tuning_file = workspace.parent / f"tuning-{parallel}.ini"
    tuning_file.write_text(TUNING.format(parallel=parallel))
    return [*fixture_run_arguments(workspace), "-c", str(tuning_file), "--set", STEPS]


def latest_run(workspace: Path) -> dict:
    return json.loads(sorted((workspace / "runs").glob("*.json"))[-1].read_text())


def trial_table(workspace: Path) -> dict:
    [path] = [
        p for p in (workspace / "tuning").glob("*.json") if not p.name.endswith(".models.json")
    ]
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, Path]:
    workspace = tmp_path_factory.mktemp("tuned") / "ws"
    return main(tuning_arguments(workspace, parallel=2)), workspace


def test_tuning_run_completes(tuned) -> None:
    code, workspace = tuned
    assert code == 0
    train = latest_run(workspace)["steps"][1]
    assert train["step"] == "train"
    assert train["status"] == "Completed"
    assert train["name"].startswith("ltr-ranking-tune-")


def test_tuning_job_recorded_in_api(tuned) -> None:
    _, workspace = tuned
    table = trial_table(workspace)
    with EmbeddedAWS(workspace, "us-east-1") as aws:
        described = aws.sagemaker.describe_hyper_parameter_tuning_job(
            HyperParameterTuningJobName=table["tuning_job_name"]
        )
    assert described["HyperParameterTuningJobStatus"] == "Completed"
    assert described["HyperParameterTuningJobConfig"]["Strategy"] == "Random"
    assert described["TrainingJobStatusCounters"]["Completed"] == 3
    best = described["BestTrainingJob"]
    assert best["TrainingJobName"] == table["best_training_job"]
    objectives = {job["name"]: job["objective"] for job in table["training_jobs"]}
    assert best["FinalHyperParameterTuningJobObjectiveMetric"]["Value"] == pytest.approx(
        max(objectives.values())
    )
    assert set(best["TunedHyperParameters"]) == {"learning_rate", "dropout"}


def test_training_jobs_get_trial_hyperparameters(tuned) -> None:
    _, workspace = tuned
    table = trial_table(workspace)
    assert len(table["training_jobs"]) == 3
    with EmbeddedAWS(workspace, "us-east-1") as aws:
        for job in table["training_jobs"]:
            described = aws.sagemaker.describe_training_job(TrainingJobName=job["name"])
            hyperparameters = described["HyperParameters"]
            assert described["TrainingJobStatus"] == "Completed"
            assert hyperparameters["_tuning_objective_metric"] == "validation:ndcg@10"
            assert 0.0005 <= float(hyperparameters["learning_rate"]) <= 0.05
            assert 0.0 <= float(hyperparameters["dropout"]) <= 0.3
            # Static values come from [train.hyperparameters] and the fixtures' overrides.
            assert hyperparameters["epochs"] == "8"
    learning_rates = {job["hyperparameters"]["learning_rate"] for job in table["training_jobs"]}
    assert len(learning_rates) == 3


def test_predict_reads_the_best_model(tuned) -> None:
    _, workspace = tuned
    table = trial_table(workspace)
    steps = {step["step"]: step for step in latest_run(workspace)["steps"]}
    assert steps["train"]["outputs"]["model"] == table["model"]
    assert f"/{table['best_training_job']}/output/model.tar.gz" in table["model"]
    predict_log = (workspace / "jobs" / steps["predict"]["name"] / "job.log").read_text()
    assert steps["predict"]["status"] == "Completed", predict_log


def test_tuning_report_has_both_charts(tuned) -> None:
    _, workspace = tuned
    table = trial_table(workspace)
    report = (workspace / "tuning" / f"{table['tuning_job_name']}.html").read_text()
    assert 'aria-label="objective by training job"' in report
    assert 'aria-label="hyperparameter importance"' in report
    for job in table["training_jobs"]:
        assert job["name"] in report


def test_tuning_show_prints_training_jobs(tuned, capsys: pytest.CaptureFixture[str]) -> None:
    _, workspace = tuned
    table = trial_table(workspace)
    code = main(
        [
            "tuning",
            "show",
            "--no-local",
            "--config",
            str(REPO / "config.ini"),
            "--set",
            f"pipeline.workspace={workspace}",
            "--json",
        ]
    )
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["best_training_job"] == table["best_training_job"]
    assert [job["name"] for job in printed["training_jobs"]] == [
        job["name"] for job in table["training_jobs"]
    ]


def test_unchanged_tuning_run_comes_from_cache(tuned) -> None:
    code, workspace = tuned
    before = trial_table(workspace)
    assert main(tuning_arguments(workspace, parallel=2)) == 0
    train = latest_run(workspace)["steps"][1]
    assert train["cached"] is True
    assert trial_table(workspace)["training_jobs"] == before["training_jobs"]


def completed_trials(models_file: Path) -> int:
    """Return how many trials the study beside a tuning job's models file records as complete."""
    name = models_file.name.removesuffix(".models.json")
    storage = f"sqlite:///{models_file.with_name(name + '.db')}"
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except Exception:  # noqa: BLE001 - the study may not be written yet
        return 0
    return len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)))


def test_interrupted_tuning_job_resumes(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    arguments = tuning_arguments(workspace, parallel=1)
    process = start_harness(arguments)
    models = workspace / "tuning"
    deadline = time.monotonic() + 300
    finished: dict[str, str] = {}
    while time.monotonic() < deadline and process.poll() is None:
        files = list(models.glob("*.models.json")) if models.exists() else []
        if files:
            listed = json.loads(files[0].read_text())
            # The model is listed before the study records the job as complete; interrupt
            # only once both agree, or a listed job counts as unfinished. One or two of the
            # three jobs may have finished by then: a training job takes seconds.
            if 0 < len(listed) < 3 and completed_trials(files[0]) == len(listed):
                finished = listed
                break
        time.sleep(0.2)
    assert finished, "the tuning job ended before the test saw a finished training job"
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=120) == 130
    logs = {name: workspace / "jobs" / name / "job.log" for name in finished}
    written = {name: log.stat().st_mtime_ns for name, log in logs.items()}

    assert main(arguments) == 0
    table = trial_table(workspace)
    names = [job["name"] for job in table["training_jobs"]]
    assert len(names) == 3
    # One job runs at a time, so the jobs finish in launch order.
    assert names[: len(finished)] == list(finished)
    assert all(job["status"] == "Completed" for job in table["training_jobs"])
    # The training jobs that finished before the interruption did not run again.
    assert {name: log.stat().st_mtime_ns for name, log in logs.items()} == written
    assert os.path.exists(workspace / "tuning" / f"{table['tuning_job_name']}.db")

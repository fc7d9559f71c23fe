"""Which jobs need Horovod, and the error when it is missing."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest

from harness.cli import main
from harness.local import horovod_jobs
from tests.support.project import fixture_run_arguments


def hide_horovod(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the installed-package lookup find no horovod distribution, as in a plain install."""
    real_distribution = importlib.metadata.distribution

    def distribution(name: str) -> importlib.metadata.Distribution:
        if name == "horovod":
            raise importlib.metadata.PackageNotFoundError(name)
        return real_distribution(name)

    monkeypatch.setattr(horovod_jobs.importlib.metadata, "distribution", distribution)


def test_missing_horovod_names_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hide_horovod(monkeypatch)
    workspace = tmp_path / "workspace"
    code = main(
        [*fixture_run_arguments(workspace), "--set", "train.processes_per_host=2", "--no-cache"]
    )
    output = " ".join(capsys.readouterr().out.split())

    assert code == 2
    assert "[train] instance_count = 1, processes_per_host = 2" in output
    assert "trains on 2 Horovod ranks, but the package horovod is not installed" in output
    assert (
        "HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1 "
        "HOROVOD_WITH_GLOO=1 pip install --no-build-isolation 'horovod==0.28.1'"
    ) in output
    # No job started: the workspace has no job folders.
    assert not (workspace / "jobs").exists() or not any((workspace / "jobs").iterdir())


@pytest.mark.parametrize(
    ("request_fields", "ranks"),
    [
        ({"HyperParameters": {"epochs": "2"}, "ResourceConfig": {"InstanceCount": 3}}, 1),
        (
            {
                "HyperParameters": {
                    "sagemaker_mpi_enabled": "true",
                    "sagemaker_mpi_num_of_processes_per_host": "3",
                },
                "ResourceConfig": {"InstanceCount": 2},
            },
            6,
        ),
        # A tuning job's TrainingJobDefinition.
        (
            {
                "StaticHyperParameters": {"sagemaker_mpi_enabled": "true"},
                "ResourceConfig": {"InstanceCount": 4},
            },
            4,
        ),
    ],
)
def test_rank_count_of_requests(request_fields: dict, ranks: int) -> None:
    assert horovod_jobs.rank_count(request_fields) == ranks

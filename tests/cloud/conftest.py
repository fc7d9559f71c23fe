"""Shared set-up of the cloud target's tests: a valid cloud configuration on the fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.config import Config, load_config
from tests.support.project import REPO

# The account 123456789012 is not AWS's documentation example (preflight rejects that one);
# nothing here reaches AWS: the tests that call an API point boto3 at a moto server.
CLOUD_SETTINGS = """
[session]
target = cloud
region = eu-west-1
role_arn = arn:aws:iam::123456789012:role/RankingPipelineExecution
bucket = ranking-team-ml

[pipeline]
output_prefix = s3://ranking-team-ml/ltr-ranking
# SageMaker's TensorFlow images lack shap, so the cloud runs without explain.
steps = prepare, train, predict, evaluate, condition, register, package
"""

# Every step, explain included, for the tests that compile without preflight.
ALL_STEPS = (
    "pipeline.steps=prepare, train, predict, evaluate, explain, condition, register, package"
)


@pytest.fixture
def cloud_file(tmp_path: Path) -> Path:
    path = tmp_path / "cloud.ini"
    path.write_text(CLOUD_SETTINGS)
    return path


@pytest.fixture
def load(cloud_file: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Return a loader of the fixtures configuration for the cloud, with extra --set values."""

    def load_with(*overrides: str, files: tuple[Path, ...] = ()) -> Config:
        return load_config(
            REPO / "config.ini",
            [REPO / "fixtures" / "fixtures.ini", cloud_file, *files],
            [f"pipeline.workspace={tmp_path / 'ws'}", *overrides],
            use_local=False,
        )

    return load_with

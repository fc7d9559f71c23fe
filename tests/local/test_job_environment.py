"""The environment local jobs get: the harness process's, without AWS settings, with the
local Spark driver options beneath it."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.config import load_config
from harness.local.embedded import EmbeddedAWS
from harness.local.pipeline import LOCAL_SPARK_SUBMIT_OPTS, LocalRunner
from harness.plan.build import build_plan
from tests.support.project import REPO


def job_environment(workspace: Path) -> dict[str, str]:
    config = load_config(
        REPO / "config.ini",
        [REPO / "fixtures" / "fixtures.ini"],
        [f"pipeline.workspace={workspace}"],
        use_local=False,
    )
    with EmbeddedAWS(workspace, "us-east-1") as aws:
        runner = LocalRunner(config, build_plan(config, "20261205120000"), events=None, aws=aws)
        runner.aws()  # Stages the code and sets the environment every job gets.
        return dict(runner._env)


def test_spark_driver_options_by_default(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("SPARK_SUBMIT_OPTS", raising=False)
    monkeypatch.setenv("SM_CURRENT_HOST", "algo-9")
    env = job_environment(tmp_path / "ws")
    assert env["SPARK_SUBMIT_OPTS"] == LOCAL_SPARK_SUBMIT_OPTS
    assert "SM_CURRENT_HOST" not in env


@pytest.mark.parametrize("value", ["", "-Xmx2g"])
def test_own_spark_driver_options_replace_them(tmp_path: Path, monkeypatch, value: str) -> None:
    monkeypatch.setenv("SPARK_SUBMIT_OPTS", value)
    assert job_environment(tmp_path / "ws")["SPARK_SUBMIT_OPTS"] == value

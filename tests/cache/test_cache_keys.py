"""Cache keys: what changes them and what never does."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.config import load_config
from harness.local.cache import StepCache
from harness.local.pipeline import LocalRunner
from harness.plan.build import build_plan
from tests.support.project import copy_project

REPO = Path(__file__).resolve().parents[2]
FAKE_DIGESTS = {
    "dataset": {"raw": "d0"},
    "prepare": {"train": "p1", "validation": "p2", "test": "p3", "schema": "p4"},
    "train": {"model": "t1", "output": "t2"},
    "predict": {"predictions": "r1"},
    "evaluate": {"evaluation": "e1"},
}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the repository's configuration, steps and fixtures that a test may edit."""
    return copy_project(tmp_path)


def keys(project: Path, run_id: str, *overrides: str) -> dict[str, str]:
    config = load_config(
        project / "config.ini", [project / "fixtures" / "fixtures.ini"], overrides, use_local=False
    )
    runner = LocalRunner(config, build_plan(config, run_id))
    runner.digests = {step: dict(values) for step, values in FAKE_DIGESTS.items()}
    return {
        job.step: runner._cache_key(job)
        for job in runner.plan.jobs
        if job.kind in ("processing", "training")
    }


def test_keys_ignore_run_id(project: Path) -> None:
    assert keys(project, "20260101000000") == keys(project, "20261231235959")


def test_helper_edit_changes_importers(project: Path) -> None:
    before = keys(project, "20260101000000")
    metrics = project / "steps" / "common" / "metrics.py"
    metrics.write_text(metrics.read_text() + "\n# an edit\n")
    after = keys(project, "20260101000000")

    # train and evaluate import common.metrics; prepare, predict and package do not.
    assert after["train"] != before["train"]
    assert after["evaluate"] != before["evaluate"]
    assert after["prepare"] == before["prepare"]
    assert after["predict"] == before["predict"]
    assert after["package"] == before["package"]


def test_step_edit_changes_only_that_step(project: Path) -> None:
    before = keys(project, "20260101000000")
    evaluate = project / "steps" / "evaluate" / "evaluate.py"
    evaluate.write_text(evaluate.read_text() + "\n# an edit\n")
    after = keys(project, "20260101000000")
    changed = {step for step in before if before[step] != after[step]}
    assert changed == {"evaluate"}


def test_configuration_changes_key(project: Path) -> None:
    before = keys(project, "20260101000000")
    after = keys(project, "20260101000000", "train.hyperparameters.epochs=3")
    assert after["train"] != before["train"]
    assert after["prepare"] == before["prepare"]


def test_explain_key_follows_its_arguments(project: Path) -> None:
    before = keys(project, "20260101000000")
    after = keys(project, "20260101000000", "explain.arguments.max-queries=1")
    changed = {step for step in before if before[step] != after[step]}
    assert changed == {"explain"}


def test_input_digest_changes_key(project: Path) -> None:
    config = load_config(
        project / "config.ini", [project / "fixtures" / "fixtures.ini"], use_local=False
    )
    runner = LocalRunner(config, build_plan(config, "20260101000000"))
    runner.digests = {step: dict(values) for step, values in FAKE_DIGESTS.items()}
    train = runner.plan.job("train")
    before = runner._cache_key(train)
    runner.digests["prepare"]["train"] = "another"
    assert runner._cache_key(train) != before


def test_new_model_changes_explain_key(project: Path) -> None:
    config = load_config(
        project / "config.ini", [project / "fixtures" / "fixtures.ini"], use_local=False
    )
    runner = LocalRunner(config, build_plan(config, "20260101000000"))
    runner.digests = {step: dict(values) for step, values in FAKE_DIGESTS.items()}
    explain = runner.plan.job("explain")
    before = runner._cache_key(explain)
    runner.digests["train"]["model"] = "another"
    assert runner._cache_key(explain) != before


def test_manifest_lists_every_file(tmp_path: Path) -> None:
    cache = StepCache(tmp_path)
    folder = tmp_path / "s3" / "bucket" / "prefix"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.parquet").write_bytes(b"a")
    (folder / "sub" / "b.json").write_bytes(b"b")
    (folder / ".partial-x").write_bytes(b"half")
    manifest = cache.manifest("s3://bucket/prefix/")
    assert sorted(manifest) == ["a.parquet", "sub/b.json"]
